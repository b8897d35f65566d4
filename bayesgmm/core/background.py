"""A background-noise component: scattered points that belong to no cluster.

Banfield & Raftery (1993), as mclust's ``Mclust(..., initialization = list(noise = ...))``:
the mixture gets one more component, uniform with density ``1 / V`` over the data's
region of volume ``V``, with its own weight ``w_0``,

``p(x) = sum_k w_k N(x | mu_k, Sigma_k) + w_0 / V``,

so outliers are explained by the background instead of widening the Gaussian components.
``V`` is the volume of the data's bounding box (the product of the columns' ranges) or
one the user gives; as in mclust, the background's density is ``1 / V`` at every point,
new points outside the box included. :func:`check_noise` turns the ``noise`` setting
into ``log(1 / V)``.
"""

from __future__ import annotations

import math

import numpy as np

from bayesgmm.exceptions import ConfigError, DataError

__all__ = [
    "NOISE_START", "bounding_volume", "check_noise", "check_noise_init", "guess_noise",
    "noise_turn",
]  # fmt: skip

#: The background's weight at the start of EM, unless the points it starts with are
#: guessed (``noise_init``, as mclust's ``initialization$noise``).
NOISE_START = 0.1


def bounding_volume(X: np.ndarray) -> float:
    """The volume of the axis-aligned bounding box of the rows of ``X``.

    Examples
    --------
    >>> bounding_volume(np.array([[0.0, 1.0], [2.0, 4.0], [1.0, 2.0]]))
    6.0
    """
    return float(np.prod(np.nanmax(X, axis=0) - np.nanmin(X, axis=0)))


#: With a background and no guess of the user's, EM's starts take these turns (start 0,
#: 1, 2, 3, ...): seeded by ``init`` from all points; from the points
#: :func:`guess_noise` leaves; from random memberships. Each finds fits the others miss
#: (``bench/bench_noise_starts.py``).
NOISE_TURNS = ("all", "guess", "random")


def noise_turn(start: int) -> str:
    """How start ``start`` (0, 1, ...) of a fit with a background begins (``NOISE_TURNS``).

    Examples
    --------
    >>> [noise_turn(i) for i in range(4)]
    ['all', 'guess', 'random', 'all']
    """
    return NOISE_TURNS[start % len(NOISE_TURNS)]


def guess_noise(
    X: np.ndarray,
    labels: np.ndarray | None = None,
    sample_weight: np.ndarray | None = None,
    fraction: float = NOISE_START,
    k: int = 10,
) -> np.ndarray | None:
    """A guess of which points are noise, for EM's starts: the ``fraction`` of the points
    farthest from their ``k``-th nearest neighbour (distances in units of the columns' sds;
    scipy's ``cKDTree``), a simple form of Byers & Raftery's (1998) nearest-neighbour
    cleaning. Points with known labels (``labels >= 0``) are never guessed. None when
    there are too few points to guess from.

    With frequency weights (``sample_weight``), a row of weight ``w`` counts as ``w``
    copies of itself, as everywhere else: its ``w - 1`` other copies are its nearest
    neighbours, the sds are the weighted ones, and the rows guessed hold about
    ``fraction`` of the total weight. Rows of weight 0 are neither neighbours nor guessed.

    Examples
    --------
    >>> grid = [[a, b] for a in (0.0, 0.5, 1.0) for b in (0.0, 0.5, 1.0)]
    >>> guess_noise(np.array([*grid, [9.0, 9.0]]), k=3).nonzero()[0].tolist()
    [9]

    A far row that stands for four points is not far from its third neighbour:

    >>> X = np.array([*grid, [9.0, 9.0], [4.0, 9.0]])
    >>> guess_noise(X, sample_weight=np.array([1.0] * 9 + [4.0, 1.0]), k=3).nonzero()[0]
    array([10])
    """
    from scipy.spatial import cKDTree

    from bayesgmm.core.priors import column_moments

    n = X.shape[0]
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    total = w.sum()
    n_flag = max(1, round(fraction * total))  # of weight: of points, without weights
    if total <= k + n_flag:
        return None
    mean, var = column_moments(X, None if sample_weight is None else w)
    sd = np.sqrt(var)
    Z = (X - mean) / np.where(sd > 0, sd, 1.0)
    rows = np.flatnonzero(w > 0)  # the neighbours: rows of weight 0 stand for no point
    tree = cKDTree(Z[rows])
    far = np.full(n, -np.inf)
    todo, m = rows, min(k + 1, rows.size)  # the point itself is its nearest
    while todo.size:
        dist, near = tree.query(Z[todo], k=m)
        dist, near = dist.reshape(todo.size, m), near.reshape(todo.size, m)
        # neighbours' weights, the point's own row standing for its other copies
        count = np.cumsum(w[rows[near]], axis=1) - 1.0
        reached = count >= k - 1e-9
        done = reached.any(axis=1)
        far[todo[done]] = dist[done, reached[done].argmax(axis=1)]
        if m == rows.size:
            break  # the rest have fewer than k neighbours in all: never guessed
        todo, m = todo[~done], min(2 * m, rows.size)
    if labels is not None:
        far[labels >= 0] = -np.inf
    order = np.argsort(-far, kind="stable")
    flagged = np.zeros(n, dtype=bool)
    flagged[order[: max(1, int(np.searchsorted(np.cumsum(w[order]), n_flag, "right")))]] = True
    return flagged & np.isfinite(far)


