"""Inverses of stacks of lower-triangular factors (``L^-1``, for precision factors).

Nothing here forms the inverse of a covariance: the families turn Cholesky factors of
covariances into their triangular inverses, and products with those.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.linalg.lapack import dtrtri

from bayesgmm.exceptions import DegenerateFitError

__all__ = ["solve_lower_identity"]


def _not_pd(bad: list[int]) -> str:
    return f"the triangular factor(s) {bad} have a zero or non-finite diagonal."


def solve_lower_identity(
    chol: np.ndarray, not_pd_message: Callable[[list[int]], str] | None = None
) -> np.ndarray:
    """``X_k`` with ``chol_k @ X_k = I`` for a stack of lower-triangular factors.

    A few factors (EM's K) go one by one through LAPACK ``dtrtri``, used instead of
    ``scipy.linalg.solve_triangular(chol_k, I)`` (same result) because that goes through
    OpenBLAS's threaded ``dtrsm``, which costs 0.1-3 ms per tiny matrix when numpy's own
    BLAS threads are still spinning from the E-step's matrix products. Many factors (one
    per posterior draw and component) are solved together by forward substitution, row
    by row across the whole stack (D steps of batched products instead of S x K calls).

    Examples
    --------
    >>> L = np.array([[[2.0, 0.0], [1.0, 4.0]]] * 100)
    >>> np.allclose(solve_lower_identity(L) @ L, np.eye(2))
    True

    A factor with a zero (or non-finite) diagonal raises DegenerateFitError, with the
    message ``not_pd_message(indices of the bad factors)``.
    """
    if chol.shape[0] > _BATCH_SOLVE_MIN:
        out = _forward_substitution(chol)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(out).all(axis=(1, 2))
        if bad.any():
            raise DegenerateFitError(
                (not_pd_message or _not_pd)([int(i) for i in np.flatnonzero(bad)])
            )
        return out
    out = np.empty_like(chol)
    for k in range(chol.shape[0]):
        inv, info = dtrtri(chol[k], lower=1)
        if info != 0 or not np.isfinite(inv).all():
            raise DegenerateFitError((not_pd_message or _not_pd)([k]))
        out[k] = np.tril(inv)
    return out


_BATCH_SOLVE_MIN = 32  # factors above which the stack is solved by batched substitution


def _forward_substitution(chol: np.ndarray) -> np.ndarray:
    """The inverses of a stack of lower-triangular factors, row by row (see above)."""
    D = chol.shape[1]
    out = np.zeros_like(chol)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv_diag = 1.0 / np.diagonal(chol, axis1=1, axis2=2)  # (n, D)
        for i in range(D):
            # row i of X: (e_i - L[i, :i] X[:i]) / L[i, i]
            row = -np.matmul(chol[:, i : i + 1, :i], out[:, :i, :])[:, 0, :]
            row[:, i] += 1.0
            out[:, i, :] = row * inv_diag[:, i : i + 1]
    return out
