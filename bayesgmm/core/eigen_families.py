"""mclust's eigen-decomposed covariance families, ``Sigma_k = lambda_k D_k A_k D_k^T``.

Celeux & Govaert (1995, "Gaussian parsimonious clustering models") write a component's
covariance as volume ``lambda_k = |Sigma_k|^(1/d)``, shape ``A_k`` (diagonal, decreasing,
``|A_k| = 1``) and orientation ``D_k`` (orthogonal); each part is equal across components
(E), varying (V) or the identity (I, shape and orientation only), and mclust names a family
by its three letters. The records here (:class:`EigenFamily`) are matrix families: their
covariances are ``(K, D, D)`` matrices, or one ``(D, D)`` when every part is shared (EII,
EEI), so densities, factors and EM's statistics are the matrix families' own. What is
theirs is the M-step: the family's maximiser of

    ``Q(Sigma) = -1/2 sum_k [m_k log|Sigma_k| + tr(S_k Sigma_k^{-1})]``

with ``m_k = N_k`` and ``S_k = W_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T`` (maximum
likelihood) or the prior's pseudo-counts and pseudo-scatter added (MAP; see
:mod:`bayesgmm.core.cov_priors`). A shared family is solved on the pooled ``S = sum_k S_k``
and ``m = sum_k m_k`` (EII, EEI, EEE are then VII, VVI, VVV with one component).

============ =========================================================================
family       M-step (``S_k = L_k Omega_k L_k^T`` eigendecomposed, decreasing)
============ =========================================================================
VII, VVI     ``tr(S_k) / (d m_k)``; ``diag(S_k) / m_k``
EVI          ``A_k ∝ diag(S_k)``, ``lambda = sum_k |diag S_k|^(1/d) / sum_k m_k``
EEV          ``L_k (sum_l Omega_l / sum_l m_l) L_k^T``
EVV          ``lambda S_k / |S_k|^(1/d)``, ``lambda = sum_k |S_k|^(1/d) / sum_k m_k``
VEI, VEV     iterative: ``lambda_k = tr(Omega_k A^{-1}) / (d m_k)``, then
             ``A ∝ sum_k Omega_k / lambda_k`` (``Omega_k = diag(S_k)`` for VEI,
             ``D_k = L_k``); stops when no parameter moves by more than tol (relative)
VEE          iterative: ``lambda_k = tr(S_k C^{-1}) / (d m_k)``, then
             ``C ∝ sum_k S_k / lambda_k`` (``|C| = 1``); stops on the objective
EVE, VVE     iterative: the common orientation by the two majorisation steps MM1 and MM2
             of Browne & McNicholas (2014), then the shapes (and volumes) given it;
             stops on the objective
============ =========================================================================

As in mclust (``emControl()$tol[2]``) the inner tolerance is ``sqrt(machine eps)`` on the
relative change; mclust iterates without limit, here at most :data:`MAX_INNER` times per
M-step. Each inner step maximises ``Q`` over one part given the others and the iterations
start from the current covariances (``previous``), so a capped M-step still increases
``Q`` and EM stays a (generalised) ascent. Two differences from mclust's Fortran: VVE's
orientation step weights component ``k`` by ``1 / lambda_k`` as the likelihood does
(mclust's ``msvve`` / ``mevve`` leave ``lambda_k`` out, so their update does not maximise
``Q``), and a cold start (no ``previous``) takes the orientation from the eigenvectors of
``sum_k S_k`` (mclust: the identity).
"""

from __future__ import annotations

import math

import numpy as np

from bayesgmm.core.cov_priors import CovPriorTerms, DiagonalMatrixTerms, InverseWishartTerms
from bayesgmm.core.family_kinds import _MatrixFamily
from bayesgmm.core.triangular import solve_lower_identity
from bayesgmm.exceptions import ConfigError, DegenerateFitError

__all__ = ["MAX_INNER", "EigenFamily", "constrained_covariances"]

#: Inner iterations per M-step at most (mclust: unlimited); see the module docstring.
MAX_INNER = 1000
_TOL = math.sqrt(np.finfo(float).eps)  # mclust's emControl()$tol[2]
_PARTS = {"volume": "EV", "shape": "EVI", "orientation": "EVI"}


