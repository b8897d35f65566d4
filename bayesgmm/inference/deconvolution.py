"""The likelihood of points with known measurement errors, in PyTensor (for
:func:`bayesgmm.inference.model.build_model`'s ``noise_cov``).

A point ``x_i`` with error covariance ``S_i`` has density ``sum_k w_k N(x_i | mu_k,
Sigma_k + S_i)`` (extreme deconvolution; :mod:`bayesgmm.core.noise`): a different
covariance for every point and component, so the likelihood factorises ``N K`` matrices
(batched Cholesky factors and triangular solves) instead of ``K``.
:func:`bayesgmm.inference.jaxlik.noise_loglik` is the same in JAX.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesgmm.core.families import CovarianceFamily

__all__ = ["full_cov_z", "noise_loglik"]

_LOG_2PI = float(np.log(2.0 * np.pi))


def full_cov_z(cov_param, fam: CovarianceFamily, K: int, D: int):
    """The components' covariances (K, D, D) on the standardised scale from the
    likelihood's covariance argument (Cholesky factors or sds, per component or shared)."""
    if fam.correlated:
        cov = pt.matmul(cov_param, pt.swapaxes(cov_param, -1, -2))
    elif fam.isotropic:
        cov = pt.shape_padright(cov_param**2, 2) * pt.eye(D)
    else:
        cov = pt.shape_padright(cov_param**2, 1) * pt.eye(D)
    return pt.broadcast_to(cov, (K, D, D))


def noise_loglik(z, noise_z, log_weights, means_z, cov_param, fam: CovarianceFamily):
    """Each point's mixture log density (N,) on the standardised scale when it carries a
    known error covariance ``noise_z`` (N, D, D): ``log sum_k w_k N(z_i | mu_k, Sigma_k +
    S_i)`` (deconvolution; :mod:`bayesgmm.core.noise`), one Cholesky factor per point and
    component."""
    K, D = means_z.shape[0], means_z.shape[1]
    total = full_cov_z(cov_param, fam, K, D)[None] + noise_z[:, None]  # (N, K, D, D)
    chol = pt.linalg.cholesky(total)
    diff = z[:, None, :] - means_z[None]
    white = pt.linalg.solve_triangular(chol, diff[..., None], lower=True)[..., 0]
    logdet = pt.sum(pt.log(pt.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    comp = -0.5 * pt.sum(white**2, axis=-1) - logdet - 0.5 * D * _LOG_2PI
    return pm.math.logsumexp(log_weights + comp, axis=-1, keepdims=False)
