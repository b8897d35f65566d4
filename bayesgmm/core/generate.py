"""The generative side: new points from the posterior predictive mixture."""

from __future__ import annotations

import numpy as np

from bayesgmm.core.checks import integer
from bayesgmm.core.draws import Draws, posterior_dataset, training_data
from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["background_box", "replicate", "sample"]

_WORK_ELEMS = 1 << 20  # float64 elements of a draw block for sampling (8 MB)
_COUNT = integer(1)


def _rng(random_seed) -> np.random.Generator:
    if isinstance(random_seed, np.random.Generator):
        return random_seed
    return np.random.default_rng(random_seed)


def background_box(posterior, draws: Draws, data=None) -> tuple[np.ndarray, np.ndarray] | None:
    """Lower and upper corners of the box a background-noise component is uniform on (None
    without one): the training data's bounding box (``data``, else the DataTree's), scaled
    about its centre to the background's volume ``V`` when the user gave one
    (:mod:`bayesgmm.core.background`)."""
    if draws.log_noise_weight is None:
        return None
    X = training_data(posterior) if data is None else np.asarray(data, dtype=float)
    if X is None:
        raise DataError(
            "drawing points of a background-noise component needs the fit's DataTree (its "
            "training data give the box the background is uniform on)."
        )
    lo, hi = X.min(axis=0), X.max(axis=0)
    volume = np.exp(-draws.background)
    half = 0.5 * (hi - lo) * (volume / np.prod(hi - lo)) ** (1.0 / X.shape[1])
    return 0.5 * (lo + hi) - half, 0.5 * (lo + hi) + half


def _draw_points(
    rng: np.random.Generator,
    log_weights: np.ndarray,
    means: np.ndarray,
    chol: np.ndarray,
    box: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One point per row: component ~ weights, then the Gaussian of that component.

    ``log_weights`` (n, K), ``means`` (n, K, D), ``chol`` (n, K, D, D); with a
    background ``box``, ``log_weights`` (n, K + 1): component ``-1``, uniform on the box.
    """
    n, K, D = means.shape
    cw = np.cumsum(np.exp(log_weights), axis=1)
    u = rng.random(n) * cw[:, -1]
    comp = np.minimum((u[:, None] >= cw).sum(axis=1), log_weights.shape[1] - 1)
    rows = np.arange(n)
    eps = rng.standard_normal((n, D))
    gauss = np.minimum(comp, K - 1)
    x = means[rows, gauss] + np.einsum("nij,nj->ni", chol[rows, gauss], eps)
    if box is not None:  # the background's points: uniform on its box
        noise = comp == K
        x[noise] = box[0] + (box[1] - box[0]) * rng.random((int(noise.sum()), D))
        comp[noise] = -1
    return x, comp


def _log_weights(draws: Draws) -> np.ndarray:
    """The draws' log weights (S, K), with the background's last (S, K + 1) if any."""
    if draws.log_noise_weight is None:
        return draws.log_weights
    return np.concatenate([draws.log_weights, draws.log_noise_weight[:, None]], axis=1)


def sample(posterior, n_samples: int = 1, *, random_seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Draw new points from the posterior predictive mixture.

    Each point picks a posterior draw uniformly, then a component with that draw's
    weights, then a Gaussian with that draw's mean and covariance (with a
    background-noise component: component ``-1``, uniform on its box).

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
    box, log_w = background_box(posterior, draws), _log_weights(draws)
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
            log_w[sel],
            draws.means[sel],
            np.linalg.cholesky(draws.covariance[sel]),
            box,
        )
    return X, comp


def replicate(posterior, n_obs: int, *, random_seed=None, data=None) -> np.ndarray:
    """A replicated dataset of ``n_obs`` points for every posterior draw.

    ``data``: the training data, when ``posterior`` is a Dataset of a fit with a
    background-noise component (they give the box its points are drawn on).

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
    box = background_box(posterior, draws, data)
    rng = _rng(random_seed)
    S, K, D = draws.shape
    n = int(n_obs)
    out = np.empty((S, n, D))
    weights = np.exp(_log_weights(draws))
    for s in range(S):
        L = draws.chol(s, s + 1)[0]
        comp = rng.choice(weights.shape[1], size=n, p=weights[s] / weights[s].sum())
        gauss = np.minimum(comp, K - 1)
        eps = rng.standard_normal((n, D))
        out[s] = draws.means[s][gauss] + np.einsum("nij,nj->ni", L[gauss], eps)
        if box is not None:  # the background's points: uniform on its box
            noise = comp == K
            out[s][noise] = box[0] + (box[1] - box[0]) * rng.random((int(noise.sum()), D))
    return out.reshape(draws.n_chain, draws.n_draw, int(n_obs), D)