class EigenFamily(_MatrixFamily):
    """The record of one of mclust's families ``Sigma_k = lambda_k D_k A_k D_k^T``.

    Parameters
    ----------
    name : str
        mclust's name, e.g. ``'VEV'``; also ``'E'`` / ``'V'``, mclust's univariate models
        (give their ``structure``, EII / VII, and ``univariate=True``).
    structure : str, optional
        Volume, shape and orientation letters (default: ``name``).
    univariate : bool, default=False
        Defined for one feature only.
    """

    #: The Bayesian model parameterises the family by volume, shape and orientation
    #: (:mod:`bayesgmm.inference.eigen_model`; start values and standard errors in
    #: :mod:`bayesgmm.core.eigen_params`).
    parameterisation = "eigen"

    def __init__(self, name: str, structure: str | None = None, *, univariate=False) -> None:
        structure = name if structure is None else structure
        if len(structure) != 3 or any(
            c not in ok for c, ok in zip(structure, _PARTS.values(), strict=True)
        ):
            raise ValueError(f"not an mclust structure: {structure!r}")
        self.name = self.mclust = name
        self.structure = structure
        self.volume, self.shape, self.orientation = structure
        self.per_component = "V" in structure
        self.univariate = univariate
        # a shared family is its varying twin on the pooled scatter (one "component")
        self._solve = _ALGORITHMS[structure if self.per_component else structure.replace("E", "V")]

    # -- model parameterisation (read by bayesgmm.inference.eigen_model) --------------- #
    @property
    def form(self) -> str:
        """How the unit-determinant part ``C_k`` is parameterised: ``'diagonal'``
        (orientation I), ``'lkj'`` (shape and orientation alike, E or V: an LKJ
        correlation) or ``'rotation'`` (Cayley coordinates); see
        :mod:`bayesgmm.core.eigen_params`."""
        if self.orientation == "I":
            return "diagonal"
        return "lkj" if self.shape == self.orientation else "rotation"

    @property
    def isotropic(self) -> bool:
        """The internal standardisation uses one scale for every feature: the family is
        not closed under rescaling the features separately (EII, EVE, VVE, EEV, VEV; E,
        V), so standardising per feature would change the model."""
        return self.structure in ("EII", "VII", "EVE", "VVE", "EEV", "VEV")

    @property
    def correlated(self) -> bool:
        """Covariances with off-diagonal terms (an orientation other than I)."""
        return self.orientation != "I"

    @property
    def lkj(self) -> bool:
        """The model has an LKJ correlation (``chol_corr``): the ``'lkj'`` form."""
        return self.form == "lkj"

    @property
    def kernel(self):
        """The record whose likelihood the model's covariance argument takes: ``full``
        (Cholesky factors), ``diag`` (sds) or ``spherical`` (one sd per component)."""
        from bayesgmm.core.families import family

        if self.orientation != "I":
            return family("full")
        return family("spherical" if self.shape == "I" else "diag")

    @property
    def sd_dims(self) -> tuple[str, ...]:
        """Dims of the ``sds`` deterministic (every feature of every component)."""
        return ("component", "feature")

    @property
    def corr_dims(self) -> tuple[str, ...] | None:
        """Leading dims of the LKJ correlation (``()`` shared, None: none)."""
        if not self.lkj:
            return None
        return ("component",) if self.orientation == "V" else ()

    # -- layout ------------------------------------------------------------------------ #
    def n_parameters(self, n_components: int, n_features: int) -> int:
        """mclust's ``nVarParams``: volumes, shapes (``d - 1`` each) and orientations
        (``d (d - 1) / 2`` each), one per component when varying, one when equal."""
        count = {"I": 0, "E": 1, "V": n_components}
        d = n_features
        return (
            count[self.volume]
            + count[self.shape] * (d - 1)
            + count[self.orientation] * (d * (d - 1) // 2)
        )

    def min_component_size(self, n_features: int) -> int:
        """1 when the covariance is shared; ``D + 1`` when a component's own shape comes
        with a non-trivial orientation (EVE, VVE, EVV: with fewer points its scatter is
        singular and its shape can collapse onto it); 2 otherwise (a volume or
        axis-aligned variances of its own)."""
        if not self.per_component:
            return 1
        if self.shape == "V" and self.orientation != "I":
            return n_features + 1
        return 2

    def check_n_features(self, n_features: int) -> None:
        if self.univariate and n_features != 1:
            raise ConfigError(
                f"covariance_type {self.name!r} is mclust's univariate model (one feature); "
                f"the data have {n_features}. Use {self.structure!r}, its multivariate form."
            )

    # -- EM ----------------------------------------------------------------------------- #
    def _constrained(self, S, m, previous) -> np.ndarray:
        """The M-step's covariances ``(G, d, d)`` from stacked ``previous`` ones (or None);
        NaN where they do not exist (a singular scatter in maximum likelihood: the caller
        reports or re-seeds them)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            try:
                return self._solve(S, m, previous)
            except (np.linalg.LinAlgError, DegenerateFitError):
                return np.full(S.shape, np.nan)

    def ml_covariance(self, scatter, N, safe_n, reg_covar, collapse_var, n_features, previous=None):
        """The family's maximum likelihood covariances (see the module docstring), with
        ``reg_covar`` on the diagonal, and the mask of collapsed (or non-finite) ones."""
        D = n_features
        counts = safe_n if self.per_component else np.array([N.sum()])
        cov = self._constrained(self.stack(scatter), counts, self._stacked(previous))
        bad = ~np.isfinite(cov).all(axis=(1, 2))
        cov[bad] = np.eye(D)  # flagged: EM re-seeds it
        singular = bad | (np.linalg.eigvalsh(cov)[:, 0] <= collapse_var)
        cov[:, np.arange(D), np.arange(D)] += reg_covar
        return self.unstack(cov), singular

    def map_covariance(self, scatter, N, terms: CovPriorTerms, previous=None):
        """The MAP covariances: the maximum likelihood M-step on ``S_k + pseudo_scatter``
        and ``N_k + count`` (:mod:`bayesgmm.core.cov_priors`)."""
        S = self.stack(scatter) + terms.pseudo_scatter
        counts = (N if self.per_component else np.array([N.sum()])) + terms.count
        return self.unstack(self._constrained(S, counts, self._stacked(previous)))

    def _stacked(self, cov: np.ndarray | None) -> np.ndarray | None:
        return None if cov is None else self.stack(cov)

    def prior_terms(self, psi: np.ndarray, nu: float) -> CovPriorTerms:
        """Inverse-Wishart on each distinct covariance matrix; with the identity orientation
        the diagonal families' inverse-gamma priors on its variances (on its one variance
        when the shape is the identity too)."""
        if self.orientation == "I":
            return DiagonalMatrixTerms(psi, nu, isotropic=self.shape == "I")
        return InverseWishartTerms(psi, nu)


def constrained_covariances(structure: str, S, m, previous=None) -> np.ndarray:
    """The maximiser of ``Q`` (module docstring) over the family ``structure``.

    Parameters
    ----------
    structure : str
        Three letters, e.g. ``'VEV'``; for a shared family (EII, EEI, EEE) give one
        pooled scatter matrix.
    S : ndarray of shape (G, d, d)
        Scatter matrices (positive semi-definite).
    m : ndarray of shape (G,)
        Counts.
    previous : ndarray of shape (G, d, d), optional
        Current covariances, where the iterative M-steps start.

    Examples
    --------
    >>> import numpy as np
    >>> S = np.stack([np.diag([4.0, 1.0]), np.diag([1.0, 4.0])])
    >>> constrained_covariances("EEI", S.sum(0, keepdims=True), np.array([4.0]))[0]
    array([[1.25, 0.  ],
           [0.  , 1.25]])
    """
    S, m = np.asarray(S, dtype=float), np.asarray(m, dtype=float)
    previous = None if previous is None else np.asarray(previous, dtype=float)
    return EigenFamily(structure)._constrained(S, m, previous)


# --------------------------------------------------------------------------- #
# The M-steps, on scatter S (G, d, d) and counts m (G,); previous (G, d, d) or None
# --------------------------------------------------------------------------- #


def _geomean(x: np.ndarray) -> np.ndarray:
    return np.exp(np.mean(np.log(x), axis=-1))


def _diagonal(values: np.ndarray) -> np.ndarray:
    """``(G, d)`` -> ``(G, d, d)`` diagonal matrices."""
    d = values.shape[-1]
    out = np.zeros((*values.shape, d))
    out[..., np.arange(d), np.arange(d)] = values
    return out


def _rotate(vectors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``D_k diag(values_k) D_k^T`` for vectors (d, d) shared or (G, d, d), symmetrised."""
    V = np.broadcast_to(vectors, (values.shape[0], *vectors.shape[-2:]))
    out = np.einsum("kij,kj,klj->kil", V, values, V)
    return 0.5 * (out + out.transpose(0, 2, 1))


