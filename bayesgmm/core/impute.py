"""Posterior draws of missing values, and their summaries with intervals.

For a point with observed coordinates ``o`` and missing ``m``, one draw of the posterior
gives the component memberships ``r_k ∝ w_k N(x_o | mu_k[o], Sigma_k[o, o])`` and each
component's conditional Gaussian of ``x_m`` (:func:`bayesgmm.core.missing.conditional`).
An imputation draws a component from ``r`` and then ``x_m`` from its conditional; over the
posterior's draws these are draws from the posterior predictive distribution of the missing
values, the uncertainty of the parameters included (multiple imputation). The point
estimate is the posterior mean ``E[x_m | x_o]`` averaged exactly over components
(``sum_k r_k E_k[x_m | x_o]``) and over draws, so it carries no sampling noise of its own.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bayesgmm.core.draws import Draws
from bayesgmm.core.engine import memberships
from bayesgmm.core.missing import Patterns, conditional
from bayesgmm.core.summaries import check_interval, draws_and_data, interval

__all__ = ["impute", "impute_draws"]

_MAX_DRAWS = 1000


def _walk(draws: Draws, X: np.ndarray, rng: np.random.Generator | None):
    """Per draw: the Rao-Blackwellised conditional means (and, with ``rng``, a draw) of
    every missing entry, as (S, n_missing) arrays in ``np.isnan(X)``'s row-major order."""
    S, K, _ = draws.shape
    nan = np.isnan(X)
    where = np.flatnonzero(nan.ravel())
    slot = np.full(X.size, -1)
    slot[where] = np.arange(where.size)
    mean = np.zeros((S, where.size))
    sampled = np.zeros((S, where.size)) if rng is not None else None
    groups = [g for g in Patterns.of(X).groups() if g[2].size]
    for s in range(S):
        for rows, obs, mis in groups:
            cols = slot[(rows[:, None] * X.shape[1] + mis[None, :])]  # (n_p, d_m)
            log_dens, cond_means, cond_cov = conditional(
                X[np.ix_(rows, obs)], draws.means[s], draws.covariance[s], obs, mis
            )
            resp, _ = memberships(draws.log_weights[s] + log_dens)  # (n_p, K)
            mean[s, cols] = np.einsum("nk,nkm->nm", resp, cond_means)
            if rng is None:
                continue
            u = rng.random((rows.size, 1))
            z = np.minimum((resp.cumsum(axis=1) < u).sum(axis=1), K - 1)
            chol = np.linalg.cholesky(cond_cov)  # (K, d_m, d_m)
            eps = rng.standard_normal((rows.size, mis.size))
            sampled[s, cols] = cond_means[np.arange(rows.size), z] + np.einsum(
                "nij,nj->ni", chol[z], eps
            )
    return where, mean, sampled


def impute_draws(
    posterior,
    X: ArrayLike | None = None,
    *,
    max_draws: int | None = _MAX_DRAWS,
    random_seed=None,
) -> np.ndarray:
    """Draws of the data with each missing value drawn from its posterior predictive.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
        A fit's posterior (with ``missing="marginalize"`` for NaN in its training data).
    X : array-like of shape (n_samples, n_features), optional
        Points with NaN where values are missing; defaults to the training data.
    max_draws : int or None, default=1000
        Use about this many posterior draws, evenly thinned (``None``: all).
    random_seed : int or numpy Generator, optional

    Returns
    -------
    ndarray of shape (n_draws, n_samples, n_features)
        ``X`` once per posterior draw, its NaN filled by a draw of the missing values
        (completed datasets for multiple imputation).

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> post = example_posterior()
    >>> post.attrs["missing"] = "marginalize"
    >>> filled = impute_draws(post, [[0.1, np.nan], [np.nan, 2.9]], random_seed=0)
    >>> filled.shape, bool(np.isnan(filled).any())
    ((20, 2, 2), False)
    """
    draws, X = draws_and_data(posterior, X, max_draws)
    _, _, sampled = _walk(draws, X, np.random.default_rng(random_seed))
    out = np.repeat(X[None], draws.shape[0], axis=0)
    out[:, np.isnan(X)] = sampled
    return out


def impute(
    posterior,
    X: ArrayLike | None = None,
    *,
    return_intervals: bool = False,
    prob: float = 0.94,
    kind: str = "eti",
    max_draws: int | None = _MAX_DRAWS,
    random_seed=None,
):
    """The missing values' posterior means, optionally with predictive intervals.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
        Points with NaN where values are missing; defaults to the training data.
    return_intervals : bool, default=False
        Also return the ends of a ``prob`` interval of each missing value's posterior
        predictive distribution (the spread of the value itself given the point's observed
        coordinates, the parameters' uncertainty included).
    prob : float in (0, 1), default=0.94
    kind : {"eti", "hdi"}, default="eti"
        Equal-tailed (the default: an imputation's distribution may be bimodal, when the
        point could belong to either of two components) or highest-density.
    max_draws : int or None, default=1000
    random_seed : int or numpy Generator, optional
        For the draws behind the intervals (the means need none).

    Returns
    -------
    filled : ndarray of shape (n_samples, n_features)
        ``X`` with each NaN replaced by the posterior mean of the missing value.
    lower, upper : ndarray of shape (n_samples, n_features)
        Only with ``return_intervals=True``; equal to ``X`` where it is observed.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> post = example_posterior()
    >>> post.attrs["missing"] = "marginalize"
    >>> filled, lo, hi = impute(post, [[3.1, np.nan]], return_intervals=True, random_seed=0)
    >>> bool(2.0 < filled[0, 1] < 4.0), bool(lo[0, 1] < filled[0, 1] < hi[0, 1])
    (True, True)
    """
    check_interval(prob, kind)
    draws, X = draws_and_data(posterior, X, max_draws)
    rng = np.random.default_rng(random_seed) if return_intervals else None
    where, mean, sampled = _walk(draws, X, rng)
    nan = np.isnan(X)
    filled = X.copy()
    filled[nan] = mean.mean(axis=0)
    if not return_intervals:
        return filled
    lower, upper = X.copy(), X.copy()
    if where.size:
        lower[nan], upper[nan] = interval(sampled, prob, kind)
    return filled, lower, upper
