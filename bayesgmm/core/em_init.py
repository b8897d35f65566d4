"""Where EM starts: k-means++ seeding, and the checks of user-given starting values."""

from __future__ import annotations

import math

import numpy as np

from bayesgmm.exceptions import ConfigError

__all__ = ["INIT_METHODS", "check_start", "kmeans_pp_resp"]

#: fit_em's ``init`` (and the ``init`` EM setting of BayesianGMM and specs).
INIT_METHODS: tuple[str, ...] = ("k-means++", "k-means++-scaled", "random")


def kmeans_pp_resp(
    X: np.ndarray, K: int, rng: np.random.Generator, sample_weight: np.ndarray | None = None
) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; sklearn's variant with
    ``2 + log K`` candidates per step), then hard responsibilities to the nearest seed.
    With frequency weights, a row is drawn (and counts in the potential) in proportion to
    its weight, as its copies would."""
    n = X.shape[0]
    w = np.ones(n) if sample_weight is None else sample_weight
    sq = np.einsum("ij,ij->i", X, X)
    n_trials = 2 + int(math.log(K))
    if sample_weight is None:
        centers = [int(rng.integers(n))]
    else:
        cum = np.cumsum(w)
        centers = [int(min(np.searchsorted(cum, (1.0 - rng.random()) * cum[-1]), n - 1))]
    closest = np.maximum(sq - 2.0 * X @ X[centers[0]] + sq[centers[0]], 0.0)
    potential = closest @ w if sample_weight is not None else closest.sum()
    for _ in range(1, K):
        targets = (1.0 - rng.random(n_trials)) * potential  # in (0, potential]
        cand = np.minimum(np.searchsorted(np.cumsum(closest * w), targets), n - 1)
        d2 = np.maximum(sq[cand][:, None] - 2.0 * X[cand] @ X.T + sq[None], 0.0)
        np.minimum(d2, closest, out=d2)
        pots = d2 @ w
        best = int(np.argmin(pots))
        centers.append(int(cand[best]))
        closest, potential = d2[best], pots[best]
    C = X[centers]
    d2 = (C * C).sum(axis=1)[:, None] - 2.0 * C @ X.T  # + ||x||^2, constant per point
    labels = np.argmin(d2, axis=0)
    labels[centers] = np.arange(K)  # each seed owns itself (ties between equal points)
    resp = np.zeros((K, n))
    resp[labels, np.arange(n)] = 1.0
    return resp


def check_start(means_init, weights_init, K: int, D: int):
    errors = []
    if means_init is not None:
        means_init = np.asarray(means_init, dtype=np.float64)
        if means_init.shape != (K, D) or not np.isfinite(means_init).all():
            errors.append(
                f"means_init must be finite with shape ({K}, {D}); got {means_init.shape}."
            )
    if weights_init is not None:
        weights_init = np.asarray(weights_init, dtype=np.float64)
        ok = weights_init.shape == (K,) and np.isfinite(weights_init).all()
        if not (ok and (weights_init > 0).all() and abs(weights_init.sum() - 1.0) < 1e-6):
            errors.append(
                f"weights_init must be {K} positive numbers summing to 1; got {weights_init!r}."
            )
        else:
            weights_init = weights_init / weights_init.sum()
    if errors:
        raise ConfigError("Invalid fit_em start:\n  - " + "\n  - ".join(errors))
    return means_init, weights_init
