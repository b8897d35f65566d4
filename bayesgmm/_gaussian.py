"""Gaussian and Gaussian-mixture log-densities from Cholesky factors (numpy only).

This is the hot loop of EM and of prediction, so everything stays in log space,
uses Cholesky factors (never explicit inverses) and is vectorised over points.

Covariance layouts follow scikit-learn's ``covariances_`` (``K`` components,
``D`` features):

=========== ============ =====================================
family      shape        meaning
=========== ============ =====================================
full        (K, D, D)    one covariance matrix per component
tied        (D, D)       one matrix shared by every component
diag        (K, D)       per-component variances
spherical   (K,)         one variance per component
=========== ============ =====================================

Cholesky factors come in the same layouts and are named for what they are:

* ``chol_cov`` is the lower-triangular ``L`` with ``Sigma = L @ L.T`` (for
  diag/spherical: the standard deviations);
* ``prec_chol`` is the upper-triangular ``U = inv(L).T`` with
  ``inv(Sigma) = U @ U.T`` (for diag/spherical: ``1 / sd``), which is what
  scikit-learn stores as ``precisions_cholesky_``. The Mahalanobis term is then
  ``||x @ U - mu @ U||**2`` and ``log|Sigma|^(-1/2) = sum(log(diag(U)))``.

Internally densities are computed on arrays laid out ``(n_components, n_samples)``
so that reductions over components are element-wise operations on contiguous rows,
and in column chunks that stay in cache.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike
from scipy.linalg.lapack import dtrtri

from bayesgmm.exceptions import ConfigError, DegenerateFitError

__all__ = [
    "COVARIANCE_TYPES",
    "FAR_LOG_DENSITY",
    "check_covariance_type",
    "chol_from_cov",
    "full_covariances",
    "limit_memberships",
    "log_gaussian_prob",
    "log_mixture_density",
    "log_responsibilities",
    "prec_chol_from_chol_cov",
]

COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")
_LOG_2PI = math.log(2.0 * math.pi)
_CHUNK_ELEMS = 1 << 17  # float64 elements per work buffer (1 MB): stays in cache
# logsumexp terms more than 600 nats below the largest are raised to exp(-600) ~ 3e-261 of
# it: invisible in double precision, and it keeps exp() off numpy's very slow underflow
# path and keeps subnormal numbers out of the later matrix products (2-15x faster E-steps).
_LOG_FLOOR = -600.0

#: Points whose best component log density is below minus this are "far": the spacing of
#: float64 numbers there (2**40 * 2**-52 = 2.4e-4 nats) is too coarse for the differences
#: between components' log densities, so their memberships come from
#: :func:`limit_memberships` instead of a logsumexp of rounded values.
FAR_LOG_DENSITY = float(2**40)

_REMEDIES = (
    "Try fewer components, a larger reg_covar or the default prior (prior='default'), "
    "or standardise the data (e.g. (X - X.mean(0)) / X.std(0))."
)


def check_covariance_type(covariance_type: str) -> str:
    """Return ``covariance_type`` if it is a known family, else raise ConfigError.

    Examples
    --------
    >>> check_covariance_type("diag")
    'diag'
    """
    if covariance_type not in COVARIANCE_TYPES:
        raise ConfigError(
            f"covariance_type={covariance_type!r} is not supported; use one of "
            f"{list(COVARIANCE_TYPES)}."
        )
    return covariance_type


def chol_from_cov(covariances: ArrayLike, covariance_type: str) -> np.ndarray:
    """Lower Cholesky factor ``chol_cov`` of each covariance, in the family's layout.

    Parameters
    ----------
    covariances : array-like
        Covariances in scikit-learn's layout for ``covariance_type`` (see module docs).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    chol_cov : ndarray
        Same shape as ``covariances``: lower-triangular ``L`` with ``Sigma = L @ L.T``
        for full/tied, standard deviations for diag/spherical.

    Raises
    ------
    DegenerateFitError
        A covariance is not positive definite (or not finite); the message names the
        component and says what to try.

    Examples
    --------
    >>> import numpy as np
    >>> chol_from_cov(np.array([[4.0, 2.0], [2.0, 5.0]]), "tied")
    array([[2., 0.],
           [1., 2.]])
    >>> chol_from_cov(np.array([4.0, 9.0]), "spherical")
    array([2., 3.])
    """
    check_covariance_type(covariance_type)
    cov = np.asarray(covariances, dtype=np.float64)
    finite = np.isfinite(cov)
    if covariance_type in ("full", "tied"):
        stacked = cov if covariance_type == "full" else cov[None]
        if finite.all():
            try:
                chol = np.linalg.cholesky(stacked)
            except np.linalg.LinAlgError:
                pass
            else:
                return chol if covariance_type == "full" else chol[0]
        bad = [k for k in range(stacked.shape[0]) if not _is_pd(stacked[k])]
        raise DegenerateFitError(_not_pd_message(bad, covariance_type))
    positive = finite & (cov > 0.0)
    if not positive.all():
        bad = sorted(set(np.nonzero(~positive)[0].tolist()))
        raise DegenerateFitError(_not_pd_message(bad, covariance_type))
    return np.sqrt(cov)


def _is_pd(matrix: np.ndarray) -> bool:
    if not np.isfinite(matrix).all():
        return False
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def _not_pd_message(bad: list[int], covariance_type: str) -> str:
    where = "the tied covariance" if covariance_type == "tied" else f"component(s) {bad}"
    return (
        f"The covariance of {where} is not positive definite: a component collapsed onto "
        f"too few (or duplicated) points, or some features are collinear. {_REMEDIES}"
    )


def prec_chol_from_chol_cov(chol_cov: ArrayLike, covariance_type: str) -> np.ndarray:
    """Precision Cholesky factor ``prec_chol`` from the covariance Cholesky factor.

    Parameters
    ----------
    chol_cov : array-like
        Output of :func:`chol_from_cov` (family layout).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    prec_chol : ndarray
        Same shape: upper-triangular ``U = inv(L).T`` with ``inv(Sigma) = U @ U.T``
        (scikit-learn's ``precisions_cholesky_``); ``1 / sd`` for diag/spherical.
        ``Sigma`` is never inverted: ``U.T`` solves the triangular system ``L @ U.T = I``.

    Examples
    --------
    >>> import numpy as np
    >>> cov = np.array([[4.0, 2.0], [2.0, 5.0]])
    >>> prec_chol = prec_chol_from_chol_cov(chol_from_cov(cov, "tied"), "tied")
    >>> bool(np.allclose(prec_chol @ prec_chol.T @ cov, np.eye(2)))
    True
    """
    check_covariance_type(covariance_type)
    chol = np.asarray(chol_cov, dtype=np.float64)
    if covariance_type in ("diag", "spherical"):
        return 1.0 / chol
    stacked = chol if covariance_type == "full" else chol[None]
    prec = np.swapaxes(_solve_lower_identity(stacked), 1, 2)
    return prec if covariance_type == "full" else prec[0]


def _solve_lower_identity(chol: np.ndarray) -> np.ndarray:
    """``X_k`` with ``chol_k @ X_k = I`` for a stack of lower-triangular factors.

    LAPACK ``dtrtri`` does the substitution. It is used instead of
    ``scipy.linalg.solve_triangular(chol_k, I)`` (same result) because that goes
    through OpenBLAS's threaded ``dtrsm``, which costs 0.1-3 ms per tiny matrix when
    numpy's own BLAS threads are still spinning from the E-step's matrix products.
    """
    out = np.empty_like(chol)
    for k in range(chol.shape[0]):
        inv, info = dtrtri(chol[k], lower=1)
        if info != 0 or not np.isfinite(inv).all():
            raise DegenerateFitError(_not_pd_message([k], "full"))
        out[k] = np.tril(inv)
    return out


def full_covariances(
    covariances: ArrayLike, covariance_type: str, n_components: int, n_features: int
) -> np.ndarray:
    """Expand covariances of any family to a stack of ``(K, D, D)`` matrices.

    Examples
    --------
    >>> import numpy as np
    >>> full_covariances(np.array([1.0, 4.0]), "spherical", 2, 2)[1]
    array([[4., 0.],
           [0., 4.]])
    """
    check_covariance_type(covariance_type)
    cov = np.asarray(covariances, dtype=np.float64)
    shape = (n_components, n_features, n_features)
    if covariance_type == "full":
        return cov.reshape(shape).copy()
    if covariance_type == "tied":
        return np.repeat(cov.reshape(1, n_features, n_features), n_components, axis=0)
    out = np.zeros(shape)
    diag = np.arange(n_features)
    variances = cov.reshape(n_components, -1)  # (K, D) or (K, 1): broadcast below
    out[:, diag, diag] = variances
    return out


# --------------------------------------------------------------------------- #
# Kernel: per-parameter precomputation + chunked evaluation, (K, n) layout
# --------------------------------------------------------------------------- #


def _design_T(X: np.ndarray, covariance_type: str) -> np.ndarray:
    """Rows ``[1, x_1..x_D, extra]`` of the data, shape ``(rows, n)``, C-contiguous.

    ``extra`` is ``x_d**2`` (D rows) for diag and ``||x||**2`` (1 row) for spherical;
    nothing for full/tied. EM appends its own second moments.
    """
    n, d = X.shape
    extra = {"diag": d, "spherical": 1}.get(covariance_type, 0)
    ZT = np.empty((1 + d + extra, n))
    ZT[0] = 1.0
    ZT[1 : 1 + d] = X.T
    with np.errstate(over="ignore"):  # far points: see FAR_LOG_DENSITY
        if covariance_type == "diag":
            np.square(ZT[1 : 1 + d], out=ZT[1 + d :])
        elif covariance_type == "spherical":
            np.sum(np.square(ZT[1 : 1 + d]), axis=0, out=ZT[1 + d])
    return ZT


class _Kernel:
    """Weighted component log-densities ``log w_k + log N(x | mu_k, Sigma_k)``.

    Built once per parameter value; :meth:`fill` evaluates a column chunk of the
    design ``ZT`` (see :func:`_design_T`) into ``out`` of shape ``(K, chunk)``.
    """

    def __init__(
        self,
        means: np.ndarray,
        prec_chol: np.ndarray,
        covariance_type: str,
        log_weights: np.ndarray | None = None,
    ) -> None:
        K, D = means.shape
        self.K, self.D, self.covariance_type = K, D, covariance_type
        self.means, self.prec_chol = means, prec_chol
        if covariance_type in ("full", "tied"):
            U = prec_chol if covariance_type == "full" else np.broadcast_to(prec_chol, (K, D, D))
            log_det = np.log(np.diagonal(U, axis1=1, axis2=2)).sum(axis=1)
            # y_k = (U_k^T x - U_k^T mu_k) / sqrt(2) for all k in one product with the rows
            # [1, x] of the design: A has rows [-(mu_k U_k)_d, U_k[:, d]^T] / sqrt(2), so
            # -0.5 * maha_k = -sum_d y_kd**2.
            A = np.empty((K, D, 1 + D))
            A[:, :, 0] = -np.einsum("kd,kde->ke", means, U)
            A[:, :, 1:] = U.transpose(0, 2, 1)
            self.A = A.reshape(K * D, 1 + D) * math.sqrt(0.5)
            quad = np.zeros(K)
        else:
            prec = prec_chol**2
            if covariance_type == "diag":
                log_det = np.log(prec_chol).sum(axis=1)
                # -0.5 maha = (mu prec) . x - 0.5 prec . x**2 - 0.5 sum(mu**2 prec)
                linear, square = means * prec, -0.5 * prec
                quad = -0.5 * np.sum(means**2 * prec, axis=1)
            else:  # spherical
                log_det = D * np.log(prec_chol)
                linear, square = means * prec[:, None], -0.5 * prec[:, None]
                quad = -0.5 * prec * np.sum(means**2, axis=1)
        const = log_det - 0.5 * D * _LOG_2PI + quad
        self.log_norm_const = log_det - 0.5 * D * _LOG_2PI
        if log_weights is not None:
            const = const + log_weights
            self.log_norm_const = self.log_norm_const + log_weights
        self.const = const.reshape(K, 1)
        if covariance_type in ("diag", "spherical"):  # one product with rows [1, x, x**2]
            self.A = np.hstack([self.const, linear, square])

    def far_memberships(self, X: np.ndarray) -> np.ndarray:
        """:func:`limit_memberships` of the points ``X`` (n, D), shape (K, n)."""
        K, D = self.K, self.D
        if self.covariance_type == "full":
            U = self.prec_chol
        elif self.covariance_type == "tied":
            U = np.broadcast_to(self.prec_chol, (K, D, D))
        elif self.covariance_type == "diag":
            U = np.zeros((K, D, D))
            U[:, np.arange(D), np.arange(D)] = self.prec_chol
        elif self.covariance_type == "spherical":
            U = self.prec_chol[:, None, None] * np.eye(D)
        scale = np.maximum(1.0, np.abs(X).max(axis=1))
        u = X / scale[:, None]
        Uu = np.einsum("kde,nd->ken", U, u)  # U_k^T u, (K, D, n)
        Um = np.einsum("kde,kd->ke", U, self.means)  # U_k^T mu_k, (K, D)
        a = np.square(Uu).sum(axis=1)
        b = np.einsum("ken,ke->kn", Uu, Um)
        c = self.log_norm_const - 0.5 * np.square(Um).sum(axis=1)
        return limit_memberships(a, b, np.broadcast_to(c[:, None], a.shape))

    def chunk_size(self, n: int) -> int:
        width = self.K * self.D if self.covariance_type in ("full", "tied") else self.K
        return int(min(n, max(256, _CHUNK_ELEMS // max(width, 1))))

    def work_buffer(self, n: int) -> np.ndarray:
        size = self.K * self.D * self.chunk_size(n)
        return np.empty(size if self.covariance_type in ("full", "tied") else 0)

    def fill(self, ZT: np.ndarray, start: int, stop: int, out: np.ndarray, work: np.ndarray):
        """Write the weighted log-densities of columns ``start:stop`` into ``out``."""
        K, D, c = self.K, self.D, stop - start
        rows = self.A.shape[1]
        if self.covariance_type in ("full", "tied"):
            g = work[: K * D * c].reshape(K * D, c)
            np.matmul(self.A, ZT[:rows, start:stop], out=g)
            np.square(g, out=g)
            np.sum(g.reshape(K, D, c), axis=1, out=out)
            np.subtract(self.const, out, out=out)
        else:
            np.matmul(self.A, ZT[:rows, start:stop], out=out)


def limit_memberships(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Membership probabilities of a point far from every component, exactly in the limit.

    With the point written ``x = s u`` (``s`` its size, ``u`` its direction), component
    ``k``'s weighted log density is ``c_k - s**2 a_k / 2 + s b_k`` with
    ``a_k = u^T P_k u``, ``b_k = u^T P_k mu_k`` and ``c_k`` what is left (log weight,
    log determinant, ``-mu_k^T P_k mu_k / 2``), ``P_k`` the precision. Far away (large
    ``s``) the component with the smallest ``a_k`` -- the widest along ``u`` -- takes
    the point; ties in ``a`` (equal covariances, as in the tied family) are broken by the
    largest ``b_k`` and then shared in proportion to ``exp(c_k)``. These are the limits of
    the memberships as the point moves away, computed without forming ``s**2``, so they
    are well defined where float64 cannot resolve (or overflows on) the log densities.

    Parameters
    ----------
    a, b, c : ndarray of shape (..., n_components, n_points)

    Returns
    -------
    ndarray of the same shape, summing to 1 over components.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1.0], [0.25]])      # component 1 is twice as wide along u
    >>> limit_memberships(a, np.zeros_like(a), np.zeros_like(a)).ravel().tolist()
    [0.0, 1.0]
    >>> limit_memberships(np.ones((2, 1)), np.array([[0.0], [1.0]]), np.zeros((2, 1))).ravel()
    array([0., 1.])
    """
    rtol = 1e-9
    a_min = a.min(axis=-2, keepdims=True)
    keep = a <= a_min + rtol * np.abs(a).max(axis=-2, keepdims=True)
    b = np.where(keep, b, -np.inf)
    b_max = b.max(axis=-2, keepdims=True)
    keep &= b >= b_max - rtol * np.abs(np.where(keep, b, 0.0)).max(axis=-2, keepdims=True)
    lp = np.where(keep, c, -np.inf)
    lp = lp - lp.max(axis=-2, keepdims=True)
    p = np.exp(lp)
    return p / p.sum(axis=-2, keepdims=True)


def _logsumexp_rows_inplace(A: np.ndarray) -> np.ndarray:
    """Column-wise logsumexp of ``A`` (K, c); ``A`` is overwritten with ``exp(A - lse)``.

    Returns the ``(c,)`` log-normalisers. The shift by the column max keeps it stable
    (see ``_LOG_FLOOR`` for the floor on negligible terms); columns that are ``-inf``
    everywhere give ``-inf`` and NaN responsibilities.
    """
    m = A.max(axis=0)
    overflowed = ~np.isfinite(m)
    if overflowed.any():
        m = np.where(overflowed, 0.0, m)
    A -= m
    with np.errstate(invalid="ignore"):
        np.maximum(A, _LOG_FLOOR, out=A)
    np.exp(A, out=A)
    s = A.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        A /= s
        np.log(s, out=s)
    s += m
    if overflowed.any():
        s[overflowed] = -np.inf  # every component's log density is below float64's range
    return s


def _mixture_pass(
    ZT: np.ndarray, kernel: _Kernel, resp_out: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """One pass over the data: log mixture density per point and responsibilities (K, n)."""
    n = ZT.shape[1]
    resp = np.empty((kernel.K, n)) if resp_out is None else resp_out
    log_norm = np.empty(n)
    chunk, work = kernel.chunk_size(n), kernel.work_buffer(n)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = resp[:, start:stop]
        with np.errstate(over="ignore", invalid="ignore"):
            kernel.fill(ZT, start, stop, block, work)
        log_norm[start:stop] = _logsumexp_rows_inplace(block)
    far = ~(log_norm > -FAR_LOG_DENSITY)
    if far.any():
        X = ZT[1 : 1 + kernel.D, far].T
        resp[:, far] = kernel.far_memberships(X)
    return log_norm, resp


def _as_2d(X: ArrayLike) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ConfigError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}.")
    return X


def log_gaussian_prob(
    X: ArrayLike, means: ArrayLike, prec_chol: ArrayLike, covariance_type: str
) -> np.ndarray:
    """Component log-densities ``log N(x_i | mu_k, Sigma_k)``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    means : array-like of shape (n_components, n_features)
    prec_chol : array-like
        Precision Cholesky factors in the family's layout (:func:`prec_chol_from_chol_cov`).
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    log_prob : ndarray of shape (n_samples, n_components)

    Examples
    --------
    >>> import numpy as np
    >>> lp = log_gaussian_prob(np.zeros((1, 1)), np.zeros((1, 1)), np.ones(1), "spherical")
    >>> bool(np.isclose(lp[0, 0], -0.5 * np.log(2 * np.pi)))
    True
    """
    check_covariance_type(covariance_type)
    X = _as_2d(X)
    means = np.asarray(means, dtype=np.float64)
    kernel = _Kernel(means, np.asarray(prec_chol, dtype=np.float64), covariance_type)
    ZT = _design_T(X, covariance_type)
    n = X.shape[0]
    out = np.empty((means.shape[0], n))
    chunk, work = kernel.chunk_size(n), kernel.work_buffer(n)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        kernel.fill(ZT, start, stop, out[:, start:stop], work)
    return out.T


def _mixture_from_covariances(X, weights, means, covariances, covariance_type):
    check_covariance_type(covariance_type)
    X = _as_2d(X)
    means = np.asarray(means, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    prec_chol = prec_chol_from_chol_cov(
        chol_from_cov(covariances, covariance_type), covariance_type
    )
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    kernel = _Kernel(means, prec_chol, covariance_type, log_weights=log_w)
    return _mixture_pass(_design_T(X, covariance_type), kernel, None)


def log_mixture_density(
    X: ArrayLike,
    weights: ArrayLike,
    means: ArrayLike,
    covariances: ArrayLike,
    covariance_type: str,
) -> np.ndarray:
    """Log mixture density ``log sum_k pi_k N(x_i | mu_k, Sigma_k)`` of each point.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    weights : array-like of shape (n_components,)
    means : array-like of shape (n_components, n_features)
    covariances : array-like
        scikit-learn layout for ``covariance_type``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    log_density : ndarray of shape (n_samples,)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0]])
    >>> ld = log_mixture_density(X, [0.5, 0.5], [[0.0], [0.0]], [1.0, 1.0], "spherical")
    >>> bool(np.allclose(ld, -0.5 * np.log(2 * np.pi) - 0.5 * X[:, 0] ** 2))
    True
    """
    return _mixture_from_covariances(X, weights, means, covariances, covariance_type)[0]


def log_responsibilities(
    X: ArrayLike,
    weights: ArrayLike,
    means: ArrayLike,
    covariances: ArrayLike,
    covariance_type: str,
) -> np.ndarray:
    """Log posterior component probabilities ``log p(z_i = k | x_i)``.

    Same parameters as :func:`log_mixture_density`.

    Returns
    -------
    log_resp : ndarray of shape (n_samples, n_components)
        Rows satisfy ``logsumexp(log_resp, axis=1) == 0``.

    Examples
    --------
    >>> import numpy as np
    >>> lr = log_responsibilities([[0.0]], [0.25, 0.75], [[0.0], [0.0]], [1.0, 1.0], "spherical")
    >>> np.exp(lr).round(3)
    array([[0.25, 0.75]])
    """
    check_covariance_type(covariance_type)
    weights = np.asarray(weights, dtype=np.float64)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    # weighted log-densities minus the normaliser: exact even where exp() underflows
    log_prob = (
        log_gaussian_prob(
            X,
            means,
            prec_chol_from_chol_cov(chol_from_cov(covariances, covariance_type), covariance_type),
            covariance_type,
        )
        + log_w
    )
    log_norm = _logsumexp_rows_inplace(np.array(log_prob.T))
    return log_prob - log_norm[:, None]
