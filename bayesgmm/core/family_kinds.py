"""The kinds of covariance-family record: the base class, and the records of the four
families the Bayesian model parameterises -- matrix (full = VVV, tied = EEE) and diagonal
(diag = VVI, spherical = VII).

The table of families (:mod:`bayesgmm.core.families`) holds one record per family; mclust's
other families are records of :mod:`bayesgmm.core.eigen_families`. Factors are named for
what they are (see :mod:`bayesgmm.core.gaussian`): ``chol_cov`` is the lower-triangular
``L`` with ``Sigma = L L^T`` (standard deviations for the diagonal families), ``prec_chol``
the upper-triangular ``U = L^{-T}`` with ``Sigma^{-1} = U U^T`` (``1 / sd``).
"""

from __future__ import annotations

import math

import numpy as np

from bayesgmm.core.cov_priors import CovPriorTerms, InverseGammaTerms, InverseWishartTerms
from bayesgmm.core.triangular import solve_lower_identity
from bayesgmm.exceptions import DegenerateFitError

__all__ = ["CovarianceFamily"]

_LOG_2PI = math.log(2.0 * math.pi)
_REMEDIES = (
    "Try fewer components, a larger reg_covar or the default prior (prior='default'), "
    "or standardise the data (e.g. (X - X.mean(0)) / X.std(0))."
)


