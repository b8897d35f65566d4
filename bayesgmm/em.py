"""EM fits of Gaussian mixtures: maximum a posteriori (MAP) or maximum likelihood.

The fit is the starting point for NUTS (best of several EM restarts, as NumPyro's GMM
tutorial recommends) and a fast point estimate in its own right. :func:`fit_em`
returns an :class:`EMResult`; priors for the MAP fit are :class:`EMPrior` objects.

Numerics: log space throughout (log weights + component log-densities, logsumexp over
components), Cholesky factors instead of inverses, and sufficient statistics
``sum_i r_ik [1, x_i, x_i x_i^T]`` gathered with one matrix product per iteration.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gammaln, multigammaln

from bayesgmm._gaussian import (
    COVARIANCE_TYPES,
    _design_T,
    _Kernel,
    _mixture_pass,
    _solve_lower_identity,
    check_covariance_type,
    chol_from_cov,
    full_covariances,
    prec_chol_from_chol_cov,
)
from bayesgmm._validation import check_data, check_new_data
from bayesgmm.exceptions import ConfigError, ConvergenceWarning, DegenerateFitError

__all__ = ["INIT_METHODS", "EMPrior", "EMResult", "fit_em"]

INIT_METHODS: tuple[str, ...] = ("k-means++", "random")
_LOG_2PI = math.log(2.0 * math.pi)
_WEIGHT_FLOOR = 1e-10  # smallest mixture weight EM returns (see EMPrior, alpha < 1)
_MIN_NK_FRACTION = 1e-10  # MLE: a component with N_k < this * n has died
_COLLAPSE_RTOL = 1e-12  # MLE: scatter variance below this * min column variance = collapsed
_STATS_MAX_BYTES = 1 << 28  # full: precompute x x^T rows only while they fit in 256 MB
_REMEDIES = (
    "Try fewer components, a larger reg_covar or the default prior (prior='default'), "
    "standardise the data, or drop duplicated rows / collinear features."
)


# --------------------------------------------------------------------------- #
# Prior
# --------------------------------------------------------------------------- #


@dataclass(frozen=True, eq=False)
class EMPrior:
    r"""Prior used in EM's M-step, which then finds the MAP estimate.

    Semantics (``K`` components, ``D`` features; the same distributions the Bayesian
    model uses, so its MAP is a good place to start NUTS):

    * weights ``pi ~ Dirichlet(weight_concentration)``;
    * each mean ``mu_k ~ Normal(mean_loc, diag(mean_scale**2))``, independent of the
      covariances (not the conjugate ``Sigma / kappa`` form);
    * covariances, by family:

      - ``full``: ``Sigma_k ~ InvWishart(cov_dof, cov_scale)`` for each component;
      - ``tied``: one ``Sigma ~ InvWishart(cov_dof, cov_scale)``;
      - ``diag``: ``sigma2_kd ~ InvGamma(shape=cov_dof / 2, scale=cov_scale[d, d] / 2)``;
      - ``spherical``: ``sigma2_k ~ InvGamma(cov_dof / 2, mean(diag(cov_scale)) / 2)``.

    EM maximises ``log p(X | theta) + log p(theta)`` by ECM (Meng & Rubin 1993): with
    responsibilities ``r_ik``, ``N_k = sum_i r_ik`` and ``s_k = sum_i r_ik x_i``:

    1. weights: ``pi_k ∝ max(N_k + alpha_k - 1, 0)``. When ``alpha_k < 1`` the Dirichlet
       density is unbounded at the simplex boundary and no MAP exists there; weights are
       floored at 1e-10 and renormalised (the objective is evaluated at that value);
    2. means given the current covariances (``S0 = diag(mean_scale**2)``, ``m0 = mean_loc``):
       ``(N_k inv(Sigma_k) + inv(S0)) mu_k = inv(Sigma_k) s_k + inv(S0) m0``, solved as
       ``mu_k = m0 + S0 (N_k S0 + Sigma_k)^{-1} (s_k - N_k m0)`` with a Cholesky solve;
    3. covariances given the new means, ``S_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T``:

       - full: ``Sigma_k = (Psi + S_k) / (nu + D + 1 + N_k)``;
       - tied: ``Sigma = (Psi + sum_k S_k) / (nu + D + 1 + n)``;
       - diag: ``sigma2_kd = (Psi_dd + S_k[d, d]) / (nu + 2 + N_k)``;
       - spherical: ``sigma2_k = (mean(diag Psi) + tr S_k) / (nu + 2 + D N_k)``.

    Each step maximises the expected complete-data log posterior given the others, so
    the log posterior never decreases.

    Parameters
    ----------
    weight_concentration : array-like of shape (n_components,)
        Dirichlet concentration ``alpha_k > 0``.
    mean_loc : array-like of shape (n_features,)
        Prior mean ``m0`` of every component mean.
    mean_scale : array-like of shape (n_features,)
        Prior standard deviations (> 0) of every component mean, per feature.
    cov_dof : float
        Degrees of freedom ``nu > n_features - 1``.
    cov_scale : array-like of shape (n_features, n_features)
        Symmetric positive-definite scale matrix ``Psi``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 2.0], [3.0, 5.0]])
    >>> prior = EMPrior.default(X, n_components=2)
    >>> prior.cov_dof, prior.mean_loc.tolist()
    (4.0, [1.5, 2.75])
    >>> EMPrior.from_dict(prior.to_dict()).cov_scale.tolist() == prior.cov_scale.tolist()
    True
    """

    weight_concentration: np.ndarray
    mean_loc: np.ndarray
    mean_scale: np.ndarray
    cov_dof: float
    cov_scale: np.ndarray

    def __post_init__(self) -> None:
        errors: list[str] = []

        def as_array(name: str, ndim: int) -> np.ndarray | None:
            try:
                arr = np.array(getattr(self, name), dtype=np.float64)
            except (TypeError, ValueError):
                errors.append(f"{name} must be numeric; got {getattr(self, name)!r}.")
                return None
            if arr.ndim != ndim or arr.size == 0 or not np.isfinite(arr).all():
                errors.append(
                    f"{name} must be a non-empty {ndim}-D array of finite numbers; got shape "
                    f"{arr.shape}."
                )
                return None
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
            return arr

        alpha = as_array("weight_concentration", 1)
        loc = as_array("mean_loc", 1)
        scale = as_array("mean_scale", 1)
        psi = as_array("cov_scale", 2)
        if alpha is not None and (alpha <= 0).any():
            errors.append(f"weight_concentration must be > 0; got {alpha.tolist()}.")
        if scale is not None and (scale <= 0).any():
            errors.append(f"mean_scale must be > 0; got {scale.tolist()}.")
        dims = {
            n: a.shape[0] for n, a in [("mean_loc", loc), ("mean_scale", scale)] if a is not None
        }
        if psi is not None:
            dims["cov_scale"] = psi.shape[0]
            if psi.shape[0] != psi.shape[1]:
                errors.append(f"cov_scale must be square; got shape {psi.shape}.")
            elif not np.allclose(psi, psi.T, rtol=1e-10, atol=0.0):
                errors.append("cov_scale must be symmetric.")
            else:
                try:
                    np.linalg.cholesky(psi)
                except np.linalg.LinAlgError:
                    errors.append("cov_scale must be positive definite.")
        if len(set(dims.values())) > 1:
            errors.append(f"mean_loc, mean_scale and cov_scale disagree on n_features: {dims}.")
        n_features = max(dims.values(), default=1)
        try:
            nu = float(self.cov_dof)
        except (TypeError, ValueError):
            nu = math.nan
        if not (math.isfinite(nu) and nu > n_features - 1 and nu > 0):
            errors.append(
                f"cov_dof must be a finite number > n_features - 1 = {n_features - 1} (and > 0); "
                f"got {self.cov_dof!r}."
            )
        object.__setattr__(self, "cov_dof", nu)
        if errors:
            raise ConfigError("Invalid EMPrior:\n  - " + "\n  - ".join(errors))

    @property
    def n_components(self) -> int:
        """Number of components the Dirichlet concentration is for."""
        return int(self.weight_concentration.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features."""
        return int(self.mean_loc.shape[0])

    @classmethod
    def default(cls, X: ArrayLike, n_components: int, covariance_type: str = "full") -> EMPrior:
        """Weakly informative data-scaled defaults (in the spirit of mclust's ``priorControl``).

        ``alpha_k = 1``; ``mean_loc`` = column means; ``mean_scale`` = 2 x column standard
        deviations; ``cov_dof = D + 2``; ``cov_scale = diag(column variances) / K**(2/D)``
        (the variance a component would have if the K components split the range evenly).
        Variances use ``ddof=1``. The same values serve every ``covariance_type`` (diag and
        spherical use the diagonal of ``cov_scale`` and its mean), which is checked here.

        Examples
        --------
        >>> import numpy as np
        >>> EMPrior.default(np.array([[0.0], [2.0], [4.0]]), 2).cov_scale.tolist()
        [[1.0]]
        """
        check_covariance_type(covariance_type)
        _check_n_components(n_components)
        X, _ = check_data(X, n_components=n_components)
        return cls._default(X, n_components)

    @classmethod
    def _default(cls, X: np.ndarray, n_components: int) -> EMPrior:
        n_features = X.shape[1]
        var = X.var(axis=0, ddof=1)
        return cls(
            weight_concentration=np.ones(n_components),
            mean_loc=X.mean(axis=0),
            mean_scale=2.0 * np.sqrt(var),
            cov_dof=float(n_features + 2),
            cov_scale=np.diag(var / n_components ** (2.0 / n_features)),
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (lists and floats)."""
        return {
            "weight_concentration": self.weight_concentration.tolist(),
            "mean_loc": self.mean_loc.tolist(),
            "mean_scale": self.mean_scale.tolist(),
            "cov_dof": float(self.cov_dof),
            "cov_scale": self.cov_scale.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EMPrior:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ConfigError."""
        _check_keys(d, _PRIOR_KEYS, "EMPrior")
        return cls(**d)

    def log_density(
        self,
        weights: ArrayLike,
        means: ArrayLike,
        covariances: ArrayLike,
        covariance_type: str,
    ) -> float:
        """Normalised log prior density ``log p(theta)`` of mixture parameters.

        Examples
        --------
        >>> import numpy as np
        >>> prior = EMPrior([1.0], [0.0], [1.0], 2.0, [[1.0]])
        >>> lp = prior.log_density([1.0], [[0.0]], [1.0], "spherical")
        >>> # N(0, 1) density of the mean + InvGamma(1, 0.5) density of the variance, at 0 and 1
        >>> bool(np.isclose(lp, -0.5 * np.log(2 * np.pi) + np.log(0.5) - 0.5))
        True
        """
        check_covariance_type(covariance_type)
        chol = chol_from_cov(covariances, covariance_type)
        terms = _PriorTerms(self, covariance_type)
        return terms.log_density(
            np.asarray(weights, dtype=np.float64),
            np.asarray(means, dtype=np.float64),
            chol,
            prec_chol_from_chol_cov(chol, covariance_type),
        )

    def __repr__(self) -> str:
        return (
            f"EMPrior(n_components={self.n_components}, n_features={self.n_features}, "
            f"weight_concentration={np.round(self.weight_concentration, 4).tolist()}, "
            f"cov_dof={self.cov_dof:g})"
        )


_PRIOR_KEYS = ("weight_concentration", "mean_loc", "mean_scale", "cov_dof", "cov_scale")


def _check_keys(d: Any, keys: Sequence[str], what: str) -> None:
    if not isinstance(d, dict):
        raise ConfigError(f"{what}.from_dict expects a dict; got {type(d).__name__}.")
    unknown = sorted(set(d) - set(keys))
    missing = [k for k in keys if k not in d]
    if unknown or missing:
        raise ConfigError(
            f"{what}.from_dict: unknown keys {unknown}, missing keys {missing}; "
            f"the valid keys are {list(keys)}."
        )


class _PriorTerms:
    """Constants of the log prior density, precomputed once per fit."""

    def __init__(self, prior: EMPrior, covariance_type: str) -> None:
        self.covariance_type = covariance_type
        alpha = prior.weight_concentration
        K, D = alpha.shape[0], prior.n_features
        self.alpha, self.D = alpha, D
        # Dirichlet on a single weight is a point mass at 1: log density 0.
        self.dir_const = float(gammaln(alpha.sum()) - gammaln(alpha).sum()) if K > 1 else 0.0
        self.m0, self.s0 = prior.mean_loc, prior.mean_scale
        self.s0_sq = prior.mean_scale**2
        self.norm_const = -K * (np.log(self.s0).sum() + 0.5 * D * _LOG_2PI)
        nu = prior.cov_dof
        self.nu, self.psi = nu, prior.cov_scale
        self.psi_diag = np.diag(prior.cov_scale).copy()
        if covariance_type in ("full", "tied"):
            self.psi_chol = np.linalg.cholesky(self.psi)
            log_det_psi = 2.0 * np.log(np.diag(self.psi_chol)).sum()
            self.iw_const = 0.5 * nu * log_det_psi - 0.5 * nu * D * math.log(2.0)
            self.iw_const -= multigammaln(0.5 * nu, D)
        else:
            self.ig_shape = 0.5 * nu
            b = 0.5 * (self.psi_diag if covariance_type == "diag" else self.psi_diag.mean())
            self.ig_rate = b
            self.ig_const = self.ig_shape * np.log(b) - gammaln(self.ig_shape)

    def log_density(self, weights, means, chol, prec_chol) -> float:
        lp = self.dir_const
        if self.alpha.shape[0] > 1:
            lp += float(((self.alpha - 1.0) * np.log(weights)).sum())
        z = (means - self.m0) / self.s0
        lp += self.norm_const - 0.5 * float((z * z).sum())
        ct, nu, D = self.covariance_type, self.nu, self.D
        if ct in ("full", "tied"):
            chol3 = chol.reshape(-1, D, D)
            log_det = 2.0 * np.log(np.diagonal(chol3, axis1=1, axis2=2)).sum(axis=1)
            # tr(Psi inv(Sigma)) = ||Psi_chol^T prec_chol||_F^2 since inv(Sigma) = U U^T
            trace = np.square(self.psi_chol.T @ prec_chol.reshape(-1, D, D)).sum(axis=(1, 2))
            lp += float((self.iw_const - 0.5 * (nu + D + 1) * log_det - 0.5 * trace).sum())
        else:
            var = chol**2
            a, b = self.ig_shape, self.ig_rate
            lp += float((self.ig_const - (a + 1.0) * np.log(var) - b / var).sum())
        return lp


# --------------------------------------------------------------------------- #
# Result
# --------------------------------------------------------------------------- #

_ARRAY_FIELDS = ("weights", "means", "covariances", "chol_cov", "prec_chol", "objective_trace")


@dataclass(frozen=True, eq=False, repr=False)
class EMResult:
    """A fitted Gaussian mixture from :func:`fit_em`.

    Components are sorted by their mean along the first feature (then the second, ...),
    so the labelling does not depend on the random start.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
    means : ndarray of shape (n_components, n_features)
    covariances : ndarray
        scikit-learn layout: full (K, D, D), tied (D, D), diag (K, D), spherical (K,).
    covariance_type : str
    chol_cov : ndarray of shape (n_components, n_features, n_features)
        Lower Cholesky factors of the full covariance matrices (tied: repeated K times).
    prec_chol : ndarray
        Upper precision Cholesky factors, scikit-learn ``precisions_cholesky_`` layout.
    log_likelihood : float
        Total log-likelihood of the training data at the returned parameters.
    log_posterior : float
        ``log_likelihood + log prior density`` (equal to it when ``prior`` is None).
    objective_trace : ndarray
        The best start's objective (log posterior) at every iteration.
    converged, n_iter, n_reseeds, n_init
        Convergence flag, iterations and component re-seeds of the best start; starts run.
    prior : EMPrior or None
        None for maximum likelihood.
    feature_names : tuple of str
    n_samples : int
    sum_log_max_resp : float
        ``sum_i log max_k p(z_i = k | x_i)`` on the training data (used by :meth:`icl`).
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    covariance_type: str
    chol_cov: np.ndarray
    prec_chol: np.ndarray
    log_likelihood: float
    log_posterior: float
    objective_trace: np.ndarray
    converged: bool
    n_iter: int
    n_reseeds: int
    n_init: int
    prior: EMPrior | None
    feature_names: tuple[str, ...]
    n_samples: int
    sum_log_max_resp: float

    def __post_init__(self) -> None:
        for name in _ARRAY_FIELDS:
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        object.__setattr__(self, "feature_names", tuple(str(f) for f in self.feature_names))

    @property
    def n_components(self) -> int:
        """Number of mixture components."""
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features."""
        return int(self.means.shape[1])

    def covariance_matrices(self) -> np.ndarray:
        """Covariance matrices of shape (n_components, n_features, n_features)."""
        return full_covariances(
            self.covariances, self.covariance_type, self.n_components, self.n_features
        )

    def _pass(self, X: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        X = check_new_data(X, self.n_features, self.feature_names)
        kernel = _Kernel(self.means, self.prec_chol, self.covariance_type, np.log(self.weights))
        return _mixture_pass(_design_T(X, self.covariance_type), kernel, None)

    def log_density(self, X: ArrayLike) -> np.ndarray:
        """Log mixture density of each row of ``X``, shape (n_samples,)."""
        return self._pass(X)[0]

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Posterior component probabilities, shape (n_samples, n_components); rows sum to 1."""
        return self._pass(X)[1].T

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Most probable component of each row (argmax of :meth:`predict_proba`)."""
        return np.argmax(self._pass(X)[1], axis=0)

    def n_parameters(self) -> int:
        """Free parameters: K - 1 weights, K D means and the family's covariance terms."""
        K, D = self.n_components, self.n_features
        cov = {"full": K * D * (D + 1) // 2, "tied": D * (D + 1) // 2, "diag": K * D}
        return K - 1 + K * D + cov.get(self.covariance_type, K)

    def _loglik_n(self, X: ArrayLike | None) -> tuple[float, int]:
        if X is None:
            return self.log_likelihood, self.n_samples
        ld = self.log_density(X)
        return float(ld.sum()), ld.shape[0]

    def bic(self, X: ArrayLike | None = None) -> float:
        """BIC in mclust's convention, ``2 logL - df ln(n)``: **higher is better**.

        With ``X=None`` the training log-likelihood is used. scikit-learn's (lower is
        better) value is :meth:`bic_sklearn`.
        """
        loglik, n = self._loglik_n(X)
        return 2.0 * loglik - self.n_parameters() * math.log(n)

    def bic_sklearn(self, X: ArrayLike | None = None) -> float:
        """BIC in scikit-learn's convention, ``-2 logL + df ln(n)`` (lower is better)."""
        return -self.bic(X)

    def icl(self, X: ArrayLike | None = None) -> float:
        """ICL in mclust's convention: ``bic() + 2 sum_i log max_k p(z_i = k | x_i)``.

        Higher is better; it penalises overlapping components.
        """
        if X is None:
            return self.bic() + 2.0 * self.sum_log_max_resp
        _, resp = self._pass(X)
        return self.bic(X) + 2.0 * float(np.log(resp.max(axis=0)).sum())

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict; :meth:`from_dict` restores it exactly."""
        out: dict[str, Any] = {name: getattr(self, name).tolist() for name in _ARRAY_FIELDS}
        out.update(
            covariance_type=self.covariance_type,
            log_likelihood=float(self.log_likelihood),
            log_posterior=float(self.log_posterior),
            converged=bool(self.converged),
            n_iter=int(self.n_iter),
            n_reseeds=int(self.n_reseeds),
            n_init=int(self.n_init),
            prior=None if self.prior is None else self.prior.to_dict(),
            feature_names=list(self.feature_names),
            n_samples=int(self.n_samples),
            sum_log_max_resp=float(self.sum_log_max_resp),
        )
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EMResult:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ConfigError."""
        _check_keys(d, [f.name for f in fields(cls)], "EMResult")
        d = dict(d)
        d["prior"] = None if d["prior"] is None else EMPrior.from_dict(d["prior"])
        return cls(**d)

    def __repr__(self) -> str:
        return (
            f"EMResult(covariance_type={self.covariance_type!r}, "
            f"n_components={self.n_components}, n_features={self.n_features}, "
            f"n_samples={self.n_samples}, log_likelihood={self.log_likelihood:.6g}, "
            f"log_posterior={self.log_posterior:.6g}, converged={self.converged}, "
            f"n_iter={self.n_iter})"
        )

    def summary(self) -> str:
        """A readable report: fit statistics and one row per component and feature."""
        kind = "maximum likelihood" if self.prior is None else "MAP"
        status = "converged" if self.converged else "NOT converged"
        lines = [
            f"EM fit ({kind}): {self.n_components}-component {self.covariance_type!r} "
            f"Gaussian mixture, {self.n_samples} points x {self.n_features} "
            f"feature{'s' if self.n_features > 1 else ''}",
            f"  {status} after {self.n_iter} iterations; best of {self.n_init} starts; "
            f"{self.n_reseeds} re-seeds",
            f"  log-likelihood {self.log_likelihood:.3f}   log-posterior {self.log_posterior:.3f}",
            f"  BIC {self.bic():.3f}   ICL {self.icl():.3f}   (mclust convention: "
            f"2 logL - {self.n_parameters()} ln n, higher is better)",
            "",
        ]
        sds = np.sqrt(np.diagonal(self.covariance_matrices(), axis1=1, axis2=2))
        rows = [("component", "weight", "feature", "mean", "sd")]
        for k in range(self.n_components):
            for j, name in enumerate(self.feature_names):
                head = (str(k), f"{self.weights[k]:.4f}") if j == 0 else ("", "")
                rows.append((*head, name, f"{self.means[k, j]:.5g}", f"{sds[k, j]:.5g}"))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for i, r in enumerate(rows):
            cells = [
                c.ljust(w) if col == 2 else c.rjust(w)
                for col, (c, w) in enumerate(zip(r, widths, strict=True))
            ]
            lines.append("  " + "  ".join(cells).rstrip())
            if i == 0:
                lines.append("  " + "  ".join("-" * w for w in widths))
        return "\n".join(lines)


# --------------------------------------------------------------------------- #
# EM machinery
# --------------------------------------------------------------------------- #


class _RunFailed(Exception):
    """A start kept collapsing; the fit moves on to the next start."""


class _State:
    """Mixture parameters in centred coordinates, with their Cholesky factors."""

    __slots__ = ("chol", "cov", "means", "prec_chol", "weights")

    def __init__(self, weights, means, cov, chol, prec_chol) -> None:
        self.weights, self.means, self.cov = weights, means, cov
        self.chol, self.prec_chol = chol, prec_chol


def _safe_chol(cov: np.ndarray, ct: str) -> tuple[np.ndarray, np.ndarray]:
    """Cholesky factors and a (K,) or scalar mask of components that are not PD."""
    if ct in ("diag", "spherical"):
        bad = ~(np.isfinite(cov) & (cov > 0))
        if ct == "diag":
            bad = bad.any(axis=1)
        return np.sqrt(np.where(bad[:, None] if ct == "diag" else bad, 1.0, cov)), bad
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
    return (chol if ct == "full" else chol[0]), (bad if ct == "full" else bad[:1])


class _EM:
    """Everything one fit needs: centred data, design rows, prior constants, buffers."""

    def __init__(self, X: np.ndarray, K: int, ct: str, prior: EMPrior | None, reg_covar: float):
        n, D = X.shape
        self.n, self.D, self.K, self.ct, self.reg_covar = n, D, K, ct, reg_covar
        self.center = X.mean(axis=0)
        self.X = X - self.center  # centring keeps sum r x x^T - N mu mu^T well conditioned
        var = self.X.var(axis=0, ddof=1)
        self.collapse_var = _COLLAPSE_RTOL * var.min()
        self.min_nk = _MIN_NK_FRACTION * n
        default_var = var / K ** (2.0 / D)
        self.default_cov = {
            "full": np.repeat(np.diag(default_var)[None], K, axis=0),
            "tied": np.diag(default_var),
            "diag": np.repeat(default_var[None], K, axis=0),
            "spherical": np.full(K, default_var.mean()),
        }[ct]
        ZT = _design_T(self.X, ct)  # rows: 1, x, (x**2 | ||x||**2)
        self.iu = np.triu_indices(D)
        self.packed_xx = False
        if ct == "full" and (ZT.shape[0] + len(self.iu[0])) * n * 8 <= _STATS_MAX_BYTES:
            xx = self.X[:, self.iu[0]] * self.X[:, self.iu[1]]
            ZT = np.concatenate([ZT, xx.T])
            self.packed_xx = True
        self.ZT = ZT
        self.total_scatter = self.X.T @ self.X if ct == "tied" else None
        self.resp = np.empty((K, n))
        if prior is None:
            self.prior = None
        else:
            self.prior = _PriorTerms(replace(prior, mean_loc=prior.mean_loc - self.center), ct)

    # -- sufficient statistics and E-step ----------------------------------- #

    def stats(self, resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``N_k``, ``s_k = sum_i r_ik x_i`` and the family's second moments."""
        D = self.D
        S = resp @ self.ZT.T
        N, Sx = S[:, 0], S[:, 1 : 1 + D]
        if self.ct == "full":
            if self.packed_xx:
                second = np.empty((self.K, D, D))
                packed = S[:, 1 + D :]
                second[:, self.iu[0], self.iu[1]] = packed
                second[:, self.iu[1], self.iu[0]] = packed
            else:
                second = np.stack([(self.ZT[1 : 1 + D] * r) @ self.X for r in resp])
        elif self.ct == "diag":
            second = S[:, 1 + D :]
        elif self.ct == "spherical":
            second = S[:, 1 + D]
        else:
            second = None
        return N, Sx, second

    def e_step(self, st: _State) -> tuple[float, tuple, np.ndarray]:
        kernel = _Kernel(st.means, st.prec_chol, self.ct, np.log(st.weights))
        log_norm, resp = _mixture_pass(self.ZT, kernel, self.resp)
        return float(log_norm.sum()), self.stats(resp), log_norm

    def objective(self, loglik: float, st: _State) -> float:
        if self.prior is None:
            return loglik
        return loglik + self.prior.log_density(st.weights, st.means, st.chol, st.prec_chol)

    # -- M-step (ECM) --------------------------------------------------------- #

    def m_step(self, st: _State | None, stats) -> tuple[np.ndarray, ...]:
        """New weights, means, covariances and the collapse masks ``singular``, ``dead``.

        ``singular`` has shape (K,) (shape (1,) for tied: the shared covariance) and flags
        singular scatter; ``dead`` (K,) flags components without points. Both are only
        set in maximum likelihood fits: with a prior every update is well defined.
        """
        N, Sx, second = stats
        pt, ct, D = self.prior, self.ct, self.D
        counts = N if pt is None else N + pt.alpha - 1.0
        weights = np.maximum(counts, 0.0)
        weights /= weights.sum()
        np.maximum(weights, _WEIGHT_FLOOR, out=weights)
        weights /= weights.sum()
        safe_n = np.maximum(N, np.finfo(float).tiny)
        if pt is None or st is None:
            means = Sx / safe_n[:, None]
        else:
            means = self._prior_means(N, Sx, st)
        # scatter about the new means: S_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T
        if ct == "full":
            cross = Sx[:, :, None] * means[:, None, :]
            scatter = second - cross - cross.transpose(0, 2, 1)
            scatter += N[:, None, None] * means[:, :, None] * means[:, None, :]
        elif ct == "tied":
            cross = Sx.T @ means
            scatter = self.total_scatter - cross - cross.T + (means.T * N) @ means
        elif ct == "diag":
            scatter = np.maximum(second - 2.0 * means * Sx + N[:, None] * means**2, 0.0)
        else:
            scatter = second - 2.0 * (means * Sx).sum(axis=1) + N * (means**2).sum(axis=1)
            scatter = np.maximum(scatter, 0.0)
        if pt is not None:
            nu = pt.nu
            if ct == "full":
                cov = (pt.psi + scatter) / (nu + D + 1 + N)[:, None, None]
            elif ct == "tied":
                cov = (pt.psi + scatter) / (nu + D + 1 + N.sum())
            elif ct == "diag":
                cov = (pt.psi_diag + scatter) / (nu + 2 + N)[:, None]
            else:
                cov = (pt.psi_diag.mean() + scatter) / (nu + 2 + D * N)
            singular = np.zeros(1 if ct == "tied" else self.K, dtype=bool)
            return weights, means, cov, singular, np.zeros(self.K, dtype=bool)
        # maximum likelihood: reg_covar on the diagonal, detect collapse (singular scatter)
        if ct == "full":
            cov = scatter / safe_n[:, None, None]
            singular = np.linalg.eigvalsh(cov)[:, 0] <= self.collapse_var
            cov[:, np.arange(D), np.arange(D)] += self.reg_covar
        elif ct == "tied":
            cov = scatter / N.sum()
            singular = np.array([np.linalg.eigvalsh(cov)[0] <= self.collapse_var])
            cov[np.arange(D), np.arange(D)] += self.reg_covar
        elif ct == "diag":
            cov = scatter / safe_n[:, None]
            singular = (cov <= self.collapse_var).any(axis=1)
            cov += self.reg_covar
        else:
            cov = scatter / (D * safe_n)
            singular = cov <= self.collapse_var
            cov += self.reg_covar
        dead = (N < self.min_nk) | ~np.isfinite(means).all(axis=1)
        return weights, means, cov, singular, dead

    def _prior_means(self, N, Sx, st: _State) -> np.ndarray:
        pt = self.prior
        rhs = Sx - N[:, None] * pt.m0  # mu_k = m0 + S0 (N_k S0 + Sigma_k)^-1 (s_k - N_k m0)
        if self.ct in ("diag", "spherical"):
            var = st.cov if self.ct == "diag" else st.cov[:, None]
            return pt.m0 + pt.s0_sq * rhs / (N[:, None] * pt.s0_sq + var)
        cov = st.cov if self.ct == "full" else np.broadcast_to(st.cov, (self.K, self.D, self.D))
        system = cov + N[:, None, None] * np.diag(pt.s0_sq)  # SPD
        inv_chol = _solve_lower_identity(np.linalg.cholesky(system))  # L^-1, triangular
        y = np.einsum("kij,kj->ki", inv_chol, rhs)  # forward substitution L y = rhs
        z = np.einsum("kji,kj->ki", inv_chol, y)  # back substitution L^T z = y
        return pt.m0 + pt.s0_sq * z

    # -- building states, re-seeding ------------------------------------------ #

    def build(self, weights, means, cov) -> tuple[_State | None, np.ndarray]:
        chol, bad = _safe_chol(cov, self.ct)
        if bad.any():
            return None, bad
        return _State(weights, means, cov, chol, prec_chol_from_chol_cov(chol, self.ct)), bad

    def reseed(self, weights, means, cov, singular, dead, log_norm) -> None:
        """Move collapsed components to poorly fitted points with data-scaled covariances."""
        if self.ct == "tied":
            if singular.any():
                cov[...] = self.default_cov
            comps = np.flatnonzero(dead)
        else:
            comps = np.flatnonzero(singular | dead)
        if comps.size == 0:
            return
        keep = np.setdiff1d(np.arange(self.K), comps)
        if log_norm is not None:
            order = np.argsort(log_norm, kind="stable")
        else:  # no density yet: farthest from the surviving means
            d2 = ((self.X[:, None, :] - means[keep][None]) ** 2).sum(-1).min(axis=1)
            order = np.argsort(-d2 if keep.size else np.zeros(self.n), kind="stable")
        chosen: list[np.ndarray] = []
        for i in order:
            x = self.X[i]
            if all((x != c).any() for c in chosen):
                chosen.append(x)
                if len(chosen) == comps.size:
                    break
        for k, x in zip(comps, chosen, strict=False):
            means[k] = x
            weights[k] = 1.0 / self.K
            if self.ct != "tied":
                cov[k] = self.default_cov[k]
        weights /= weights.sum()

    def initial_state(self, rng, init, means_init, weights_init) -> _State:
        if means_init is not None:
            K = self.K
            weights = np.full(K, 1.0 / K) if weights_init is None else weights_init.copy()
            state, _ = self.build(weights, means_init - self.center, self.default_cov.copy())
            return state
        resp = _kmeans_pp_resp(self.X, self.K, rng) if init == "k-means++" else None
        if resp is None:
            r = rng.random((self.n, self.K))
            r /= r.sum(axis=1, keepdims=True)
            resp = np.ascontiguousarray(r.T)
        weights, means, cov, singular, dead = self.m_step(None, self.stats(resp))
        # a singular start (e.g. a seed alone in its cell) gets the data-scaled covariance
        if self.ct == "tied":
            cov = self.default_cov.copy() if singular.any() else cov
        else:
            cov[singular] = self.default_cov[singular]
        if dead.any():
            self.reseed(weights, means, cov, np.zeros_like(singular), dead, None)
        if weights_init is not None:
            weights = weights_init.copy()
        state, _ = self.build(weights, means, cov)
        if state is None:
            state, _ = self.build(weights, means, self.default_cov.copy())
        return state

    def run(self, rng, init, means_init, weights_init, tol, max_iter) -> dict[str, Any]:
        state = self.initial_state(rng, init, means_init, weights_init)
        max_reseeds = max(10, 2 * self.K)
        trace: list[float] = []
        n_reseeds, prev, converged, n_iter = 0, None, False, 0
        for n_iter in range(1, max_iter + 1):
            loglik, stats, log_norm = self.e_step(state)
            obj = self.objective(loglik, state)
            if not math.isfinite(obj):
                raise _RunFailed("the objective stopped being finite")
            trace.append(obj)
            if prev is not None and abs(obj - prev) < tol * self.n:
                converged = True
                break
            prev = obj
            if n_iter == max_iter:
                break
            weights, means, cov, singular, dead = self.m_step(state, stats)
            new = None
            if not (singular.any() or dead.any()):
                new, singular = self.build(weights, means, cov)
            if new is None:
                n_reseeds += int(singular.sum() + dead.sum())
                if n_reseeds > max_reseeds:
                    raise _RunFailed(f"components collapsed {n_reseeds} times")
                self.reseed(weights, means, cov, singular, dead, log_norm)
                new, _ = self.build(weights, means, cov)
                if new is None:
                    raise _RunFailed("re-seeded covariances are not positive definite")
                prev = None  # the objective jumps at a re-seed: restart the convergence test
            state = new
        resp = self.resp  # responsibilities of the last E-step, i.e. of `state`
        with np.errstate(divide="ignore"):
            slmr = float(np.log(resp.max(axis=0)).sum())
        return dict(
            objective=trace[-1],
            log_likelihood=loglik,
            state=state,
            trace=np.array(trace),
            converged=converged,
            n_iter=n_iter,
            n_reseeds=n_reseeds,
            sum_log_max_resp=slmr,
        )


def _kmeans_pp_resp(X: np.ndarray, K: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; sklearn's variant with
    ``2 + log K`` candidates per step), then hard responsibilities to the nearest seed."""
    n = X.shape[0]
    sq = np.einsum("ij,ij->i", X, X)
    n_trials = 2 + int(math.log(K))
    centers = [int(rng.integers(n))]
    closest = np.maximum(sq - 2.0 * X @ X[centers[0]] + sq[centers[0]], 0.0)
    potential = closest.sum()
    for _ in range(1, K):
        targets = (1.0 - rng.random(n_trials)) * potential  # in (0, potential]
        cand = np.minimum(np.searchsorted(np.cumsum(closest), targets), n - 1)
        d2 = np.maximum(sq[cand][:, None] - 2.0 * X[cand] @ X.T + sq[None], 0.0)
        np.minimum(d2, closest, out=d2)
        pots = d2.sum(axis=1)
        best = int(np.argmin(pots))
        centers.append(int(cand[best]))
        closest, potential = d2[best], pots[best]
    C = X[centers]
    d2 = (C * C).sum(axis=1)[:, None] - 2.0 * C @ X.T  # + ||x||^2, constant per point
    labels = np.argmin(d2, axis=0)
    labels[centers] = np.arange(K)  # each seed owns itself (ties between equal points)
    resp = np.zeros((K, n))
    resp[labels, np.arange(n)] = 1.0
    return resp


# --------------------------------------------------------------------------- #
# Public entry point
# --------------------------------------------------------------------------- #


def _is_int(x: Any) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, int | float | np.integer | np.floating) and not isinstance(x, bool)


def _check_n_components(n_components: Any) -> None:
    if not _is_int(n_components) or n_components < 1:
        raise ConfigError(f"n_components must be an integer >= 1; got {n_components!r}.")


def _one_of(options: tuple[str, ...]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in options


# fit_em's settings: name -> (check, what is allowed); violations are reported together
_FIT_CONSTRAINTS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "n_components": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "covariance_type": (_one_of(COVARIANCE_TYPES), f"one of {list(COVARIANCE_TYPES)}"),
    "init": (_one_of(INIT_METHODS), f"one of {list(INIT_METHODS)}"),
    "n_init": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "tol": (lambda v: _is_real(v) and math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "max_iter": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "reg_covar": (lambda v: _is_real(v) and math.isfinite(v) and v >= 0, "a finite number >= 0"),
    "prior": (
        lambda v: v is None or isinstance(v, EMPrior) or _one_of(("default",))(v),
        "None (maximum likelihood), 'default' or an EMPrior",
    ),
}


def _config_errors(values: dict[str, Any]) -> list[str]:
    return [
        f"{name}={values[name]!r} is invalid; use {allowed}."
        for name, (ok, allowed) in _FIT_CONSTRAINTS.items()
        if not ok(values[name])
    ]


def _check_start(means_init, weights_init, K: int, D: int):
    errors = []
    if means_init is not None:
        means_init = np.asarray(means_init, dtype=np.float64)
        if means_init.shape != (K, D) or not np.isfinite(means_init).all():
            errors.append(
                f"means_init must be finite with shape ({K}, {D}); got {means_init.shape}."
            )
    if weights_init is not None:
        weights_init = np.asarray(weights_init, dtype=np.float64)
        ok = weights_init.shape == (K,) and np.isfinite(weights_init).all()
        if not (ok and (weights_init > 0).all() and abs(weights_init.sum() - 1.0) < 1e-6):
            errors.append(
                f"weights_init must be {K} positive numbers summing to 1; got {weights_init!r}."
            )
        else:
            weights_init = weights_init / weights_init.sum()
    if errors:
        raise ConfigError("Invalid fit_em start:\n  - " + "\n  - ".join(errors))
    return means_init, weights_init


def fit_em(
    X: ArrayLike,
    n_components: int,
    *,
    covariance_type: str = "full",
    prior: EMPrior | str | None = "default",
    init: str = "k-means++",
    n_init: int = 5,
    tol: float = 1e-8,
    max_iter: int = 1000,
    reg_covar: float = 1e-6,
    random_seed: int | np.random.Generator | None = None,
    means_init: ArrayLike | None = None,
    weights_init: ArrayLike | None = None,
    feature_names: Sequence[str] | None = None,
) -> EMResult:
    """Fit a Gaussian mixture by EM: MAP under a prior, or maximum likelihood.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric data; a DataFrame keeps its column names.
    n_components : int
        Number of mixture components ``K >= 1``.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
        Covariance family (scikit-learn's names and layouts).
    prior : 'default', EMPrior or None, default='default'
        ``'default'`` uses :meth:`EMPrior.default` (MAP fit, see :class:`EMPrior` for the
        semantics and updates); ``None`` gives plain maximum likelihood, where ``reg_covar``
        is added to the covariance diagonals as in scikit-learn and ``log_posterior ==
        log_likelihood``. With a prior, ``reg_covar`` is not used: the prior keeps the
        covariances positive definite and EM stays an exact ECM ascent.
    init : {'k-means++', 'random'}, default='k-means++'
        ``'k-means++'``: k-means++ seeds, each point assigned to its nearest seed (as
        scikit-learn's ``init_params='k-means++'``); ``'random'``: random responsibilities.
    n_init : int, default=5
        Number of starts; the one with the highest objective is kept. With ``means_init``
        every start would be identical, so a single one is run.
    tol : float, default=1e-8
        Stop when the objective changes by less than ``tol`` per sample between iterations.
    max_iter : int, default=1000
        Maximum number of iterations (E-steps) per start.
    reg_covar : float, default=1e-6
        Added to covariance diagonals in maximum likelihood fits (``prior=None``).
    random_seed : int, numpy.random.Generator or None
        Same seed, same result (bit for bit).
    means_init : array-like of shape (n_components, n_features), optional
        Starting means; covariances then start at ``diag(column variances) / K**(2/D)``.
    weights_init : array-like of shape (n_components,), optional
        Starting weights (positive, summing to 1).
    feature_names : sequence of str, optional
        Overrides the DataFrame's columns (or ``feature_0, ...``).

    Returns
    -------
    EMResult

    Raises
    ------
    DataError
        Bad data (NaN/inf, wrong shape, empty, non-numeric, constant columns, fewer
        distinct points than components).
    ConfigError
        Unknown or out-of-range settings (all reported together).
    DegenerateFitError
        Every start kept collapsing components even after re-seeding them.

    Warns
    -----
    ConvergenceWarning
        The best start reached ``max_iter`` before converging.

    Notes
    -----
    A component that collapses in a maximum likelihood fit (it loses its points or its
    scatter becomes singular, e.g. on duplicated rows) is re-seeded at the worst-fitted
    point with a data-scaled covariance; ``n_reseeds`` counts these for the kept start.

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> fit = fit_em(load_faithful(), 2, prior=None, random_seed=0)
    >>> round(fit.log_likelihood, 2), fit.weights.round(3).tolist()
    (-1130.26, [0.356, 0.644])
    >>> fit.predict(load_faithful().head(3)).tolist()
    [1, 0, 1]
    """
    settings = dict(
        n_components=n_components, covariance_type=covariance_type, init=init, n_init=n_init,
        tol=tol, max_iter=max_iter, reg_covar=reg_covar, prior=prior,
    )  # fmt: skip
    errors = _config_errors(settings)
    if errors:
        raise ConfigError("Invalid fit_em settings:\n  - " + "\n  - ".join(errors))
    try:
        rng = np.random.default_rng(random_seed)
    except (TypeError, ValueError):
        raise ConfigError(
            f"random_seed must be an int, a numpy Generator or None; got {random_seed!r}."
        ) from None
    X, names = check_data(X, n_components=n_components, feature_names=feature_names)
    n, D = X.shape
    if isinstance(prior, str):
        prior = EMPrior._default(X, n_components)
    elif prior is not None and (prior.n_components, prior.n_features) != (n_components, D):
        raise ConfigError(
            f"prior is for {prior.n_components} components and {prior.n_features} features, "
            f"but the fit has n_components={n_components} and {D} features."
        )
    means_init, weights_init = _check_start(means_init, weights_init, n_components, D)
    em = _EM(X, n_components, covariance_type, prior, float(reg_covar))
    n_runs = 1 if means_init is not None else n_init
    best, failures = None, []
    for _ in range(n_runs):
        try:
            run = em.run(rng, init, means_init, weights_init, float(tol), max_iter)
        except _RunFailed as exc:
            failures.append(str(exc))
            continue
        if best is None or run["objective"] > best["objective"]:
            best = run
    if best is None:
        reason = (
            f"EM failed in all {n_runs} starts ({failures[-1]}): mixture components keep "
            "collapsing onto too few or duplicated points."
        )
        raise DegenerateFitError(f"{reason} {_REMEDIES}", reason=reason)
    if not best["converged"]:
        trace = best["trace"]
        change = (
            f" (last change per sample {abs(trace[-1] - trace[-2]) / n:.3g} > tol={tol:g})"
            if len(trace) > 1
            else ""
        )
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations{change}. Raise max_iter, "
            "loosen tol, use more starts (n_init), or standardise the data.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return _make_result(em, best, prior, names, n_runs)


def _make_result(em: _EM, run: dict, prior: EMPrior | None, names, n_runs: int) -> EMResult:
    st, ct, K, D = run["state"], em.ct, em.K, em.D
    means = st.means + em.center
    order = np.lexsort(means.T[::-1])
    per_component = ct != "tied"
    cov = st.cov[order] if per_component else st.cov
    chol_cov = full_covariances(st.chol[order] if per_component else st.chol, ct, K, D)
    result = EMResult(
        weights=st.weights[order],
        means=means[order],
        covariances=cov,
        covariance_type=ct,
        chol_cov=chol_cov,
        prec_chol=st.prec_chol[order] if per_component else st.prec_chol,
        log_likelihood=run["log_likelihood"],
        log_posterior=run["objective"],
        objective_trace=run["trace"],
        converged=run["converged"],
        n_iter=run["n_iter"],
        n_reseeds=run["n_reseeds"],
        n_init=n_runs,
        prior=prior,
        feature_names=names,
        n_samples=em.n,
        sum_log_max_resp=run["sum_log_max_resp"],
    )
    arrays = [result.weights, result.means, result.covariances, result.prec_chol]
    if not all(np.isfinite(a).all() for a in arrays):
        reason = "EM produced non-finite parameters."
        raise DegenerateFitError(f"{reason} {_REMEDIES}", reason=reason)
    return result
