"""EM's prior: the distributions whose MAP estimate :func:`bayesgmm.core.em.fit_em` finds.

:class:`EMPrior` holds the prior's parameters (serialisable); :class:`PriorTerms` its
constants for one fit, precomputed once, with the covariance part from the family table
(inverse-Wishart for the matrix families, inverse-gamma for the diagonal ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import gammaln

from bayesgmm.core.checks import check_keys
from bayesgmm.core.data import check_data, check_n_components
from bayesgmm.core.families import CovarianceFamily, family
from bayesgmm.core.priors import column_moments, component_variance
from bayesgmm.exceptions import ConfigError

__all__ = ["EMPrior", "PriorTerms"]

_LOG_2PI = math.log(2.0 * math.pi)
_PRIOR_KEYS = ("weight_concentration", "mean_loc", "mean_scale", "cov_dof", "cov_scale")


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
      - ``spherical``: ``sigma2_k ~ InvGamma(cov_dof / 2, mean(diag(cov_scale)) / 2)``;
      - mclust's other families (:mod:`bayesgmm.core.eigen_families`): the same densities
        of each distinct covariance matrix (one for the shared EII, EEI, E): the
        inverse-Wishart one, or with the identity orientation diag's (spherical's when the
        shape is the identity too). For EII and EEI this is a normalised prior of the
        family's parameters; for the others it is that prior restricted to the family, an
        unnormalised density there (the constant does not move the MAP; ``log_posterior``
        reports it with the normalising constants of the densities above).

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
       - spherical: ``sigma2_k = (mean(diag Psi) + tr S_k) / (nu + 2 + D N_k)``;
       - mclust's other families: the family's maximum likelihood M-step (mclust's
         algorithms) on the counts ``N_k + c`` and scatters ``S_k + P``, with
         ``(c, P) = (nu + D + 1, Psi)`` (inverse-Wishart), ``(nu + 2, diag(Psi))``
         (variances) or ``((nu + 2) / D, mean(diag Psi) I / D)`` (one variance); pooled,
         ``n + c`` and ``sum_k S_k + P``, for a shared covariance. This is the maximiser
         given the means (iterated to mclust's tolerance where there is no closed form);
         the four above are the same rule. mclust's
         ``priorControl`` differs: its mean prior is conjugate (``Sigma_k / kappa``, a
         shrinkage term in the scatter), it adds ``Psi`` to each component's scatter but
         counts ``nu`` once (EEV) or not at all (VEV), and it has no prior for VEE, EVE,
         VVE and EVV.

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

    n_components = property(
        lambda self: int(self.weight_concentration.shape[0]),
        doc="Number of components the Dirichlet concentration is for.",
    )
    n_features = property(lambda self: int(self.mean_loc.shape[0]), doc="Number of features.")

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
        family(covariance_type)
        check_n_components(n_components)
        X, _ = check_data(X, n_components=n_components)
        return cls._default(X, n_components)

    @classmethod
    def _default(
        cls, X: np.ndarray, n_components: int, sample_weight: np.ndarray | None = None
    ) -> EMPrior:
        n_features = X.shape[1]
        mean, var = column_moments(X, sample_weight, ddof=1)
        return cls(
            weight_concentration=np.ones(n_components),
            mean_loc=mean,
            mean_scale=2.0 * np.sqrt(var),
            cov_dof=float(n_features + 2),
            cov_scale=np.diag(component_variance(var, n_components)),
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
        check_keys(d, _PRIOR_KEYS, "EMPrior.from_dict", required=_PRIOR_KEYS)
        return cls(**d)

    def log_density(
        self,
        weights: ArrayLike,
        means: ArrayLike,
        covariances: ArrayLike,
        covariance_type: str,
    ) -> float:
        """Normalised log prior density ``log p(theta)`` of mixture parameters.

        Parameters
        ----------
        weights : array-like of shape (n_components,)
        means : array-like of shape (n_components, n_features)
        covariances : array-like
            In the family's layout (as :class:`~bayesgmm.core.em_result.EMResult`'s
            ``covariances``: full (K, D, D), tied (D, D), diag (K, D), spherical (K,),
            ...) and of the family's form: for mclust's ``lambda_k D_k A_k D_k^T``, equal
            volumes, shapes or orientations where the name has an E, spherical
            (equal eigenvalues) or axis-aligned (diagonal) matrices where it has an I,
            to a relative tolerance of 1e-6.
        covariance_type : str

        Raises
        ------
        ConfigError
            A shape does not match the prior's K and D, or the covariances are not
            symmetric or not of the family's form (the message says which part).
        DegenerateFitError
            A covariance is not positive definite.

        Examples
        --------
        >>> import numpy as np
        >>> prior = EMPrior([1.0], [0.0], [1.0], 2.0, [[1.0]])
        >>> lp = prior.log_density([1.0], [[0.0]], [1.0], "spherical")
        >>> # N(0, 1) density of the mean + InvGamma(1, 0.5) density of the variance, at 0 and 1
        >>> bool(np.isclose(lp, -0.5 * np.log(2 * np.pi) + np.log(0.5) - 0.5))
        True
        """
        fam = family(covariance_type)
        K, D = self.n_components, self.n_features
        fam.check_n_features(D)
        weights = _shaped("weights", weights, (K,), K, D)
        means = _shaped("means", means, (K, D), K, D)
        alias = f" ({fam.mclust})" if fam.mclust != fam.name else ""
        what = f"covariances of covariance_type {fam.name!r}{alias}"
        cov = _shaped(what, covariances, fam.layout(K, D), K, D)
        full = fam.to_full(cov, K, D)
        scale = np.abs(np.diagonal(full, axis1=1, axis2=2)).max(axis=1)[:, None, None]
        if (np.abs(full - np.swapaxes(full, 1, 2)) > _RTOL * scale).any():
            raise ConfigError(f"{what} must be symmetric matrices.")
        chol = fam.chol_from_cov(cov)  # DegenerateFitError when not positive definite
        _check_form(fam, full if fam.per_component else full[:1], what)
        terms = PriorTerms(self, fam)
        return terms.log_density(weights, means, chol, fam.prec_chol(chol))

    def __repr__(self) -> str:
        return (
            f"EMPrior(n_components={self.n_components}, n_features={self.n_features}, "
            f"weight_concentration={np.round(self.weight_concentration, 4).tolist()}, "
            f"cov_dof={self.cov_dof:g})"
        )


_RTOL = 1e-6  # of the covariances' form in EMPrior.log_density (EM's M-steps: ~1e-8)
_WORDS = {"E": "equal", "V": "varying", "I": "the identity"}
_PARTS = ("volume", "shape", "orientation")


def _shaped(what: str, value: ArrayLike, shape: tuple[int, ...], K: int, D: int) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape:
        raise ConfigError(
            f"{what} must have shape {shape} (K = {K} components, D = {D} features, as the "
            f"prior's); got {arr.shape}."
        )
    return arr


def _check_form(fam: CovarianceFamily, full: np.ndarray, what: str) -> None:
    """ConfigError unless the positive-definite ``full`` (G, D, D) (one matrix for a shared
    family) are of ``fam``'s form ``lambda_k D_k A_k D_k^T`` (mclust's three letters)."""
    structure = getattr(fam, "structure", fam.mclust)
    volume, shape, orientation = structure
    eig = np.linalg.eigvalsh(full)[:, ::-1]  # decreasing
    lam = np.exp(np.log(eig).mean(axis=1))  # volumes |Sigma_k|^(1/D)
    normed = full / lam[:, None, None]

    def differ(a: np.ndarray, b: np.ndarray) -> bool:
        return bool(np.abs(a - b).max() > _RTOL * np.abs(b).max())

    wrong = []
    if volume == "E" and differ(lam, lam[:1]):
        wrong.append(f"equal volumes |Sigma_k|^(1/D) (given {np.array2string(lam, precision=4)})")
    if shape == "I" and differ(eig / lam[:, None], np.ones_like(eig)):
        wrong.append("equal eigenvalues (spherical matrices)")
    if shape != "I" and orientation == "I":
        d = np.diagonal(full, axis1=1, axis2=2)
        off = full - d[:, :, None] * np.eye(full.shape[1])
        if (np.abs(off) > _RTOL * np.sqrt(d[:, :, None] * d[:, None, :])).any():
            wrong.append("diagonal matrices (orientation: the axes)")
    if shape == "E" and orientation == "V" and differ(eig / lam[:, None], eig[:1] / lam[0]):
        wrong.append("the same shape (eigenvalues / volume) in every component")
    elif shape == "E" and orientation != "V" and differ(normed, normed[:1]):
        parts = "shape and orientation" if orientation == "E" else "shape"
        wrong.append(f"the same {parts} (Sigma_k / volume) in every component")
    if shape == "V" and orientation == "E":
        comm = np.einsum("kij,jl->kil", full, full[0]) - np.einsum("ij,kjl->kil", full[0], full)
        norm = np.linalg.norm(full, axis=(1, 2))
        if (np.linalg.norm(comm, axis=(1, 2)) > _RTOL * norm * norm[0]).any():
            wrong.append("a common orientation (matrices with the same eigenvectors)")
    if wrong:
        form = ", ".join(f"{p} {_WORDS[c]}" for p, c in zip(_PARTS, structure, strict=True))
        raise ConfigError(
            f"{what} are not of the family's form ({structure}: {form}); they need "
            + "; ".join(wrong)
            + "."
        )


class PriorTerms:
    """Constants of the log prior density, precomputed once per fit."""

    def __init__(self, prior: EMPrior, fam: CovarianceFamily) -> None:
        alpha = prior.weight_concentration
        K, D = alpha.shape[0], prior.n_features
        self.alpha, self.D = alpha, D
        # Dirichlet on a single weight is a point mass at 1: log density 0.
        self.dir_const = float(gammaln(alpha.sum()) - gammaln(alpha).sum()) if K > 1 else 0.0
        self.m0, self.s0 = prior.mean_loc, prior.mean_scale
        self.s0_sq = prior.mean_scale**2
        self.norm_const = -K * (np.log(self.s0).sum() + 0.5 * D * _LOG_2PI)
        self.cov = fam.prior_terms(prior.cov_scale, prior.cov_dof)

    def log_density(self, weights, means, chol, prec_chol) -> float:
        lp = self.dir_const
        if self.alpha.shape[0] > 1:
            lp += float(((self.alpha - 1.0) * np.log(weights)).sum())
        z = (means - self.m0) / self.s0
        lp += self.norm_const - 0.5 * float((z * z).sum())
        lp += self.cov.log_density(chol, prec_chol)
        return lp
