"""EM with values missing at random (``missing="marginalize"``): the E-step of
Ghahramani & Jordan (1994), for :func:`bayesgmm.core.em.fit_em`.

The objective is the observed-data log-likelihood ``sum_i w_i log sum_k w_k N(x_i,o |
mu_k[o], Sigma_k[o, o])`` (plus the prior's log density). For each pattern of observed
coordinates (:class:`~bayesgmm.core.missing.Patterns`) the E-step computes the
memberships from the marginal densities and, per component, the conditional mean
``x_hat_ik`` of the missing coordinates and their conditional covariance ``C_k``; the
sufficient statistics are then

``N_k = sum_i r_ik``, ``s_k = sum_i r_ik x_hat_ik``,
``M_k = sum_i r_ik (x_hat_ik x_hat_ik^T + C_ik)`` (``C_ik`` zero outside the missing block),

and every family's M-step runs unchanged on them (``second_from_full`` of the family's
record). This is an exact EM (ECM for the iterative families), so the objective never
decreases. Starts and re-seeds use the data with each missing value set to its column's
mean.
"""

from __future__ import annotations

import numpy as np

from bayesgmm.core.em_prior import EMPrior
from bayesgmm.core.em_steps import EMRun, _State
from bayesgmm.core.engine import memberships
from bayesgmm.core.families import CovarianceFamily
from bayesgmm.core.labels import restrict
from bayesgmm.core.missing import Patterns, conditional
from bayesgmm.core.priors import column_moments, component_variance

__all__ = ["MissingEMRun"]

_COLLAPSE_RTOL = 1e-12  # as em_steps


class MissingEMRun(EMRun):
    """:class:`~bayesgmm.core.em_steps.EMRun` for data with NaN entries."""

    def __init__(
        self,
        X: np.ndarray,
        K: int,
        fam: CovarianceFamily,
        prior: EMPrior | None,
        reg_covar,
        sample_weight: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ):
        self.patterns = Patterns.of(X)
        mean, var = column_moments(X, sample_weight, ddof=1)  # of the observed entries
        filled = np.where(np.isnan(X), mean, X)  # for starts and re-seeds only
        super().__init__(filled, K, fam, prior, reg_covar, sample_weight, labels)
        # the spread of the observed values, not of the mean-filled data
        self.collapse_var = _COLLAPSE_RTOL * var.min()
        self.default_cov = fam.default_cov(component_variance(var, K), K)
        centred = X - self.center  # NaN where missing
        self.groups = [(rows, obs, mis, centred[np.ix_(rows, obs)])
                       for rows, obs, mis in self.patterns.groups()]  # fmt: skip

    def e_step(self, st: _State) -> tuple[float, tuple, np.ndarray]:
        K, D, fam = self.K, self.D, self.fam
        cov = fam.to_full(st.cov, K, D)
        log_w = np.log(st.weights)
        N, Sx, M = np.zeros(K), np.zeros((K, D)), np.zeros((K, D, D))
        log_norm = np.empty(self.X.shape[0])
        for rows, obs, mis, x_o in self.groups:  # x_o: the pattern's observed values
            log_dens, cond_means, cond_cov = conditional(x_o, st.means, cov, obs, mis)
            lab = None if self.labels is None else self.labels[rows]
            resp, norm = memberships(restrict(log_dens + log_w, lab))  # (n_p, K), (n_p,)
            log_norm[rows] = norm
            self.resp[:, rows] = resp.T
            if self.w is not None:
                resp = resp * self.w[rows, None]
            filled = np.empty((K, len(rows), D))  # x_hat_ik: observed, or conditional mean
            filled[:, :, obs] = x_o[None, :, :]
            filled[:, :, mis] = cond_means.transpose(1, 0, 2)
            n_k = resp.sum(axis=0)
            N += n_k
            weighted = resp.T[:, :, None] * filled  # r_ik x_hat_ik, (K, n_p, D)
            Sx += weighted.sum(axis=1)
            M += np.matmul(weighted.transpose(0, 2, 1), filled)  # batched BLAS products
            if mis.size:
                M[:, mis[:, None], mis[None, :]] += n_k[:, None, None] * cond_cov
        loglik = float(log_norm.sum() if self.w is None else log_norm @ self.w)
        second, aux = fam.second_from_full(M)
        return loglik, (N, Sx, second, aux), log_norm
