"""Known labels (semi-supervised fits): some points' components are given.

``labels[i] = k`` says point ``i`` belongs to component ``k``; ``-1`` says its component
is unknown. A labelled point then contributes its own component's term,

``log w_k + log N(x_i | mu_k, Sigma_k)``,

to the likelihood instead of the mixture's ``log sum_j w_j N(x_i | mu_j, Sigma_j)``, and
its membership is fixed at ``k``; the other points are inferred as before (the model of
mclust's ``MclustSSC``). With every point labelled, the fit is a Gaussian model per
component, with the weights the labelled shares.

Everywhere, this is one operation on the weighted component log densities before they
are normalised: the terms of a labelled point's other components are set to ``-inf``
(:func:`restrict`), so the logsumexp over components is its own component's term and
its memberships are one-hot. EM, the PyMC and JAX likelihoods and the predictions of the
training rows all do exactly that.
"""

from __future__ import annotations

import numpy as np

from bayesgmm.exceptions import DataError

__all__ = ["check_labels", "label_mask", "restrict"]


def check_labels(labels, n: int, n_components: int) -> np.ndarray | None:
    """Validate known labels for ``n`` points of a ``n_components``-component mixture.

    Returns an int64 array (n,) with ``-1`` for unknown, or ``None`` when no point is
    labelled (the fit without labels, bit for bit). Accepted: integers (or integral
    floats) in ``[-1, n_components)``; NaN or None mean unknown, as ``-1``.

    Examples
    --------
    >>> check_labels([0, -1, 1], 3, 2).tolist()
    [0, -1, 1]
    >>> check_labels([-1, -1], 2, 2) is None
    True
    >>> check_labels([0, 3], 2, 3)
    Traceback (most recent call last):
    ...
    bayesgmm.exceptions.DataError: labels must be component numbers 0..2 or -1; row 1 is 3.
    """
    if labels is None:
        return None
    if isinstance(labels, str) or np.ndim(labels) != 1:
        raise DataError(
            f"labels (y) must be a 1-D sequence with one component number per row of X ({n}), "
            f"-1 where unknown; got {type(labels).__name__} of shape {np.shape(labels)}."
        )
    raw = np.asarray(labels, dtype=object)
    if raw.shape[0] != n:
        raise DataError(
            f"labels (y) has {raw.shape[0]} values but X has {n} rows; give one per row."
        )
    values = np.full(n, -1.0)
    for i, v in enumerate(raw):
        if v is None or (isinstance(v, float | np.floating) and np.isnan(v)):
            continue
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | float | np.number):
            raise DataError(
                f"labels (y) must be component numbers 0..{n_components - 1} or -1 (unknown); "
                f"row {i} is {v!r}. For class names, use BayesianGMMClassifier."
            )
        values[i] = float(v)
    bad = np.flatnonzero((values != np.round(values)) | (values < -1) | (values >= n_components))
    if bad.size:
        v = values[bad[0]]
        shown = int(v) if v == round(v) else v
        raise DataError(
            f"labels must be component numbers 0..{n_components - 1} or -1; row {bad[0]} is "
            f"{shown}."
        )
    out = values.astype(np.int64)
    return out if (out >= 0).any() else None


def restrict(lp: np.ndarray, labels: np.ndarray | None, axis: int = -1) -> np.ndarray:
    """Set the terms of a labelled point's other components to ``-inf``, in place.

    ``lp`` holds weighted component log densities with components along ``axis`` (-1
    for (n, K), -2 for (..., K, n)); ``labels`` (n,) as :func:`check_labels` gives
    (``None``: nothing to do).

    Examples
    --------
    >>> restrict(np.zeros((2, 3)), np.array([1, -1])).tolist()
    [[-inf, 0.0, -inf], [0.0, 0.0, 0.0]]
    """
    if labels is None:
        return lp
    mask = label_mask(labels, lp.shape[axis])
    if axis in (-2, lp.ndim - 2):
        mask = mask.T
    lp[..., mask] = -np.inf
    return lp


def label_mask(labels: np.ndarray, n_components: int) -> np.ndarray:
    """Boolean (n, K): True where component ``k`` is ruled out for point ``i``."""
    known = labels >= 0
    return known[:, None] & (labels[:, None] != np.arange(n_components)[None, :])


def start_memberships(resp: np.ndarray, labels: np.ndarray | None) -> np.ndarray:
    """EM's starting memberships (K, n) made to agree with known labels: the start's
    components are first matched to the labels (the permutation with the most labelled
    points on their own component, ``scipy.optimize.linear_sum_assignment``), then the
    labelled points' memberships are set to their component."""
    if labels is None:
        return resp
    from scipy.optimize import linear_sum_assignment

    K = resp.shape[0]
    known = np.flatnonzero(labels >= 0)
    overlap = np.zeros((K, K))  # overlap[j, k]: start component j's share of label k
    np.add.at(overlap.T, labels[known], resp[:, known].T)
    rows, cols = linear_sum_assignment(-overlap)
    perm = np.empty(K, dtype=np.int64)
    perm[cols] = rows
    out = np.ascontiguousarray(resp[perm])
    out[:, known] = 0.0
    out[labels[known], known] = 1.0
    return out
