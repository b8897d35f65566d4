"""The covariance part of EM's prior, by kind of family (used through the family table).

Inverse-Wishart on covariance matrices (the matrix families), inverse-gamma on variances
(the diagonal ones); constants precomputed once per fit.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import gammaln, multigammaln

__all__ = ["CovPriorTerms", "InverseGammaTerms", "InverseWishartTerms"]


class CovPriorTerms:
    """Constants of the covariance part of EM's prior (see :class:`bayesgmm.core.em_prior`)."""

    psi: np.ndarray
    psi_diag: np.ndarray
    nu: float
    D: int

    def log_density(self, chol: np.ndarray, prec_chol: np.ndarray) -> float:
        raise NotImplementedError


class InverseWishartTerms(CovPriorTerms):
    """``Sigma ~ InvWishart(nu, Psi)`` per covariance matrix."""

    def __init__(self, psi: np.ndarray, nu: float) -> None:
        D = psi.shape[0]
        self.psi, self.nu, self.D = psi, nu, D
        self.psi_diag = np.diag(psi).copy()
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