def _eigh_desc(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, V = np.linalg.eigh(S)
    return np.maximum(w[..., ::-1], 0.0), V[..., ::-1]


def _normalised(values: np.ndarray) -> np.ndarray:
    return values / _geomean(values)[..., None]


def _vii(S, m, previous):
    d = S.shape[-1]
    return np.trace(S, axis1=1, axis2=2)[:, None, None] / (d * m[:, None, None]) * np.eye(d)


def _vvi(S, m, previous):
    return _diagonal(np.diagonal(S, axis1=1, axis2=2) / m[:, None])


def _vvv(S, m, previous):
    return S / m[:, None, None]


def _evi(S, m, previous):
    B = np.diagonal(S, axis1=1, axis2=2)
    g = _geomean(B)
    return _diagonal(g.sum() / m.sum() * B / g[:, None])


def _eev(S, m, previous):
    w, L = _eigh_desc(S)
    return _rotate(L, np.broadcast_to(w.sum(axis=0) / m.sum(), w.shape))


def _evv(S, m, previous):
    sign, logdet = np.linalg.slogdet(S)
    g = np.where(sign > 0, np.exp(logdet / S.shape[-1]), 0.0)  # |S_k|^(1/d)
    cov = S * (g.sum() / m.sum() / g)[:, None, None]
    return 0.5 * (cov + cov.transpose(0, 2, 1))


def _volumes_shape(omega, m, shape, max_iter=MAX_INNER):
    """VEI / VEV: volumes ``lambda_k`` and one shape ``A`` for eigenvalues ``omega``
    (G, d), from the shape ``A`` (mclust's ``msvei`` / ``msvev`` iteration)."""
    d = omega.shape[1]
    lam = (omega / shape).sum(axis=1) / (d * m)
    for _ in range(max_iter):
        new_shape = _normalised((omega / lam[:, None]).sum(axis=0))
        new_lam = (omega / new_shape).sum(axis=1) / (d * m)
        err = max(
            np.max(np.abs(new_shape - shape) / (1.0 + new_shape)),
            np.max(np.abs(new_lam - lam) / (1.0 + new_lam)),
        )
        shape, lam = new_shape, new_lam
        if not err > _TOL:  # also stops on NaN
            break
    return lam, shape


def _vei(S, m, previous):
    B = np.diagonal(S, axis1=1, axis2=2)
    start = B.sum(axis=0) if previous is None else np.diagonal(previous[0])
    lam, shape = _volumes_shape(B, m, _normalised(start))
    return _diagonal(lam[:, None] * shape)


def _vev(S, m, previous):
    w, L = _eigh_desc(S)
    start = w.sum(axis=0) if previous is None else _eigh_desc(previous[0])[0]
    lam, shape = _volumes_shape(w, m, _normalised(start))
    return _rotate(L, lam[:, None] * shape)


def _converged(q: float, q_prev: float) -> bool:
    """mclust's inner test, ``|q - q_prev| / (1 + |q|) <= tol`` (also True on NaN)."""
    return not abs(q - q_prev) / (1.0 + abs(q)) > _TOL


def _vee(S, m, previous, max_iter=MAX_INNER):
    """VEE (mclust's ``msvee``): ``C`` given the volumes, then ``lambda_k`` given ``C``."""
    d = S.shape[-1]

    def volumes(C):
        inv_chol = solve_lower_identity(np.linalg.cholesky(C)[None])[0]  # L^{-1}
        # tr(S_k C^{-1}) = tr(L^{-1} S_k L^{-T})
        return np.einsum("ij,kjl,il->k", inv_chol, S, inv_chol) / (d * m)

    def normalised(C):
        return C / math.exp(np.linalg.slogdet(C)[1] / d)

    C = normalised(S.sum(axis=0) if previous is None else previous[0])
    lam = volumes(C)
    q_prev = -math.inf
    for _ in range(max_iter):
        C = normalised((S / lam[:, None, None]).sum(axis=0))
        lam = volumes(C)
        q = -0.5 * d * float((m * (np.log(lam) + 1.0)).sum())  # Q at the volumes' optimum
        if _converged(q, q_prev):
            break
        q_prev = q
    return lam[:, None, None] * C


def _polar(F: np.ndarray) -> np.ndarray:
    """The orthogonal ``D`` minimising ``tr(F^T D)``: ``-U V^T`` for ``F = U s V^T``."""
    U, _, Vt = np.linalg.svd(F)
    return -(U @ Vt)


def _common_orientation(S, m, previous, equal_volume: bool, max_iter=MAX_INNER):
    """EVE / VVE: one orientation ``D``, each component's shape (and volume, VVE).

    Browne & McNicholas (2014): with ``B_k = (lambda_k A_k)^{-1}``, ``D`` minimises
    ``sum_k tr(S_k D B_k D^T)``; MM1 majorises it with ``S_k - omega_k I`` (``omega_k``
    the largest eigenvalue of ``S_k``), MM2 with ``B_k - beta_k I`` (``beta_k = max B_k``),
    each giving ``D`` as a polar factor. Then the eigenvalues given ``D``.
    """
    omega = np.linalg.eigvalsh(S)[:, -1]

    def eigenvalues(D):
        diag = np.einsum("ji,kjl,li->ki", D, S, D)  # diag(D^T S_k D)
        if not equal_volume:
            return diag / m[:, None]
        g = _geomean(diag)
        return (g.sum() / m.sum()) * diag / g[:, None]

    def objective(D, lam):
        diag = np.einsum("ji,kjl,li->ki", D, S, D)
        return -0.5 * float((m * np.log(lam).sum(axis=1) + (diag / lam).sum(axis=1)).sum())

    if previous is None:
        D = _eigh_desc(S.sum(axis=0))[1]
        lam = eigenvalues(D)
    else:  # the previous covariances share D: generic weights keep its eigenvalues apart
        weights = 1.0 + 0.6180339887 * np.arange(previous.shape[0])
        D = np.linalg.eigh(np.einsum("k,kij->ij", weights, previous))[1]
        lam = np.einsum("ji,kjl,li->ki", D, previous, D)
    q_prev = objective(D, lam)
    for _ in range(max_iter):
        B = 1.0 / lam
        SD = S @ D
        D = _polar(((SD - omega[:, None, None] * D) * B[:, None, :]).sum(axis=0))  # MM1
        SD = S @ D
        D = _polar((SD * (B - B.max(axis=1, keepdims=True))[:, None, :]).sum(axis=0))  # MM2
        lam = eigenvalues(D)
        q = objective(D, lam)
        if _converged(q, q_prev):
            break
        q_prev = q
    return _rotate(D, lam)


def _eve(S, m, previous):
    return _common_orientation(S, m, previous, equal_volume=True)


def _vve(S, m, previous):
    return _common_orientation(S, m, previous, equal_volume=False)


_ALGORITHMS = {
    "VII": _vii,
    "VVI": _vvi,
    "VVV": _vvv,
    "EVI": _evi,
    "VEI": _vei,
    "EEV": _eev,
    "VEV": _vev,
    "EVV": _evv,
    "VEE": _vee,
    "EVE": _eve,
    "VVE": _vve,
}
