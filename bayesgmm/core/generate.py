"""The generative side: new points from the posterior predictive mixture."""

from __future__ import annotations

import numpy as np

from bayesgmm.core.checks import integer
from bayesgmm.core.draws import Draws, posterior_dataset
from bayesgmm.exceptions import ConfigError

__all__ = ["replicate", "sample"]

_WORK_ELEMS = 1 << 20  # float64 elements of a draw block for sampling (8 MB)
_COUNT = integer(1)


def _rng(random_seed) -> np.random.Generator:
    if isinstance(random_seed, np.random.Generator):
        return random_seed
    return np.random.default_rng(random_seed)


def _draw_points(
    rng: np.random.Generator,
    log_weights: np.ndarray,
    means: np.ndarray,
    chol: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One point per row: component ~ weights, then the Gaussian of that component.

    ``log_weights`` (n, K), ``means`` (n, K, D), ``chol`` (n, K, D, D).
    """
    n, K, D = means.shape
    cw = np.cumsum(np.exp(log_weights), axis=1)
    u = rng.random(n) * cw[:, -1]
    comp = np.minimum((u[:, None] >= cw).sum(axis=1), K - 1)
    rows = np.arange(n)
    eps = rng.standard_normal((n, D))
    x = means[rows, comp] + np.einsum("nij,nj->ni", chol[rows, comp], eps)
    return x, comp


def sample(posterior, n_samples: int = 1, *, random_seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Draw new points from the posterior predictive mixture.

    Each point picks a posterior draw uniformly, then a component with that draw's
    weights, then a Gaussian with that draw's mean and covariance.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    n_samples : int, default=1
    random_seed : int or numpy Generator, optional

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    components : ndarray of shape (n_samples,)
        Component index each point came from.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> X, y = sample(example_posterior(), 5, random_seed=0)
    >>> X.shape, y.shape
    ((5, 2), (5,))
    """
    if not _COUNT(n_samples):
        raise ConfigError(f"n_samples must be a positive integer; got {n_samples!r}.")
    draws = Draws.from_dataset(posterior_dataset(posterior))
    rng = _rng(random_seed)
    S, K, D = draws.shape
    idx = rng.integers(S, size=int(n_samples))
    X = np.empty((int(n_samples), D))
    comp = np.empty(int(n_samples), dtype=np.int64)
    block = max(1, _WORK_ELEMS // (K * D * D))
    for start in range(0, int(n_samples), block):
        sel = idx[start : start + block]
        X[start : start + block], comp[start : start + block] = _draw_points(
            rng,
            draws.log_weights[sel],
            draws.means[sel],
            np.linalg.cholesky(draws.covariance[sel]),
        )
    return X, comp


def replicate(posterior, n_obs: int, *, random_seed=None) -> np.ndarray:
    """A replicated dataset of ``n_obs`` points for every posterior draw.

    Returns
    -------
    ndarray of shape (n_chain, n_draw, n_obs, n_features)

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> replicate(example_posterior(), 3, random_seed=0).shape
    (2, 10, 3, 2)
    """
    if not _COUNT(n_obs):
        raise ConfigError(f"n_obs must be a positive integer; got {n_obs!r}.")
    draws = Draws.from_dataset(posterior_dataset(posterior))
    rng = _rng(random_seed)
    S, K, D = draws.shape
    n = int(n_obs)
    out = np.empty((S, n, D))
    weights = np.exp(draws.log_weights)
    for s in range(S):
        L = draws.chol(s, s + 1)[0]
        comp = rng.choice(K, size=n, p=weights[s] / weights[s].sum())
        eps = rng.standard_normal((n, D))
        out[s] = draws.means[s][comp] + np.einsum("nij,nj->ni", L[comp], eps)
    return out.reshape(draws.n_chain, draws.n_draw, int(n_obs), D)
