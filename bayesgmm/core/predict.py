"""Uncertainty-aware predictions from posterior draws: memberships, densities, anomalies.

Every function works on the posterior draws in the data's units (see
:mod:`bayesgmm.core.draws`), given as an ``xarray.DataTree`` (its ``posterior`` group is
used) or as the posterior ``xarray.Dataset`` itself.

For draw ``s`` the membership probabilities (responsibilities) are

``gamma_jk^(s) = pi_k N(x_j | mu_k, Sigma_k) / sum_l pi_l N(x_j | mu_l, Sigma_l)``,

computed in log space. Their posterior mean is the assignment probability; their
spread over draws is its uncertainty. Component-wise summaries assume the draws share
one labelling (relabel first); label-invariant quantities — the predictive density,
the co-clustering matrix, the per-draw entropy — do not need it.

Streaming
---------
Points are processed in chunks and, within a chunk, draws in blocks, by the mixture
engine (:class:`bayesgmm.core.engine.Stream`): for each block the triangular factors of
the covariances are turned into one matrix so that the Mahalanobis terms of all draws
and components come from a single matrix product with the points, computed once and
cached across point chunks. Running sums give the mean probabilities and a running
log-sum-exp the predictive density, so memory stays bounded whatever the number of
points and draws. Intervals need every draw's value for a point: they are computed
chunk by chunk over points (memory ``n_draws * n_components * chunk`` floats), and
``max_draws`` thins the draws evenly when that is too slow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from bayesgmm.core.anomalies import flag_anomalies
from bayesgmm.core.draws import Draws, posterior_dataset
from bayesgmm.core.engine import Stream
from bayesgmm.core.generate import replicate, sample
from bayesgmm.core.summaries import (
    check_chunk,
    check_interval,
    draws_and_data,
    interval_label,
    row_terms,
    summarise,
)
from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["assignments_table", "co_clustering", "count_nonempty", "draw_log_densities",
           "flag_anomalies", "membership_array", "membership_blocks", "membership_draws",
           "predict", "predict_proba", "replicate", "sample", "score_samples"]  # fmt: skip

_MAX_DRAWS_BYTES = 1 << 30  # membership_draws refuses results larger than 1 GiB


def draw_log_densities(post: xr.Dataset, X: np.ndarray) -> np.ndarray:
    """Mixture log density of every point at every draw's parameters, (C, S, n_samples)."""
    draws = Draws.from_dataset(post)
    out = np.empty((draws.shape[0], X.shape[0]))
    for start, stop, blocks in Stream(draws, X, 4096).chunks():
        for lo, hi, _, log_dens in blocks:
            out[lo:hi, start:stop] = log_dens
    return out.reshape(draws.n_chain, draws.n_draw, X.shape[0])


def membership_array(post: xr.Dataset, X: np.ndarray) -> np.ndarray:
    """``p(z_i = k | x_i, theta_s)`` for every draw, flattened over (chain, draw), in the
    engine's layout (S, K, N): component before point, so no transposed copy is made."""
    return membership_blocks(post, X, None)[0]


