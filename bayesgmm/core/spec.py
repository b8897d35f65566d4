"""The model's specification: what is needed to (re)build it, independent of the data values.

:func:`make_spec` validates the data and the priors once and returns the specification
the EM start, the PyMC model (:mod:`bayesgmm.inference.model`) and saved models share.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bayesgmm.core.data import check_data, check_sample_weight
from bayesgmm.core.families import CovarianceFamily, family
from bayesgmm.core.priors import ResolvedPriors, data_scale, resolve_priors

__all__ = ["GMMSpec", "make_spec"]


@dataclass(frozen=True)
class GMMSpec:
    """Everything needed to (re)build the model, independent of the data values.

    Attributes
    ----------
    n_components, n_features : int
    covariance_type : str
    feature_names : list of str
    loc, scale : ndarray of shape (n_features,)
        Internal standardisation: ``z = (x - loc) / scale``.
    priors : ResolvedPriors
        In the data's units.
    """

    n_components: int
    n_features: int
    covariance_type: str
    feature_names: list[str]
    loc: np.ndarray
    scale: np.ndarray
    priors: ResolvedPriors

    @property
    def family(self) -> CovarianceFamily:
        """The covariance family's record (:mod:`bayesgmm.core.families`)."""
        return family(self.covariance_type)

    @property
    def has_corr(self) -> bool:
        """Whether the model has an LKJ correlation (a correlated family with D > 1)."""
        return self.family.lkj and self.n_features > 1

    def coords(self, n_obs: int | None = None) -> dict[str, list]:
        """Named coordinates: ``component``, ``feature``, ``feature_bis`` (and ``obs``)."""
        coords: dict[str, list] = {
            "component": list(range(self.n_components)),
            "feature": list(self.feature_names),
            "feature_bis": list(self.feature_names),
        }
        fam, D = self.family, self.n_features
        if fam.parameterisation == "eigen":  # the eigen parameters' coordinates
            if fam.shape != "I" and D > 1:
                coords["shape_coordinate"] = list(range(D - 1))
            if fam.form == "rotation":
                coords["orientation_coordinate"] = list(range(D * (D - 1) // 2))
        if n_obs is not None:
            coords["obs"] = list(range(n_obs))
        return coords


def make_spec(
    X,
    n_components: int,
    covariance_type: str = "full",
    priors=None,
    feature_names: Sequence[str] | None = None,
    sample_weight=None,
    missing: str = "error",
) -> tuple[np.ndarray, GMMSpec]:
    """Validate data and priors and return ``(X, spec)``.

    ``sample_weight`` (frequency weights of the rows, optional; checked by
    :func:`~bayesgmm.core.data.check_sample_weight`) weights the data's location and
    scale and the priors' data-scaled defaults, as for the rows repeated. With
    ``missing="marginalize"`` NaN entries are missing values, left out of those moments.

    Examples
    --------
    >>> from bayesgmm.core.datasets import load_faithful
    >>> X, spec = make_spec(load_faithful(), 2)
    >>> spec.feature_names, X.shape
    (['eruptions', 'waiting'], (272, 2))
    """
    fam = family(covariance_type)
    X, names = check_data(
        X, n_components=n_components, feature_names=feature_names, missing=missing
    )
    w = check_sample_weight(sample_weight, X, n_components)
    rp = resolve_priors(priors, X, n_components, fam.name, w)
    loc, scale = data_scale(X, fam.name, w)
    spec = GMMSpec(
        n_components=int(n_components),
        n_features=X.shape[1],
        covariance_type=fam.name,
        feature_names=names,
        loc=loc,
        scale=scale,
        priors=rp,
    )
    return X, spec
