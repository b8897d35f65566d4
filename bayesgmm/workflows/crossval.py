"""Cross-validated classification error and Brier score, with standard errors.

:func:`cross_validate` refits a classifier (:class:`~bayesgmm.BayesianGMMClassifier`, or
any object with ``get_params``, ``fit`` and ``predict_proba``) on ``n_folds - 1`` folds
and scores the held-out fold, as mclust's ``cvMclustDA``:

* the error is the share of held-out points whose most probable class is wrong;
* the Brier score is mclust's, ``1 / (2 n) sum_i sum_c (p_ic - [y_i = c])**2``, from 0
  (certain and right) to 1 (certain and wrong);

each is averaged over folds (weighted by their sizes), and its standard error is the sd of
the fold values over ``sqrt(n_folds)``. The folds are stratified by class, so every
training set holds every class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesgmm.core.data import check_data
from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["CVResult", "cross_validate", "stratified_folds"]


@dataclass
class CVResult:
    """What :func:`cross_validate` measured.

    Attributes
    ----------
    error, error_se : float
        Cross-validated classification error and its standard error.
    brier, brier_se : float
        Cross-validated Brier score (mclust's scale) and its standard error.
    folds : DataFrame
        Per fold: ``n``, ``error``, ``brier``.
    proba : ndarray (n, classes)
        Every point's held-out class probabilities.
    classes : ndarray
    """

    error: float
    error_se: float
    brier: float
    brier_se: float
    folds: pd.DataFrame
    proba: np.ndarray
    classes: np.ndarray

    def __str__(self) -> str:
        return (
            f"{len(self.folds)}-fold cross-validation: error {self.error:.4f} "
            f"(se {self.error_se:.4f}), Brier score {self.brier:.4f} (se {self.brier_se:.4f})"
        )


def stratified_folds(y, n_folds: int, random_seed: int | None = 0) -> np.ndarray:
    """A fold number (0..n_folds-1) per point, each class spread evenly over the folds.

    Examples
    --------
    >>> np.bincount(stratified_folds([0] * 6 + [1] * 4, 2)).tolist()
    [5, 5]
    """
    y = np.asarray(y)
    rng = np.random.default_rng(random_seed)
    folds = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        folds[idx] = (np.arange(len(idx)) + offset) % n_folds
        offset += len(idx)
    return folds


def cross_validate(classifier, X, y, *, n_folds: int = 10, random_seed: int | None = 0) -> CVResult:
    """Cross-validated error and Brier score of ``classifier`` on ``(X, y)``.

    Each fold is fitted by a fresh copy of ``classifier`` (same parameters); see the
    module docstring for the scores and their standard errors.

    Parameters
    ----------
    classifier : BayesianGMMClassifier or a scikit-learn-style classifier
    X : array-like (n, D)
    y : array-like (n,)
    n_folds : int, default=10
    random_seed : int, optional
        Seed of the fold assignment.

    Returns
    -------
    CVResult
    """
    if not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ConfigError(f"n_folds must be an integer >= 2; got {n_folds!r}.")
    X, _ = check_data(X)
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise DataError(f"y must hold one class label per row of X ({X.shape[0]}).")
    classes, codes = np.unique(y, return_inverse=True)
    smallest = np.bincount(codes).min()
    if smallest < n_folds:
        raise DataError(
            f"the smallest class has {smallest} points, fewer than n_folds={n_folds}: some "
            "training folds would hold all of it and some test folds none; use fewer folds."
        )
    folds = stratified_folds(codes, n_folds, random_seed)
    proba = np.empty((X.shape[0], len(classes)))
    rows = []
    for f in range(n_folds):
        test = folds == f
        model = type(classifier)(**classifier.get_params()).fit(X[~test], y[~test])
        fitted = list(getattr(model, "classes_", classes))
        p = np.zeros((test.sum(), len(classes)))
        p[:, [list(classes).index(c) for c in fitted]] = model.predict_proba(X[test])
        proba[test] = p
        onehot = np.eye(len(classes))[codes[test]]
        rows.append({
            "n": int(test.sum()),
            "error": float(np.mean(p.argmax(axis=1) != codes[test])),
            "brier": float(np.mean(np.square(p - onehot).sum(axis=1)) / 2),
        })  # fmt: skip
    table = pd.DataFrame(rows).rename_axis("fold")
    w = table["n"] / table["n"].sum()
    se = {k: float(table[k].std(ddof=1) / np.sqrt(n_folds)) for k in ("error", "brier")}
    return CVResult(error=float(w @ table["error"]), error_se=se["error"],
                    brier=float(w @ table["brier"]), brier_se=se["brier"], folds=table,
                    proba=proba, classes=classes)  # fmt: skip
