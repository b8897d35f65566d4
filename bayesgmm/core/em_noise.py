"""EM with known measurement errors (``noise_cov``): the extreme-deconvolution (XD)
algorithm of Bovy, Hogg & Roweis (2011), for :func:`bayesgmm.core.em.fit_em`.

The objective is ``sum_i w_i log sum_k w_k N(x_i | mu_k, Sigma_k + S_i)`` (plus the
prior's log density). The E-step gives the memberships and, per component, the
conditional mean ``b_ik`` and covariance ``B_ik`` of each point's true value
(:func:`bayesgmm.core.noise.noise_terms`); the sufficient statistics are then

``N_k = sum_i r_ik``, ``s_k = sum_i r_ik b_ik``, ``M_k = sum_i r_ik (b_ik b_ik^T + B_ik)``,

and every family's M-step runs on them unchanged (``second_from_full``), as for missing
values: an exact EM (ECM for the iterative families), whose objective never decreases.
"""

from __future__ import annotations

import numpy as np

from bayesgmm.core.em_prior import EMPrior
from bayesgmm.core.em_steps import EMRun, _State
from bayesgmm.core.engine import memberships
from bayesgmm.core.families import CovarianceFamily
from bayesgmm.core.labels import restrict
from bayesgmm.core.noise import noise_terms

__all__ = ["NoiseEMRun"]


class NoiseEMRun(EMRun):
    """:class:`~bayesgmm.core.em_steps.EMRun` for points with error covariances ``S_i``."""

    def __init__(
        self,
        X: np.ndarray,
        K: int,
        fam: CovarianceFamily,
        prior: EMPrior | None,
        reg_covar,
        sample_weight: np.ndarray | None = None,
        noise_cov: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ):
        super().__init__(X, K, fam, prior, reg_covar, sample_weight, labels)
        self.noise_cov = noise_cov

    def e_step(self, st: _State) -> tuple[float, tuple, np.ndarray]:
        K, D = self.K, self.D
        cov = self.fam.to_full(st.cov, K, D)
        log_dens, b, B = noise_terms(self.X, self.noise_cov, st.means, cov)
        resp, log_norm = memberships(restrict(log_dens + np.log(st.weights), self.labels))
        self.resp[...] = resp.T
        if self.w is not None:
            resp = resp * self.w[:, None]
        N = resp.sum(axis=0)
        Sx = np.einsum("nk,nkd->kd", resp, b)
        bk = b.transpose(1, 0, 2)  # (K, n, D)
        M = np.matmul((resp.T[:, :, None] * bk).transpose(0, 2, 1), bk)
        M += np.einsum("nk,nkde->kde", resp, B)
        loglik = float(log_norm.sum() if self.w is None else log_norm @ self.w)
        second, aux = self.fam.second_from_full(M)
        return loglik, (N, Sx, second, aux), log_norm
