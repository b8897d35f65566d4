"""The table of covariance families: one record per family, looked up by name.

A record knows everything that depends on the family: the layout of its covariance
parameters (scikit-learn's ``covariances_``) and how many there are, how to turn them into
full matrices and Cholesky factors, how EM updates them (maximum likelihood and MAP), the
conjugate-style prior EM uses for them, and -- declaratively, for the PyMC model in
:mod:`bayesgmm.inference.model` -- how the Bayesian model parameterises them. Everything
else in bayesgmm asks the record (``family(name).method(...)``) instead of branching on
the name, so a new family is a new record.

The families are mclust's, ``Sigma_k = lambda_k D_k A_k D_k^T`` (volume, shape,
orientation, each equal across components (E), varying (V) or the identity (I); see
:mod:`bayesgmm.core.eigen_families`). Every one has EM and a Bayesian model. Four have
scikit-learn's names; their mclust names are aliases of the same records (a fit reports
the first name):

=============== ===== ============ =====================================================
name            alias layout (K    the Bayesian model's parameters (standardised scale)
                      comps, D
                      features)
=============== ===== ============ =====================================================
full            VVV   (K, D, D)    sds (K, D); LKJ correlation per component
tied            EEE   (D, D)       sds (D,); one LKJ correlation shared by all
diag            VVI   (K, D)       sds (K, D)
spherical       VII   (K,)         sds (K,): one per component, equal over features
EII, EEI              (D, D)       volume ``volume_z`` (the geometric-mean sd), log shape
VEI, EVI, VEE,        (K, D, D)    ``shape_z`` (Helmert coordinates), and for VEE, EVV an
EVE, VVE, EEV,                     LKJ ``chol_corr``, for EVE, VVE, EEV, VEV a rotation
VEV, EVV                           ``orientation_z`` (Cayley coordinates); shared or per
                                   component as the letters say
                                   (:mod:`bayesgmm.inference.eigen_model`)
E, V                  (D, D),      mclust's univariate models (one feature; EII and VII
                      (K, D, D)    there)
=============== ===== ============ =====================================================

Factors are named for what they are (see :mod:`bayesgmm.core.gaussian`): ``chol_cov``
is the lower-triangular ``L`` with ``Sigma = L L^T`` (standard deviations for the
diagonal families), ``prec_chol`` the upper-triangular ``U = L^{-T}`` with
``Sigma^{-1} = U U^T`` (``1 / sd``). The record kinds are in
:mod:`bayesgmm.core.family_kinds` and :mod:`bayesgmm.core.eigen_families`.
"""

from __future__ import annotations

from bayesgmm.core.eigen_families import EigenFamily
from bayesgmm.core.family_kinds import CovarianceFamily, _DiagonalFamily, _MatrixFamily
from bayesgmm.exceptions import ConfigError

__all__ = [
    "COVARIANCE_TYPES",
    "EM_COVARIANCE_TYPES",
    "FAMILIES",
    "MCLUST_MODELS",
    "UNIVARIATE_MODELS",
    "CovarianceFamily",
    "family",
]

_RECORDS: tuple[CovarianceFamily, ...] = (
    _MatrixFamily("full", "VVV", per_component=True),
    _MatrixFamily("tied", "EEE", per_component=False),
    _DiagonalFamily("diag", "VVI", isotropic=False),
    _DiagonalFamily("spherical", "VII", isotropic=True),
    *(
        EigenFamily(name)
        for name in ("EII", "EEI", "VEI", "EVI", "VEE", "EVE", "VVE", "EEV", "VEV", "EVV")
    ),
    EigenFamily("E", "EII", univariate=True),
    EigenFamily("V", "VII", univariate=True),
)
#: Every accepted name (the aliases too) -> its record.
FAMILIES: dict[str, CovarianceFamily] = {f.name: f for f in _RECORDS} | {
    f.mclust: f for f in _RECORDS
}
#: scikit-learn's four families (the default list of ``bic_table``), in its order.
COVARIANCE_TYPES: tuple[str, ...] = ("full", "tied", "diag", "spherical")
#: mclust's fourteen multivariate models, in its order (``mclust.options("emModelNames")``).
MCLUST_MODELS: tuple[str, ...] = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip
#: mclust's univariate models (equal and varying variance).
UNIVARIATE_MODELS: tuple[str, ...] = ("E", "V")
#: Every accepted name (fit_em, bic_table, BayesianGMM, specs, the CLI): scikit-learn's
#: four, mclust's fourteen (VVV, EEE, VVI, VII the four's aliases), the univariate E, V.
EM_COVARIANCE_TYPES: tuple[str, ...] = COVARIANCE_TYPES + MCLUST_MODELS + UNIVARIATE_MODELS


def family(name: str) -> CovarianceFamily:
    """The record of the family ``name``; ConfigError naming the valid names otherwise.

    Examples
    --------
    >>> family("tied").layout(3, 2), family("tied").n_parameters(3, 2)
    ((2, 2), 3)
    >>> family("VVV") is family("full"), family("VEV").n_parameters(3, 2)
    (True, 7)
    >>> family("ful")
    Traceback (most recent call last):
    ...
    bayesgmm.exceptions.ConfigError: unknown covariance_type 'ful'; valid: ['full', ...
    """
    if isinstance(name, CovarianceFamily):
        return name
    try:
        return FAMILIES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown covariance_type {name!r}; valid: {list(COVARIANCE_TYPES)} and mclust's "
            f"{list(MCLUST_MODELS + UNIVARIATE_MODELS)} (VVV, EEE, VVI, VII are the first four)"
        ) from None
