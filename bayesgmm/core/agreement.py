"""Clusters against known labels: the contingency (confusion) table and the adjusted Rand
index (Hubert & Arabie 1985), in numpy.

The adjusted Rand index (ARI) counts the pairs of points that two partitions put together
or apart alike, corrected for chance: 1 for identical partitions (whatever the names of
their groups), about 0 for unrelated ones (it can be negative). It needs no matching of
cluster numbers to label values, so label switching does not affect it.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bayesgmm.exceptions import DataError

__all__ = ["adjusted_rand_index", "contingency"]


def contingency(a: ArrayLike, b: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts of points in each pair of groups of two partitions of the same points.

    Parameters
    ----------
    a, b : array-like of shape (n_samples,)
        Group of each point (any sortable values: cluster numbers, label names).

    Returns
    -------
    table : ndarray of int, shape (n_a, n_b)
        ``table[i, j]`` points are in group ``a_values[i]`` of ``a`` and ``b_values[j]``
        of ``b``.
    a_values, b_values : ndarray
        The groups of ``a`` and ``b``, sorted.

    Examples
    --------
    >>> table, rows, cols = contingency([0, 0, 1, 1], ["x", "y", "y", "y"])
    >>> table.tolist(), rows.tolist(), cols.tolist()
    ([[1, 1], [0, 2]], [0, 1], ['x', 'y'])
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 1 or a.shape != b.shape:
        raise DataError(
            f"two partitions of the same points are needed (1-D, equal length); got shapes "
            f"{a.shape} and {b.shape}."
        )
    a_values, ia = np.unique(a, return_inverse=True)
    b_values, ib = np.unique(b, return_inverse=True)
    table = np.zeros((a_values.size, b_values.size), dtype=np.int64)
    np.add.at(table, (ia, ib), 1)
    return table, a_values, b_values


def _pairs(n: np.ndarray) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    return n * (n - 1.0) / 2.0


def adjusted_rand_index(a: ArrayLike, b: ArrayLike) -> float:
    """Adjusted Rand index of two partitions of the same points.

    ``(index - expected) / (max - expected)`` with ``index = sum_ij C(n_ij, 2)`` over the
    contingency table, ``expected = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2)`` and
    ``max = (sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2`` (row sums ``a_i``, column sums
    ``b_j``). When ``max == expected`` (both partitions a single group, or both all
    singletons) the partitions agree and the index is 1, as in scikit-learn.

    Parameters
    ----------
    a, b : array-like of shape (n_samples,)
        Group of each point, e.g. cluster numbers and species names.

    Returns
    -------
    float
        1 for the same partition, about 0 for chance agreement, below 0 for less.

    Examples
    --------
    >>> adjusted_rand_index([0, 0, 1, 1], ["b", "b", "a", "a"])
    1.0
    >>> round(adjusted_rand_index([0, 0, 1, 1], [0, 1, 0, 1]), 3)
    -0.5
    """
    table, _, _ = contingency(a, b)
    n = table.sum()
    index = _pairs(table).sum()
    rows, cols = _pairs(table.sum(axis=1)).sum(), _pairs(table.sum(axis=0)).sum()
    expected = rows * cols / _pairs(n) if n > 1 else 0.0
    top = (rows + cols) / 2.0
    if top == expected:
        return 1.0
    return float((index - expected) / (top - expected))
