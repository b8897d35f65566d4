"""The covariance part of EM's prior, by kind of family (used through the family table).

Inverse-Wishart on covariance matrices (the matrix families), inverse-gamma on variances
(the diagonal ones); constants precomputed once per fit.

mclust's eigen-decomposed families (:mod:`bayesgmm.core.eigen_families`) keep their
covariances as matrices: the correlated ones take the inverse-Wishart terms, those with the
identity orientation :class:`DiagonalMatrixTerms` (the same inverse-gamma priors, read off
the matrices' diagonals). Each such prior's log density is, in ``Sigma``,
``-(count / 2) log|Sigma| - tr(pseudo_scatter Sigma^{-1}) / 2 + const``, so a MAP M-step is
the maximum likelihood one on the counts ``N_k + count`` and scatter matrices
``S_k + pseudo_scatter``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, multigammaln

__all__ = ["CovPriorTerms", "DiagonalMatrixTerms", "InverseGammaTerms", "InverseWishartTerms"]


class CovPriorTerms:
    """Constants of the covariance part of EM's prior (see :class:`bayesgmm.core.em_prior`)."""

    psi: np.ndarray
    psi_diag: np.ndarray
    nu: float
    D: int
    #: The log density as ``-(count / 2) log|Sigma| - tr(pseudo_scatter Sigma^{-1}) / 2``
    #: (set by the kinds the eigen-decomposed families use).
    count: float
    pseudo_scatter: np.ndarray

    def log_density(self, chol: np.ndarray, prec_chol: np.ndarray) -> float:
        raise NotImplementedError


class InverseWishartTerms(CovPriorTerms):
    """``Sigma ~ InvWishart(nu, Psi)`` per covariance matrix."""

    def __init__(self, psi: np.ndarray, nu: float) -> None:
        D = psi.shape[0]
        self.psi, self.nu, self.D = psi, nu, D
        self.psi_diag = np.diag(psi).copy()
        self.count, self.pseudo_scatter = nu + D + 1.0, psi
        self.psi_chol = np.linalg.cholesky(psi)
        log_det_psi = 2.0 * np.log(np.diag(self.psi_chol)).sum()
        self.iw_const = 0.5 * nu * log_det_psi - 0.5 * nu * D * math.log(2.0)
        self.iw_const -= multigammaln(0.5 * nu, D)

    def log_density(self, chol: np.ndarray, prec_chol: np.ndarray) -> float:
        nu, D = self.nu, self.D
        chol3 = chol.reshape(-1, D, D)
        log_det = 2.0 * np.log(np.diagonal(chol3, axis1=1, axis2=2)).sum(axis=1)
        # tr(Psi inv(Sigma)) = ||Psi_chol^T prec_chol||_F^2 since inv(Sigma) = U U^T
        trace = np.square(self.psi_chol.T @ prec_chol.reshape(-1, D, D)).sum(axis=(1, 2))
        return float((self.iw_const - 0.5 * (nu + D + 1) * log_det - 0.5 * trace).sum())


class InverseGammaTerms(CovPriorTerms):
    """``sigma2 ~ InvGamma(nu / 2, Psi_dd / 2)`` per variance (spherical: mean of Psi_dd)."""

    def __init__(self, psi: np.ndarray, nu: float, isotropic: bool) -> None:
        self.psi, self.nu, self.D = psi, nu, psi.shape[0]
        self.psi_diag = np.diag(psi).copy()
        self.ig_shape = 0.5 * nu
        b = 0.5 * (self.psi_diag.mean() if isotropic else self.psi_diag)
        self.ig_rate = b
        self.ig_const = self.ig_shape * np.log(b) - gammaln(self.ig_shape)

    def log_density(self, chol: np.ndarray, prec_chol: np.ndarray) -> float:
        var = chol**2
        a, b = self.ig_shape, self.ig_rate
        return float((self.ig_const - (a + 1.0) * np.log(var) - b / var).sum())


class DiagonalMatrixTerms(InverseGammaTerms):
    """:class:`InverseGammaTerms` for diagonal covariances stored as matrices: each
    variance ``Sigma[d, d] ~ InvGamma(nu / 2, Psi_dd / 2)``, or, isotropic, the one
    variance ``lambda`` of ``Sigma = lambda I`` ``~ InvGamma(nu / 2, mean(Psi_dd) / 2)``;
    ``chol`` is a stack of diagonal Cholesky factors (or one)."""

    def __init__(self, psi: np.ndarray, nu: float, isotropic: bool) -> None:
        super().__init__(psi, nu, isotropic)
        self.isotropic = isotropic
        D = self.D
        if isotropic:  # -(nu/2 + 1) log(lambda) - mean(Psi_dd) / (2 lambda), |Sigma| = lambda^D
            self.count = (nu + 2.0) / D
            self.pseudo_scatter = np.eye(D) * (self.psi_diag.mean() / D)
        else:
            self.count, self.pseudo_scatter = nu + 2.0, np.diag(self.psi_diag)

    def log_density(self, chol: np.ndarray, prec_chol: np.ndarray) -> float:
        sds = np.diagonal(chol, axis1=-2, axis2=-1)
        return super().log_density(sds[..., 0] if self.isotropic else sds, prec_chol)
