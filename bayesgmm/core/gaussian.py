"""Gaussian and Gaussian-mixture log densities from Cholesky factors, for one parameter set.

Covariance layouts follow scikit-learn's ``covariances_`` (``K`` components,
``D`` features):

=========== ============ =====================================
family      shape        meaning
=========== ============ =====================================
full        (K, D, D)    one covariance matrix per component
tied        (D, D)       one matrix shared by every component
diag        (K, D)       per-component variances
spherical   (K,)         one variance per component
EII, EEI, E (D, D)       mclust's shared families, as a matrix
VEI, ...    (K, D, D)    mclust's other families, as matrices
=========== ============ =====================================

Every function takes any name EM accepts
(:data:`~bayesgmm.core.families.EM_COVARIANCE_TYPES`; mclust's VVV, EEE, VVI, VII are
full, tied, diag, spherical).

Cholesky factors come in the same layouts and are named for what they are:

* ``chol_cov`` is the lower-triangular ``L`` with ``Sigma = L @ L.T`` (for
  diag/spherical: the standard deviations);
* ``prec_chol`` is the upper-triangular ``U = inv(L).T`` with
  ``inv(Sigma) = U @ U.T`` (for diag/spherical: ``1 / sd``), which is what
  scikit-learn stores as ``precisions_cholesky_``. The Mahalanobis term is then
  ``||x @ U - mu @ U||**2`` and ``log|Sigma|^(-1/2) = sum(log(diag(U)))``.

The family-specific parts live in the family table (:mod:`bayesgmm.core.families`) and
the evaluation in the mixture engine (:mod:`bayesgmm.core.engine`); these functions are
the plain-array entry points to them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from bayesgmm.core.engine import Kernel, design, mixture_pass, normalise
from bayesgmm.core.families import COVARIANCE_TYPES, family
from bayesgmm.exceptions import ConfigError

__all__ = [
    "COVARIANCE_TYPES",
    "check_covariance_type",
    "chol_from_cov",
    "full_covariances",
    "log_gaussian_prob",
    "log_mixture_density",
    "log_responsibilities",
    "prec_chol_from_chol_cov",
]


def check_covariance_type(covariance_type: str) -> str:
    """Return ``covariance_type`` if it is a known family, else raise ConfigError.

    Examples
    --------
    >>> check_covariance_type("diag")
    'diag'
    """
    return family(covariance_type).name


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
    fam = family(covariance_type)
    return fam.chol_from_cov(np.asarray(covariances, dtype=np.float64))


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
    fam = family(covariance_type)
    return fam.prec_chol(np.asarray(chol_cov, dtype=np.float64))


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
    fam = family(covariance_type)
    return fam.to_full(np.asarray(covariances, dtype=np.float64), n_components, n_features)


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
    fam = family(covariance_type)
    X = _as_2d(X)
    means = np.asarray(means, dtype=np.float64)
    kernel = Kernel(fam, means[None], np.asarray(prec_chol, dtype=np.float64)[None])
    ZT = design(X, fam)
    n = X.shape[0]
    out = np.empty((means.shape[0], n))
    chunk, work = kernel.chunk_size(n), kernel.work_buffer(n)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        kernel.fill(ZT, start, stop, out[:, start:stop], work)
    return out.T


def _weighted_kernel(X, weights, means, covariances, covariance_type):
    fam = family(covariance_type)
    X = _as_2d(X)
    means = np.asarray(means, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    prec_chol = fam.prec_chol(fam.chol_from_cov(np.asarray(covariances, dtype=np.float64)))
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    return X, fam, Kernel(fam, means[None], prec_chol[None], log_w[None])


def log_mixture_density(
    X: ArrayLike, weights: ArrayLike, means: ArrayLike, covariances: ArrayLike, covariance_type: str
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
    X, fam, kernel = _weighted_kernel(X, weights, means, covariances, covariance_type)
    return mixture_pass(design(X, fam), kernel)[0]


def log_responsibilities(
    X: ArrayLike, weights: ArrayLike, means: ArrayLike, covariances: ArrayLike, covariance_type: str
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
    X, fam, kernel = _weighted_kernel(X, weights, means, covariances, covariance_type)
    ZT = design(X, fam)
    n = X.shape[0]
    log_prob = np.empty((kernel.K, n))
    kernel.fill(ZT, 0, n, log_prob)
    # weighted log-densities minus the normaliser: exact even where exp() underflows
    log_norm, far = normalise(np.array(log_prob))
    log_resp = log_prob - log_norm
    if far.any():
        with np.errstate(divide="ignore"):
            log_resp[:, far] = np.log(kernel.far_memberships(X[far])[0])
    return log_resp.T