def check_noise(noise, X: np.ndarray) -> float | None:
    """``log(1 / V)`` of the background component, or None without one.

    ``noise`` is False/None (no background), True (``V`` the bounding box's volume) or a
    positive number (the volume ``V`` itself, in the data's units).

    Examples
    --------
    >>> X = np.array([[0.0, 0.0], [2.0, 5.0]])
    >>> round(check_noise(True, X), 4)  # log(1 / 10): the box is 2 x 5
    -2.3026
    >>> check_noise(False, X) is None
    True
    """
    if noise is None or noise is False:
        return None
    if noise is True:
        volume = bounding_volume(X)
        if not (volume > 0 and math.isfinite(volume)):
            raise DataError(
                f"the data's bounding box has volume {volume:g}, so a uniform background "
                "cannot be placed on it; give the volume yourself (noise=V)."
            )
        return -math.log(volume)
    if isinstance(noise, bool | str) or not isinstance(noise, int | float | np.number):
        raise ConfigError(
            f"noise must be False, True (the bounding box's volume) or a positive volume; "
            f"got {noise!r}."
        )
    if not (noise > 0 and math.isfinite(noise)):
        raise ConfigError(f"noise (the background's volume) must be positive; got {noise!r}.")
    return -math.log(float(noise))


def check_noise_init(
    noise_init, n: int, n_components: int, background: float | None, labels=None
) -> np.ndarray | None:
    """The points guessed to be background noise at EM's start, as a bool array (n,).

    ``noise_init`` is None or one True/False (or 1/0) per point, as mclust's
    ``initialization = list(noise = ...)``; it needs a background (``background`` not
    None, from :func:`check_noise`), at least one point flagged, ``n_components`` points
    left for the Gaussians, and no flagged point with a known label (``labels``).

    Examples
    --------
    >>> check_noise_init([0, 1, 0, 0], 4, 2, background=-2.3).tolist()
    [False, True, False, False]
    >>> check_noise_init(None, 4, 2, background=None) is None
    True
    """
    if noise_init is None:
        return None
    if background is None:
        raise ConfigError(
            "noise_init guesses which points start in the background-noise component, "
            "so it needs one: pass noise=True (or its volume) as well."
        )
    values = np.asarray(noise_init)
    if values.shape != (n,):
        raise DataError(f"noise_init must have one value per point, ({n},); got {values.shape}.")
    if values.dtype != bool:
        if values.dtype.kind not in "iuf" or not np.isin(values, (0, 1)).all():
            raise DataError(
                "noise_init must be True/False (or 1/0) per point: True for a point guessed "
                "to be noise."
            )
        values = values.astype(bool)
    if not values.any():
        raise DataError(
            "noise_init flags no point as noise; leave it out to start the background at "
            f"weight {NOISE_START}."
        )
    if (~values).sum() < n_components:
        raise DataError(
            f"noise_init leaves {int((~values).sum())} points for {n_components} Gaussian "
            "components; flag fewer points as noise."
        )
    if labels is not None and (np.asarray(labels)[values] >= 0).any():
        raise ConfigError(
            "noise_init flags points that have known labels (y); a labelled point belongs "
            "to its component, not to the background."
        )
    return values
