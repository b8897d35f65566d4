"""Anomalies: points whose log predictive density falls below a threshold."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bayesgmm.core.checks import real
from bayesgmm.core.data import check_sample_weight
from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["flag_anomalies", "weighted_quantile"]

_FINITE = real()
_PROB = real(0, 1, lo_open=True, hi_open=True)


def flag_anomalies(
    scores: ArrayLike,
    *,
    threshold: float | None = None,
    quantile: float = 0.01,
    train_scores: ArrayLike | None = None,
    noise_proba: ArrayLike | None = None,
    train_weights: ArrayLike | None = None,
) -> pd.DataFrame:
    """Flag points whose log predictive density falls below a threshold, or that a
    background-noise component holds.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Log predictive densities (:func:`score_samples`).
    threshold : float, optional
        A log-density threshold; when given, ``quantile`` and ``train_scores`` are unused.
    quantile : float in (0, 1), default=0.01
        Otherwise the threshold is this quantile of ``train_scores`` (or, without them, of
        ``scores`` themselves): about this fraction of training points is flagged.
    train_scores : array-like, optional
        Log predictive densities of the training data.
    noise_proba : array-like of shape (n_samples, n_components + 1), optional
        Memberships of a fit with a background-noise component (:func:`predict_proba`,
        the background's column last): when given, a point is flagged when the
        background's membership exceeds every component's (column ``noise_prob``), and
        the density threshold is not used.
    train_weights : array-like of shape (len(train_scores),), optional
        Frequency weights of the training points (``sample_weight`` of the fit): the
        quantile is then that of the training points with each repeated as its weight
        says (rows of weight 0 left out), as :func:`weighted_quantile` computes it.

    Returns
    -------
    pandas.DataFrame
        Index ``obs``; columns ``score`` and ``is_anomaly``; sorted by nothing (same order
        as ``scores``). ``attrs["threshold"]`` holds the threshold used.

    Examples
    --------
    >>> t = flag_anomalies([-1.0, -2.0, -30.0], threshold=-10.0)
    >>> t["is_anomaly"].tolist()
    [False, False, True]
    >>> flag_anomalies([-1.0, -9.0], noise_proba=[[0.9, 0.1], [0.2, 0.8]])["is_anomaly"].tolist()
    [False, True]
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise DataError(f"scores must be a non-empty 1-D array; got shape {s.shape}.")
    if np.isnan(s).any():
        raise DataError("scores contain NaN; score the points with score_samples first.")
    if noise_proba is not None:
        p = np.asarray(noise_proba, dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != s.size or p.shape[1] < 2:
            raise DataError(
                f"noise_proba must have shape ({s.size}, n_components + 1); got {p.shape}."
            )
        table = pd.DataFrame(
            {"score": s, "noise_prob": p[:, -1], "is_anomaly": p.argmax(axis=1) == p.shape[1] - 1},
            index=pd.RangeIndex(s.size, name="obs"),
        )
        table.attrs["threshold"] = None
        return table
    if threshold is not None:
        if not _FINITE(threshold):
            raise ConfigError(f"threshold must be a finite number; got {threshold!r}.")
        thr = float(threshold)
    else:
        if not _PROB(quantile):
            raise ConfigError(f"quantile must be a number in (0, 1); got {quantile!r}.")
        ref = s if train_scores is None else np.asarray(train_scores, dtype=np.float64)
        if ref.ndim != 1 or ref.size == 0 or np.isnan(ref).any():
            raise DataError("train_scores must be a non-empty 1-D array without NaN.")
        if train_weights is None:
            thr = float(np.quantile(ref, quantile))
        else:
            if np.shape(train_weights) != ref.shape:
                raise DataError(
                    f"train_weights has shape {np.shape(train_weights)}; train_scores {ref.shape}."
                )
            # the checks of a fit's sample_weight: numbers, finite, >= 0, not all zero
            w = check_sample_weight(train_weights, ref[:, None])
            thr = weighted_quantile(ref, w, float(quantile))
    table = pd.DataFrame(
        {"score": s, "is_anomaly": s < thr}, index=pd.RangeIndex(s.size, name="obs")
    )
    table.attrs["threshold"] = thr
    return table


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    """The ``q`` quantile of ``values`` with frequency weights: numpy's default (linear)
    quantile of the values each repeated as its weight says, which for whole-number
    weights it is exactly; fractional weights stretch the same steps. Values of weight 0
    are left out.

    Examples
    --------
    >>> v = np.array([3.0, 1.0, 2.0])
    >>> weighted_quantile(v, np.array([1.0, 2.0, 0.0]), 0.5)  # that of [1, 1, 3]
    1.0
    >>> weighted_quantile(v, np.array([1.0, 2.0, 0.0]), 0.75)  # 1 + 0.5 * (3 - 1)
    2.0
    """
    keep = weights > 0
    if not keep.any():
        raise DataError("every training weight is 0; no quantile to take.")
    order = np.argsort(values[keep], kind="stable")
    v, w = values[keep][order], weights[keep][order]
    ends = np.cumsum(w)  # the repeated values' positions: [ends[i-1], ends[i]) hold v[i]
    h = (ends[-1] - 1.0) * q if ends[-1] >= 1.0 else 0.0  # numpy's 'linear' position
    lo = np.floor(h)
    at = np.minimum(np.searchsorted(ends, [lo, lo + 1.0], side="right"), v.size - 1)
    return float(v[at[0]] + (h - lo) * (v[at[1]] - v[at[0]]))
