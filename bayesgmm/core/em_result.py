"""The result of an EM fit: a point estimate of the mixture, and what it can compute.

:class:`EMResult` is frozen and serialisable (:meth:`EMResult.to_dict`); its densities and
memberships go through the mixture engine (:mod:`bayesgmm.core.engine`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bayesgmm.core.checks import check_keys
from bayesgmm.core.data import check_new_data
from bayesgmm.core.em_prior import EMPrior
from bayesgmm.core.engine import Kernel, design, memberships, mixture_pass
from bayesgmm.core.families import family
from bayesgmm.core.missing import Patterns, marginal_logpdf
from bayesgmm.core.noise import check_noise_cov, noise_terms

__all__ = ["EMResult"]

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
        The covariance parameters in the family's layout (scikit-learn's
        ``covariances_`` for its four families; see Notes).
    covariance_type : str
        The family's name: scikit-learn's for full, tied, diag and spherical, also when
        fitted under its mclust alias (VVV, EEE, VVI, VII), else mclust's.
    chol_cov : ndarray of shape (n_components, n_features, n_features)
        Lower Cholesky factors ``L_k`` of the full covariance matrices, ``Sigma_k = L_k
        L_k^T``, for every family (a shared covariance's repeated K times; ``diag(sd_k)``
        for diag and spherical).
    prec_chol : ndarray
        Upper precision Cholesky factors ``U_k = L_k^{-T}`` (``Sigma_k^{-1} = U_k
        U_k^T``), in the layout of ``covariances`` (scikit-learn's
        ``precisions_cholesky_`` for its four families; see Notes).
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
    n_samples : int or float
        Points in the fit; with frequency weights (``sample_weight``) their sum, which
        BIC's ``ln n`` uses.
    sum_log_max_resp : float
        ``sum_i log max_k p(z_i = k | x_i)`` on the training data (used by :meth:`icl`).
    missing : {"error", "marginalize"}
        What NaN meant in the fit (``fit_em``'s ``missing``); with ``"marginalize"`` the
        densities and memberships of partially observed points are those of their
        observed coordinates.
    noise_weight : float or None
        The background-noise component's weight (``fit_em(..., noise=True)``), or None
        without one; ``weights`` then sum to ``1 - noise_weight``.
    background : float or None
        That component's log density, ``log(1 / V)`` (:mod:`bayesgmm.core.background`).

    Notes
    -----
    How ``covariances`` and ``prec_chol`` are stored, per family (K components, D
    features; the families are mclust's ``Sigma_k = lambda_k D_k A_k D_k^T``, volume,
    shape and orientation equal (E), varying (V) or the identity (I), see
    :mod:`bayesgmm.core.families`). :meth:`covariance_matrices` gives every family's
    ``(K, D, D)`` matrices.

    ====================  =========  ===========================================================
    family                layout     ``covariances``; ``prec_chol``
    ====================  =========  ===========================================================
    full (VVV)            (K, D, D)  ``Sigma_k``; ``U_k``
    tied (EEE)            (D, D)     the shared ``Sigma``; its ``U``
    diag (VVI)            (K, D)     variances ``sd_kd**2``; ``1 / sd_kd``
    spherical (VII)       (K,)       one variance per component; ``1 / sd_k``
    EII, EEI              (D, D)     the shared matrix (``lambda I``, ``lambda A``); its ``U``
    VEI, EVI, VEE, EVE    (K, D, D)  ``Sigma_k`` as full matrices; ``U_k``
    VVE, EEV, VEV, EVV    (K, D, D)  ``Sigma_k`` as full matrices; ``U_k``
    E (univariate)        (1, 1)     the shared variance as a 1 x 1 matrix; ``1 / sd``
    V (univariate)        (K, 1, 1)  a variance per component as 1 x 1 matrices; ``1 / sd_k``
    ====================  =========  ===========================================================

    The eigen-decomposed families (EII ... EVV, E, V) store their covariances as the
    matrices their M-step returns, not as volumes, shapes and orientations; their
    densities and factors are those of the full (per component) or tied (shared)
    family.
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
    n_samples: int | float
    sum_log_max_resp: float
    missing: str = "error"
    noise_weight: float | None = None
    background: float | None = None

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
        return family(self.covariance_type).to_full(
            self.covariances, self.n_components, self.n_features
        )

    def _pass(self, X: ArrayLike, noise_cov=None) -> tuple[np.ndarray, np.ndarray]:
        X = check_new_data(X, self.n_features, self.feature_names, missing=self.missing)
        fam = family(self.covariance_type)
        noise_cov = check_noise_cov(noise_cov, X)  # refused with missing values
        if noise_cov is None and not np.isnan(X).any():
            kernel = Kernel(fam, self.means[None], self.prec_chol[None],
                            np.log(self.weights)[None])  # fmt: skip
            bg = None if self.noise_weight is None else np.log(self.noise_weight) + self.background
            return mixture_pass(design(X, fam), kernel, background=bg)
        # densities outside the kernel: points with their own measurement errors, or each
        # missingness pattern's marginal mixture
        cov = self.covariance_matrices()
        if noise_cov is not None:
            log_dens = noise_terms(X, noise_cov, self.means, cov, conditionals=False)[0]
        else:
            log_dens = np.empty((X.shape[0], self.n_components))
            for rows, obs, _ in Patterns.of(X).groups():
                chol = np.linalg.cholesky(cov[:, obs][:, :, obs])
                log_dens[rows] = marginal_logpdf(X[np.ix_(rows, obs)], self.means[:, obs], chol)
        with np.errstate(divide="ignore"):
            resp, log_norm = memberships(np.log(self.weights) + log_dens)
        return log_norm, resp.T

    def log_density(self, X: ArrayLike, noise_cov: ArrayLike | None = None) -> np.ndarray:
        """Log mixture density of each row of ``X``, shape (n_samples,); with
        ``noise_cov`` (as :func:`fit_em` takes it), of the rows measured with those errors."""
        return self._pass(X, noise_cov)[0]

    def predict_proba(self, X: ArrayLike, noise_cov: ArrayLike | None = None) -> np.ndarray:
        """Posterior component probabilities, shape (n_samples, n_components); rows sum to
        1. ``noise_cov``: the rows' measurement errors, if any. With a background-noise
        component its probability is a last column (n_components + 1 in all)."""
        return self._pass(X, noise_cov)[1].T

    def predict(self, X: ArrayLike, noise_cov: ArrayLike | None = None) -> np.ndarray:
        """Most probable component of each row (argmax of :meth:`predict_proba`); -1 for
        the background-noise component."""
        best = np.argmax(self._pass(X, noise_cov)[1], axis=0)
        return best if self.noise_weight is None else np.where(best == self.n_components, -1, best)

    def n_parameters(self) -> int:
        """Free parameters: K - 1 weights, K D means and the family's covariance terms;
        with a background-noise component two more, its weight and its volume, as mclust
        counts them (``nMclustParams(..., noise = TRUE)``: the volume is the data's)."""
        K, D = self.n_components, self.n_features
        background = 0 if self.noise_weight is None else 2
        return K - 1 + background + K * D + family(self.covariance_type).n_parameters(K, D)

    def _loglik_n(self, X: ArrayLike | None) -> tuple[float, float]:
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
            n_samples=int(self.n_samples)
            if float(self.n_samples).is_integer()
            else float(self.n_samples),
            sum_log_max_resp=float(self.sum_log_max_resp),
            missing=self.missing,
            noise_weight=None if self.noise_weight is None else float(self.noise_weight),
            background=None if self.background is None else float(self.background),
        )
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EMResult:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise ConfigError."""
        names = [f.name for f in fields(cls)]
        # saved before bayesgmm had missing values or a background component
        d = {"missing": "error", "noise_weight": None, "background": None, **d}
        check_keys(d, names, "EMResult.from_dict", required=names)
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
            f"Gaussian mixture, {self.n_samples:g} points x {self.n_features} "
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