class CovarianceFamily:
    """What one covariance family is (see :mod:`bayesgmm.core.families`). Subclassed by
    the kinds of family: matrix (full, tied), diagonal (diag, spherical) and mclust's
    eigen-decomposed ones (:mod:`bayesgmm.core.eigen_families`)."""

    #: Name (scikit-learn's for the four the Bayesian model has, else mclust's) and
    #: mclust's name.
    name: str
    mclust: str
    #: Each component has its own covariance (False: one shared by all).
    per_component: bool
    #: The covariance has off-diagonal terms (an LKJ correlation in the model).
    correlated: bool
    #: Dims of the model's standard deviations ``sds_z``.
    sd_dims: tuple[str, ...]
    #: One scale for every feature (the internal standardisation keeps it isotropic).
    isotropic: bool = False

    def __repr__(self) -> str:
        return f"<covariance family {self.name!r} ({self.mclust})>"

    @property
    def description(self) -> str:
        """mclust's letters in words: what is equal across components, what varies.

        Examples
        --------
        >>> from bayesgmm.core.families import family
        >>> family("VEV").description
        'volume varying, shape equal, orientation varying'
        >>> family("diag").description
        'volume varying, shape varying, axis-aligned'
        >>> family("E").description
        'variance equal'
        """
        words = {"E": "equal", "V": "varying"}
        if len(self.mclust) == 1:
            return f"variance {words[self.mclust]}"
        volume, shape, orientation = self.mclust
        parts = [f"volume {words[volume]}"]
        parts.append("spherical" if shape == "I" else f"shape {words[shape]}")
        if shape != "I":
            parts.append(
                "axis-aligned" if orientation == "I" else f"orientation {words[orientation]}"
            )
        return ", ".join(parts)

    # -- layout --------------------------------------------------------------------- #
    def layout(self, n_components: int, n_features: int) -> tuple[int, ...]:
        """Shape of the covariance parameters (scikit-learn's ``covariances_``)."""
        raise NotImplementedError

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Free covariance parameters (as mclust and scikit-learn count them)."""
        raise NotImplementedError

    def to_full(self, cov: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        """The ``(K, D, D)`` covariance matrices."""
        raise NotImplementedError

    def min_component_size(self, n_features: int) -> int:
        """Points a component needs for its own covariance estimate to be non-singular."""
        raise NotImplementedError

    def check_n_features(self, n_features: int) -> None:
        """ConfigError if the family is not defined for ``n_features`` (all are, except
        mclust's univariate E and V)."""

    def not_pd_message(self, bad: list[int]) -> str:
        where = f"component(s) {bad}" if self.per_component else f"the {self.name} covariance"
        return (
            f"The covariance of {where} is not positive definite: a component collapsed onto "
            f"too few (or duplicated) points, or some features are collinear. {_REMEDIES}"
        )

    # -- model parameterisation (read by bayesgmm.inference.model) --------------------- #
    #: How the model parameterises the covariances: ``'sds'`` (standard deviations and,
    #: when correlated, an LKJ correlation) or ``'eigen'`` (volume, shape, orientation).
    parameterisation = "sds"

    @property
    def lkj(self) -> bool:
        """The model has an LKJ correlation (``chol_corr``) when D > 1."""
        return self.correlated

    @property
    def kernel(self) -> CovarianceFamily:
        """The record whose likelihood form the model's covariance argument takes (see
        :func:`bayesgmm.inference.gaussian_logp.component_logp_z`): the family itself."""
        return self

    @property
    def corr_dims(self) -> tuple[str, ...] | None:
        """Leading dims of the LKJ correlation (``()`` shared, None: no correlation)."""
        if not self.correlated:
            return None
        return ("component",) if self.per_component else ()

    def sd_signature(self) -> str:
        """The gufunc core shape of the likelihood's covariance argument, e.g. ``(k,d,d)``."""
        letters = {"component": "k", "feature": "d"}
        dims = [letters[d] for d in self.sd_dims]
        if self.correlated:
            dims = ([] if not self.per_component else ["k"]) + ["d", "d"]
        return f"({','.join(dims)})"

    def start_sds(self, sds_z: np.ndarray) -> np.ndarray:
        """The model's ``sds_z`` start from per-component, per-feature sds ``(K, D)``."""
        if self.isotropic:
            return sds_z.mean(axis=1)
        return sds_z if self.per_component else sds_z[0]


class _MatrixFamily(CovarianceFamily):
    """Full covariance matrices, per component (full) or one shared (tied)."""

    correlated = True

    def __init__(self, name: str, mclust: str, per_component: bool) -> None:
        self.name, self.mclust, self.per_component = name, mclust, per_component
        self.sd_dims = ("component", "feature") if per_component else ("feature",)

    def layout(self, n_components: int, n_features: int) -> tuple[int, ...]:
        D = n_features
        return (n_components, D, D) if self.per_component else (D, D)

    def n_parameters(self, n_components: int, n_features: int) -> int:
        per = n_features * (n_features + 1) // 2
        return n_components * per if self.per_component else per

    def to_full(self, cov: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        shape = (n_components, n_features, n_features)
        if self.per_component:
            return cov.reshape(shape).copy()
        return np.repeat(cov.reshape(1, n_features, n_features), n_components, axis=0)

    def min_component_size(self, n_features: int) -> int:
        return n_features + 1 if self.per_component else 1

    def stack(self, a: np.ndarray) -> np.ndarray:
        """``(K, D, D)`` matrices (per component) or ``(1, D, D)`` (shared)."""
        return a if self.per_component else a[None]

    def unstack(self, a: np.ndarray) -> np.ndarray:
        return a if self.per_component else a[0]

    def chol_from_cov(self, cov: np.ndarray) -> np.ndarray:
        stacked = self.stack(cov)
        if np.isfinite(cov).all():
            try:
                chol = np.linalg.cholesky(stacked)
            except np.linalg.LinAlgError:
                pass
            else:
                return self.unstack(chol)
        bad = [k for k in range(stacked.shape[0]) if not _is_pd(stacked[k])]
        raise DegenerateFitError(self.not_pd_message(bad))

    def safe_chol(self, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cholesky factors, and a mask (K,) or (1,) of covariances that are not PD
        (their factor is the identity)."""
        stacked = cov.reshape(-1, cov.shape[-1], cov.shape[-1])
        chol = np.zeros_like(stacked)
        bad = ~np.isfinite(stacked).all(axis=(1, 2))
        try:
            if bad.any():
                raise np.linalg.LinAlgError
            chol = np.linalg.cholesky(stacked)
        except np.linalg.LinAlgError:
            for k in range(stacked.shape[0]):
                try:
                    chol[k] = np.linalg.cholesky(stacked[k]) if not bad[k] else np.eye(len(chol[k]))
                except np.linalg.LinAlgError:
                    bad[k] = True
                    chol[k] = np.eye(stacked.shape[1])
        return self.unstack(chol), (bad if self.per_component else bad[:1])

    def prec_chol(self, chol_cov: np.ndarray) -> np.ndarray:
        prec = np.swapaxes(solve_lower_identity(self.stack(chol_cov), self.not_pd_message), -1, -2)
        return self.unstack(prec)

    def full_prec_chol(self, prec_chol: np.ndarray, n_components: int, n_features: int):
        """Upper precision factors as ``(..., K, D, D)`` (a shared one broadcast)."""
        if self.per_component:
            return prec_chol
        *lead, D, _ = prec_chol.shape
        return np.broadcast_to(prec_chol[..., None, :, :], (*lead, n_components, D, D))

    # -- log densities (bayesgmm.core.engine) ------------------------------------------ #
    #: Log densities are ``const - ||A z||**2`` on the design rows ``z = [1, x]``.
    quadratic = True

    def design_extra(self, n_features: int) -> int:
        """Design rows beyond ``[1, x]`` (none: the kernel squares a linear map)."""
        return 0

    def fill_design_extra(self, ZT: np.ndarray, n_features: int) -> None:
        pass

    def flat_prec(self, prec_chol: np.ndarray, n_components: int, n_features: int):
        """``(S, *layout)`` precision factors as one ``(S * K, D, D)`` stack."""
        U = self.full_prec_chol(prec_chol, n_components, n_features)
        return U.reshape(-1, n_features, n_features)

    def kernel_terms(self, means: np.ndarray, U: np.ndarray, log_weights):
        """``(A, const)`` with ``log w_m + log N(x | mu_m, Sigma_m) = const_m - ||A_m z||**2``.

        ``y_m = (U_m^T x - U_m^T mu_m) / sqrt(2)`` for every m in one product with the
        rows ``[1, x]`` of the design: A has rows ``[-(mu_m U_m)_d, U_m[:, d]^T] / sqrt(2)``,
        so ``-0.5 * maha_m = -sum_d y_md**2``.
        """
        M, D = means.shape
        log_det = np.log(np.diagonal(U, axis1=1, axis2=2)).sum(axis=1)
        A = np.empty((M, D, 1 + D))
        A[:, :, 0] = -np.einsum("kd,kde->ke", means, U)
        A[:, :, 1:] = U.transpose(0, 2, 1)
        quad = np.zeros(M)
        const = log_det - 0.5 * D * _LOG_2PI + quad
        if log_weights is not None:
            const = const + log_weights
        return A.reshape(M * D, 1 + D) * math.sqrt(0.5), const.reshape(M, 1)

    # -- EM ----------------------------------------------------------------------------- #
    def default_cov(self, var: np.ndarray, n_components: int) -> np.ndarray:
        """A data-scaled covariance ``diag(var)`` in the family's layout."""
        if self.per_component:
            return np.repeat(np.diag(var)[None], n_components, axis=0)
        return np.diag(var)

    def scatter(self, N, Sx, second, means, total_scatter):
        """``S_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T`` (summed over k when shared)."""
        if self.per_component:
            cross = Sx[:, :, None] * means[:, None, :]
            scatter = second - cross - cross.transpose(0, 2, 1)
            scatter += N[:, None, None] * means[:, :, None] * means[:, None, :]
            return scatter
        cross = Sx.T @ means
        return total_scatter - cross - cross.T + (means.T * N) @ means

    def ml_covariance(self, scatter, N, safe_n, reg_covar, collapse_var, n_features, previous=None):
        """Maximum likelihood update, with ``reg_covar`` on the diagonal, and a mask of
        covariances that collapsed (smallest eigenvalue below ``collapse_var``).
        ``previous`` (the current covariances, or None) is where an iterative M-step
        starts; closed-form ones ignore it."""
        D = n_features
        if self.per_component:
            cov = scatter / safe_n[:, None, None]
            singular = np.linalg.eigvalsh(cov)[:, 0] <= collapse_var
            cov[:, np.arange(D), np.arange(D)] += reg_covar
        else:
            cov = scatter / N.sum()
            singular = np.array([np.linalg.eigvalsh(cov)[0] <= collapse_var])
            cov[np.arange(D), np.arange(D)] += reg_covar
        return cov, singular

    def map_covariance(self, scatter, N, terms: CovPriorTerms, previous=None):
        """MAP update under the inverse-Wishart prior (``previous``: see
        :meth:`ml_covariance`)."""
        D = scatter.shape[-1]
        if self.per_component:
            return (terms.psi + scatter) / (terms.nu + D + 1 + N)[:, None, None]
        return (terms.psi + scatter) / (terms.nu + D + 1 + N.sum())

    def map_means(self, N, Sx, cov, m0, s0_sq):
        """MAP means given the covariances, under ``mu_k ~ N(m0, diag(s0_sq))``:
        ``mu_k = m0 + S0 (N_k S0 + Sigma_k)^{-1} (s_k - N_k m0)``, by a Cholesky solve."""
        K, D = Sx.shape
        rhs = Sx - N[:, None] * m0
        cov = cov if self.per_component else np.broadcast_to(cov, (K, D, D))
        system = cov + N[:, None, None] * np.diag(s0_sq)  # SPD
        inv_chol = solve_lower_identity(
            np.linalg.cholesky(system), self.not_pd_message
        )  # L^-1, triangular
        y = np.einsum("kij,kj->ki", inv_chol, rhs)  # forward substitution L y = rhs
        z = np.einsum("kji,kj->ki", inv_chol, y)  # back substitution L^T z = y
        return m0 + s0_sq * z

    def em_design(self, X: np.ndarray, ZT: np.ndarray, max_bytes: int, sample_weight=None):
        """EM's design rows and what :meth:`second_moments` and :meth:`scatter` need:
        packed ``x x^T`` rows (per component, while they fit in ``max_bytes``), or the
        pooled ``X^T W X`` (shared; ``W`` the frequency weights, when given)."""
        if not self.per_component:
            return ZT, X.T @ (X if sample_weight is None else X * sample_weight[:, None])
        n, D = X.shape
        iu = np.triu_indices(D)
        if (ZT.shape[0] + len(iu[0])) * n * 8 <= max_bytes:
            xx = X[:, iu[0]] * X[:, iu[1]]
            return np.concatenate([ZT, xx.T]), iu
        return ZT, None

    def second_moments(self, S, ZT, resp, X, aux):
        """``sum_i r_ik x_i x_i^T`` per component (None when shared: see :meth:`scatter`)."""
        if not self.per_component:
            return None
        K, D = resp.shape[0], X.shape[1]
        if aux is None:
            return np.stack([(ZT[1 : 1 + D] * r) @ X for r in resp])
        second = np.empty((K, D, D))
        packed = S[:, 1 + D :]
        second[:, aux[0], aux[1]] = packed
        second[:, aux[1], aux[0]] = packed
        return second

    def second_from_full(self, moments: np.ndarray):
        """:meth:`second_moments` and the ``aux`` of :meth:`scatter` from full second
        moments ``sum_i r_ik E[x_i x_i^T]`` (K, D, D) (EM with missing values)."""
        if self.per_component:
            return moments, None
        return None, moments.sum(axis=0)

    def prior_terms(self, psi: np.ndarray, nu: float) -> CovPriorTerms:
        return InverseWishartTerms(psi, nu)


class _DiagonalFamily(CovarianceFamily):
    """Diagonal covariances: per-feature variances (diag) or one variance (spherical)."""

    correlated = False
    per_component = True

    def __init__(self, name: str, mclust: str, isotropic: bool) -> None:
        self.name, self.mclust, self.isotropic = name, mclust, isotropic
        self.sd_dims = ("component",) if isotropic else ("component", "feature")

    def layout(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components,) if self.isotropic else (n_components, n_features)

    def n_parameters(self, n_components: int, n_features: int) -> int:
        return n_components if self.isotropic else n_components * n_features

    def to_full(self, cov: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        out = np.zeros((n_components, n_features, n_features))
        diag = np.arange(n_features)
        out[:, diag, diag] = cov.reshape(n_components, -1)  # (K, D) or (K, 1): broadcast
        return out

    def min_component_size(self, n_features: int) -> int:
        return 2

    def chol_from_cov(self, cov: np.ndarray) -> np.ndarray:
        positive = np.isfinite(cov) & (cov > 0.0)
        if not positive.all():
            bad = sorted(set(np.nonzero(~positive)[0].tolist()))
            raise DegenerateFitError(self.not_pd_message(bad))
        return np.sqrt(cov)

    def safe_chol(self, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bad = ~(np.isfinite(cov) & (cov > 0))
        if not self.isotropic:
            bad = bad.any(axis=1)
        return np.sqrt(np.where(bad if self.isotropic else bad[:, None], 1.0, cov)), bad

    def prec_chol(self, chol_cov: np.ndarray) -> np.ndarray:
        return 1.0 / chol_cov

    def full_prec_chol(self, prec_chol: np.ndarray, n_components: int, n_features: int):
        D = n_features
        diag = np.repeat(prec_chol[..., None], D, axis=-1) if self.isotropic else prec_chol
        return diag[..., :, None] * np.eye(D)

    # -- log densities (bayesgmm.core.engine) ------------------------------------------ #
    #: Log densities are ``A z``, linear in the design rows ``z = [1, x, x**2]``.
    quadratic = False

    def design_extra(self, n_features: int) -> int:
        """Design rows beyond ``[1, x]``: ``x_d**2`` (D rows) or ``||x||**2`` (1 row)."""
        return 1 if self.isotropic else n_features

    def fill_design_extra(self, ZT: np.ndarray, n_features: int) -> None:
        d = n_features
        with np.errstate(over="ignore"):  # far points: see bayesgmm.core.engine
            if self.isotropic:
                np.sum(np.square(ZT[1 : 1 + d]), axis=0, out=ZT[1 + d])
            else:
                np.square(ZT[1 : 1 + d], out=ZT[1 + d :])

    def flat_prec(self, prec_chol: np.ndarray, n_components: int, n_features: int):
        """``(S, *layout)`` precision factors (``1 / sd``) as ``(S * K, D)`` or ``(S * K,)``."""
        return prec_chol.reshape(-1) if self.isotropic else prec_chol.reshape(-1, n_features)

    def kernel_terms(self, means: np.ndarray, prec_chol: np.ndarray, log_weights):
        """``(A, const)`` with ``log w_m + log N(x | mu_m, Sigma_m) = A_m z`` on the rows
        ``z = [1, x, x**2]``: ``-0.5 maha = (mu prec) . x - 0.5 prec . x**2 - 0.5 sum(mu**2
        prec)``."""
        M, D = means.shape
        prec = prec_chol**2
        if self.isotropic:
            log_det = D * np.log(prec_chol)
            linear, square = means * prec[:, None], -0.5 * prec[:, None]
            quad = -0.5 * prec * np.sum(means**2, axis=1)
        else:
            log_det = np.log(prec_chol).sum(axis=1)
            linear, square = means * prec, -0.5 * prec
            quad = -0.5 * np.sum(means**2 * prec, axis=1)
        const = log_det - 0.5 * D * _LOG_2PI + quad
        if log_weights is not None:
            const = const + log_weights
        const = const.reshape(M, 1)
        return np.hstack([const, linear, square]), const

    # -- EM ----------------------------------------------------------------------------- #
    def default_cov(self, var: np.ndarray, n_components: int) -> np.ndarray:
        if self.isotropic:
            return np.full(n_components, var.mean())
        return np.repeat(var[None], n_components, axis=0)

    def scatter(self, N, Sx, second, means, total_scatter):
        if self.isotropic:
            scatter = second - 2.0 * (means * Sx).sum(axis=1) + N * (means**2).sum(axis=1)
            return np.maximum(scatter, 0.0)
        return np.maximum(second - 2.0 * means * Sx + N[:, None] * means**2, 0.0)

    def ml_covariance(self, scatter, N, safe_n, reg_covar, collapse_var, n_features, previous=None):
        if self.isotropic:
            cov = scatter / (n_features * safe_n)
            singular = cov <= collapse_var
        else:
            cov = scatter / safe_n[:, None]
            singular = (cov <= collapse_var).any(axis=1)
        cov += reg_covar
        return cov, singular

    def map_covariance(self, scatter, N, terms: CovPriorTerms, previous=None):
        if self.isotropic:
            return (terms.psi_diag.mean() + scatter) / (terms.nu + 2 + terms.D * N)
        return (terms.psi_diag + scatter) / (terms.nu + 2 + N)[:, None]

    def map_means(self, N, Sx, cov, m0, s0_sq):
        """MAP means given the variances (elementwise: the covariances are diagonal)."""
        rhs = Sx - N[:, None] * m0
        var = cov[:, None] if self.isotropic else cov
        return m0 + s0_sq * rhs / (N[:, None] * s0_sq + var)

    def em_design(self, X: np.ndarray, ZT: np.ndarray, max_bytes: int, sample_weight=None):
        """EM's design rows (``[1, x, x**2]`` already hold the second moments)."""
        return ZT, None

    def second_moments(self, S, ZT, resp, X, aux):
        D = X.shape[1]
        return S[:, 1 + D] if self.isotropic else S[:, 1 + D :]

    def second_from_full(self, moments: np.ndarray):
        diag = np.diagonal(moments, axis1=1, axis2=2)
        return (diag.sum(axis=1) if self.isotropic else diag.copy()), None

    def prior_terms(self, psi: np.ndarray, nu: float) -> CovPriorTerms:
        return InverseGammaTerms(psi, nu, self.isotropic)


def _is_pd(matrix: np.ndarray) -> bool:
    if not np.isfinite(matrix).all():
        return False
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True