def membership_blocks(post: xr.Dataset, X: np.ndarray, block_bytes: int | None) -> list:
    """:func:`membership_array` as consecutive blocks of draws, each (draws, K, N) and at
    most about ``block_bytes`` (one block when None). Many small arrays rather than one
    large one, which numpy would have the kernel back with huge pages: just after
    sampling, finding them can stall for a few tenths of a second."""
    draws = Draws.from_dataset(post)
    S, K, _ = draws.shape
    n = X.shape[0]
    step = S if block_bytes is None else max(1, block_bytes // max(1, 8 * K * n))
    out = [np.empty((min(step, S - lo), K, n)) for lo in range(0, S, step)]
    for start, stop, blocks in Stream(draws, X, 4096).chunks():
        for lo, hi, lp, _ in blocks:
            for b in range(lo // step, (hi - 1) // step + 1):  # the pieces [lo, hi) meets
                a, z = max(lo, b * step), min(hi, (b + 1) * step)
                piece = out[b][a - b * step : z - b * step]
                piece[:, :, start:stop] = lp[a - lo : z - lo, :K]  # (no background row)
    return out


# --------------------------------------------------------------------------- #
# Assignments
# --------------------------------------------------------------------------- #


def membership_draws(
    posterior, X: ArrayLike | None = None, *, max_draws: int | None = None, noise_cov=None
) -> xr.DataArray:
    """Membership probabilities of every point for every posterior draw.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
        The fit's DataTree (``posterior`` group used) or the posterior Dataset.
    X : array-like of shape (n_samples, n_features), optional
        Points; defaults to the training data in the DataTree's ``observed_data``.
    max_draws : int, optional
        Keep about this many draws in total, evenly spaced within each chain.
    noise_cov : array-like, optional
        The points' known measurement errors, as in :func:`predict_proba`.

    Returns
    -------
    xarray.DataArray
        ``gamma`` with dims (chain, draw, obs, component); sums to 1 over ``component``.

    Raises
    ------
    ConfigError
        The result would exceed 1 GiB (use ``max_draws`` or :func:`predict_proba`).

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> post = example_posterior()
    >>> g = membership_draws(post, [[0.0, 0.0], [1.5, 1.5]])
    >>> g.dims
    ('chain', 'draw', 'obs', 'component')
    >>> bool(abs(g.sum("component") - 1).max() < 1e-12)
    True
    """
    training = X is None  # the training rows, with their labels and errors
    draws, X = draws_and_data(posterior, X, max_draws)
    S, K, N = draws.shape[0], draws.n_rows, X.shape[0]
    if S * N * K * 8 > _MAX_DRAWS_BYTES:
        raise ConfigError(
            f"{S} draws x {N} points x {K} components would need "
            f"{S * N * K * 8 / 2**30:.1f} GiB; pass max_draws (e.g. max_draws=500) or use "
            "predict_proba(..., return_intervals=True), which streams."
        )
    out = np.empty((S, N, K))
    stream = Stream(draws, X, 4096, **row_terms(posterior, X, noise_cov, training))
    for start, stop, blocks in stream.chunks():
        for lo, hi, lp, _ in blocks:
            out[lo:hi, start:stop] = lp.transpose(0, 2, 1)
    return xr.DataArray(
        out.reshape(draws.n_chain, draws.n_draw, N, K),
        dims=("chain", "draw", "obs", "component"),
        coords={
            "chain": draws.coords["chain"],
            "draw": draws.coords["draw"],
            "obs": np.arange(N),
            "component": draws.row_coords,
        },
        name="gamma",
    )


def predict_proba(
    posterior,
    X: ArrayLike | None = None,
    *,
    return_intervals: bool = False,
    prob: float = 0.94,
    kind: str = "hdi",
    max_draws: int | None = None,
    chunk_size: int | None = None,
    noise_cov: ArrayLike | None = None,
):
    """Posterior mean membership probabilities, optionally with intervals over draws.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
        Defaults to the training data (``observed_data``) of a DataTree, with the training
        rows' known labels and measurement errors. Points passed are new points, whatever
        their values (the training rows' too): known exactly unless ``noise_cov`` is given.
    return_intervals : bool, default=False
        Also return the lower and upper ends of a ``prob`` interval per point and component.
    prob : float in (0, 1), default=0.94
    kind : {"hdi", "eti"}, default="hdi"
        Highest-density (ArviZ's rule) or equal-tailed interval.
    max_draws : int, optional
        Use about this many draws, evenly thinned (faster intervals on big data).
    chunk_size : int, optional
        Points per chunk (memory knob); chosen automatically by default.
    noise_cov : array-like of shape (n_samples, n_features[, n_features]), optional
        The points' known measurement errors (:mod:`bayesgmm.core.noise`): each point
        against the mixture with every covariance widened by its error covariance.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_components)
        With a background-noise component (``BayesianGMM(noise=True)``), one more
        column, last: the background's membership.
    lower, upper : ndarray of shape (n_samples, n_components)
        Only with ``return_intervals=True``.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> p = predict_proba(example_posterior(), [[0.0, 0.0], [3.0, 3.0]])
    >>> p.argmax(axis=1)
    array([0, 1])
    """
    check_interval(prob, kind)
    check_chunk(chunk_size)
    training = X is None  # the training rows, with their labels and errors
    draws, X = draws_and_data(posterior, X, max_draws)
    rows = row_terms(posterior, X, noise_cov, training)
    res = summarise(draws, X, proba_intervals=return_intervals, prob=prob, kind=kind,
                    chunk_size=chunk_size, **rows)  # fmt: skip
    if return_intervals:
        return res.proba, res.proba_lower, res.proba_upper
    return res.proba


def predict(posterior, X: ArrayLike | None = None, **kwargs) -> np.ndarray:
    """Most probable component of each point (argmax of :func:`predict_proba`); ``-1``
    for a point most probably the background-noise component's.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> predict(example_posterior(), [[0.0, 0.0], [3.0, 3.0]])
    array([0, 1])
    """
    return _best(predict_proba(posterior, X, **kwargs), posterior)


def _best(proba: np.ndarray, posterior) -> np.ndarray:
    """Each row's most probable component, ``-1`` where it is the background's."""
    best = proba.argmax(axis=1)
    K = posterior_dataset(posterior).sizes["component"]
    return np.where(best == K, -1, best) if proba.shape[1] > K else best


def assignments_table(
    posterior,
    X: ArrayLike | None = None,
    *,
    prob: float = 0.94,
    kind: str = "hdi",
    max_draws: int | None = None,
    chunk_size: int | None = None,
    noise_cov: ArrayLike | None = None,
) -> pd.DataFrame:
    """Per-point assignment summary with uncertainty.

    Columns: ``cluster`` (most probable component), ``max_prob``, ``uncertainty``
    (``1 - max_prob``), ``entropy`` (of the mean membership probabilities, in nats;
    at most ``log K``), ``mean_draw_entropy`` (mean over draws of each draw's entropy:
    the part of ``entropy`` due to overlapping components rather than to parameter
    uncertainty), then per component ``prob_<k>`` and its interval over draws (and
    ``prob_noise`` with a background-noise component, whose points' ``cluster`` is -1),
    ``prob_<k>_hdi94_lower`` and ``prob_<k>_hdi94_upper`` (the names say the interval:
    ``eti89`` for ``prob=0.89, kind="eti"``). ``noise_cov``: the points' known
    measurement errors, as in :func:`predict_proba`.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> t = assignments_table(example_posterior(), [[0.0, 0.0], [1.5, 1.5]])
    >>> t["cluster"].tolist()
    [0, 0]
    >>> bool(t["uncertainty"].iloc[1] > t["uncertainty"].iloc[0])
    True
    >>> list(t.columns[-3:])
    ['prob_1', 'prob_1_hdi94_lower', 'prob_1_hdi94_upper']
    """
    check_interval(prob, kind)
    check_chunk(chunk_size)
    training = X is None  # the training rows, with their labels and errors
    draws, X = draws_and_data(posterior, X, max_draws)
    rows = row_terms(posterior, X, noise_cov, training)
    res = summarise(draws, X, proba_intervals=True, entropy=True, prob=prob, kind=kind,
                    chunk_size=chunk_size, **rows)  # fmt: skip
    p = res.proba
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    table = pd.DataFrame(
        {
            "cluster": _best(p, posterior),
            "max_prob": p.max(axis=1),
            "uncertainty": 1.0 - p.max(axis=1),
            "entropy": entropy,
            "mean_draw_entropy": res.mean_entropy,
        },
        index=pd.RangeIndex(X.shape[0], name="obs"),
    )
    name = interval_label(prob, kind)
    for k, label in enumerate(draws.row_coords):
        table[f"prob_{label}"] = p[:, k]
        table[f"prob_{label}_{name}_lower"] = res.proba_lower[:, k]
        table[f"prob_{label}_{name}_upper"] = res.proba_upper[:, k]
    table.attrs.update(prob=prob, kind=kind)
    return table


def co_clustering(
    posterior,
    X: ArrayLike | None = None,
    *,
    max_points: int = 5000,
    max_draws: int | None = 1000,
    noise_cov=None,
) -> np.ndarray:
    """Posterior probability that points ``i`` and ``j`` belong to the same component.

    Given the parameters, assignments are independent, so for ``i != j`` this is
    ``E[sum_k gamma_ik gamma_jk]`` over the posterior; the diagonal is 1. It is
    label-invariant (no relabelling needed); two points of a background-noise component
    are not clustered together. Cost grows as
    ``n_samples**2 * n_draws * n_components``, hence the limits.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
    max_points : int, default=5000
        Refuse larger inputs (the matrix alone is ``8 * n**2`` bytes).
    max_draws : int or None, default=1000
        Draws used, evenly thinned (Monte Carlo error about ``0.5 / sqrt(max_draws)``
        at most for independent draws); ``None`` uses all.
    noise_cov : array-like, optional
        The points' known measurement errors, as in :func:`predict_proba`.

    Returns
    -------
    ndarray of shape (n_samples, n_samples)

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> cc = co_clustering(example_posterior(), [[0.0, 0.0], [0.1, 0.0], [3.0, 3.0]])
    >>> bool(cc[0, 1] > 0.9 and cc[0, 2] < 0.1)
    True
    """
    training = X is None  # the training rows, with their labels and errors
    draws, X = draws_and_data(posterior, X, max_draws)
    N = X.shape[0]
    if N > max_points:
        raise DataError(
            f"co_clustering of {N} points needs a {N}x{N} matrix ({8 * N * N / 2**30:.1f} GiB) "
            f"and time ~N^2; it is limited to max_points={max_points}. Subsample the points "
            "or raise max_points."
        )
    S, K, _ = draws.shape
    out = np.zeros((N, N))
    stream = Stream(draws, X, N, **row_terms(posterior, X, noise_cov, training))
    for _, _, blocks in stream.chunks():
        for lo, hi, lp, _ in blocks:
            G = lp[:, :K].reshape((hi - lo) * K, N)
            out += G.T @ G
    out /= S
    np.fill_diagonal(out, 1.0)
    return out


# --------------------------------------------------------------------------- #
# Density and anomalies
# --------------------------------------------------------------------------- #


def score_samples(
    posterior,
    X: ArrayLike | None = None,
    *,
    return_intervals: bool = False,
    kind: str = "hdi",
    prob: float = 0.94,
    max_draws: int | None = None,
    chunk_size: int | None = None,
    noise_cov: ArrayLike | None = None,
):
    """Log posterior predictive density of each point.

    ``log p(x | data) ~= log( (1/S) sum_s sum_k pi_k^(s) N(x | mu_k^(s), Sigma_k^(s)) )``
    over the ``S`` posterior draws, accumulated as a streaming log-sum-exp.

    With a background-noise component its term is ``w_0 / V`` at every point, as in the
    fit and in mclust's predictions, points outside the data's box included: far from the
    data the score levels off at ``log(w_0 / V)`` instead of falling, so it ranks such
    points as no less likely than the box's edge, and ``exp(score)`` integrates to more
    than 1 beyond the box. For a fit with a background, flag outliers by the background's
    membership (``flag_anomalies(by="noise")``, its default there).

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
    return_intervals : bool, default=False
        Also return a ``prob`` interval over draws of the per-draw log density
        ``log p(x | theta_s)`` (how much the density is uncertain).
    prob : float in (0, 1), default=0.94
    kind : {"hdi", "eti"}, default="hdi"
        Highest-density interval (ArviZ's rule, as every bayesgmm interval) or
        equal-tailed interval (quantiles ``(1 - prob) / 2`` and ``(1 + prob) / 2``).
    max_draws, chunk_size : int, optional
        As in :func:`predict_proba`.
    noise_cov : array-like, optional
        The points' known measurement errors, as in :func:`predict_proba`.

    Returns
    -------
    log_density : ndarray of shape (n_samples,)
    lower, upper : ndarray of shape (n_samples,)
        Only with ``return_intervals=True``.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> ld = score_samples(example_posterior(), [[0.0, 0.0], [20.0, 20.0]])
    >>> bool(ld[0] > ld[1])
    True
    """
    check_interval(prob, kind)
    check_chunk(chunk_size)
    training = X is None  # the training rows, with their labels and errors
    draws, X = draws_and_data(posterior, X, max_draws)
    rows = row_terms(posterior, X, noise_cov, training)
    res = summarise(
        draws,
        X,
        density=True,
        density_intervals=return_intervals,
        prob=prob,
        kind=kind,
        chunk_size=chunk_size,
        **rows,
    )
    if return_intervals:
        return res.log_density, res.log_density_lower, res.log_density_upper
    return res.log_density


def count_nonempty(X: ArrayLike, posterior) -> xr.DataArray:
    """Number of non-empty components in each posterior draw.

    For every draw, each point is assigned to its most probable component under that
    draw's parameters (``argmax_k`` of the responsibilities, i.e. of
    ``log w_k + log N(x_i | mu_k, Sigma_k)``), and the components that receive at
    least one point are counted. The count depends only on the *set* of components of a
    draw, not on their order, so it is label-invariant and needs no relabelling.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The data (usually the training data).
    posterior : DataTree or Dataset
        Variables ``weights`` (chain, draw, component), ``means`` (chain, draw,
        component, feature) and ``covariance`` (chain, draw, component, feature,
        feature_bis), as in ``BayesianGMM.idata_``.

    Returns
    -------
    DataArray of int, dims (chain, draw)

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> X = np.array([[0.0], [0.1], [5.0]])
    >>> post = xr.Dataset({
    ...     "weights": (("chain", "draw", "component"), [[[0.5, 0.5, 1e-9]]]),
    ...     "means": (("chain", "draw", "component", "feature"), [[[[0.0], [5.0], [50.0]]]]),
    ...     "covariance": (("chain", "draw", "component", "feature", "feature_bis"),
    ...                    np.ones((1, 1, 3, 1, 1)))})
    >>> count_nonempty(X, post).values.tolist()
    [[2]]
    """
    post = posterior_dataset(posterior)
    draws = Draws.from_dataset(post)
    S, K, D = draws.shape
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != D:
        raise DataError(
            f"X must have shape (n_samples, {D}) to match the posterior; got {X.shape}."
        )
    hit = np.zeros((S, draws.n_rows), dtype=bool)
    for _, _, blocks in Stream(draws, X, 4096).chunks():
        for lo, hi, resp, _ in blocks:
            best = resp.argmax(axis=1)  # (draws, points): each point's most probable component
            hit[np.arange(lo, hi)[:, None], best] = True
    return xr.DataArray(
        hit[:, :K].sum(axis=1).reshape(draws.n_chain, draws.n_draw),
        dims=("chain", "draw"),
        coords={k: post[k] for k in ("chain", "draw") if k in post.coords},
        name="n_nonempty",
    )
