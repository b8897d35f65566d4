"""Prior configuration: validated, serialisable prior objects with data-scaled defaults.

The model has four prior slots:

=========  ===========================================  =====================================
key        distributions allowed (parameters)           default
=========  ===========================================  =====================================
weights    ``Dirichlet(a)``                             ``a = 1`` (uniform on the simplex)
means      ``Normal(mu, sigma)``                        ``mu`` = column means,
                                                        ``sigma`` = 2 x column sds
sds        ``HalfNormal(sigma)``,                       ``HalfNormal(sigma = column sds)``
           ``HalfStudentT(nu, sigma)``
corr       ``LKJ(eta)``                                 ``eta = 2``
shape      ``ZeroSumNormal(mu, sigma)``                 ``mu`` = the columns' log variances
                                                        (centred; zeros for EVE, VVE, EEV,
                                                        VEV), ``sigma = sqrt(1 + their
                                                        variance)``
=========  ===========================================  =====================================

``sds`` are the component standard deviations (per feature; one per component for the
``spherical`` family, shared by all components for ``tied``); ``corr`` is the LKJ prior on
each component's correlation matrix (``full``) or the shared one (``tied``).

mclust's other families (:mod:`bayesgmm.core.eigen_families`) are parameterised by
volume, shape and orientation (:mod:`bayesgmm.core.eigen_params`): there ``sds`` is the
prior on each component's geometric-mean sd ``|Sigma_k|^(1/(2d))`` (its ``sigma`` the
geometric mean of the per-feature values); ``shape`` the zero-sum Normal on the log shape
(the log eigenvalues of ``Sigma_k / |Sigma_k|^(1/d)`` for EVE, VVE, EEV, VEV, the log of
its normalised diagonal otherwise; ``mu`` is centred, only its differences matter);
``corr`` the LKJ prior on the correlation of VEE's and EVV's unit-determinant part. The
orientation's prior is uniform over rotations (Haar), with no parameters.

Parameters given as ``"auto"`` are filled from the data, so the default priors are
weakly informative on the data's own scale: multiplying the data by 1e6 multiplies every
default location and scale by 1e6.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayesgmm.core.families import family
from bayesgmm.exceptions import ConfigError

__all__ = [
    "Prior",
    "ResolvedPriors",
    "component_variance",
    "data_scale",
    "default_priors",
    "resolve_priors",
]

# slot -> {distribution: (required params, optional params with defaults)}
_ALLOWED: dict[str, dict[str, tuple[tuple[str, ...], dict[str, Any]]]] = {
    "weights": {"Dirichlet": (("a",), {})},
    "means": {"Normal": (("mu", "sigma"), {})},
    "sds": {"HalfNormal": (("sigma",), {}), "HalfStudentT": (("sigma",), {"nu": 3.0})},
    "corr": {"LKJ": (("eta",), {})},
    "shape": {"ZeroSumNormal": (("mu", "sigma"), {})},
}
# parameters that must be strictly positive
_POSITIVE = {"a", "sigma", "nu", "eta"}
# parameters that may be "auto" (filled from the data)
_AUTO_KEYS = (
    ("means", "mu"),
    ("means", "sigma"),
    ("sds", "sigma"),
    ("shape", "mu"),
    ("shape", "sigma"),
)
_AUTO_PARAMS = tuple(f"{k}.{n}" for k, n in _AUTO_KEYS)


@dataclass(frozen=True)
class Prior:
    """A named distribution with its parameters, e.g. ``Prior("HalfNormal", sigma=2.0)``.

    Parameters may be floats, sequences (per component for ``a``, per feature for
    ``mu``/``sigma``) or ``"auto"`` (filled from the data at fit time).

    Examples
    --------
    >>> p = Prior("Normal", mu=0.0, sigma=10.0)
    >>> p.to_dict()
    {'dist': 'Normal', 'mu': 0.0, 'sigma': 10.0}
    >>> Prior.from_dict(p.to_dict()) == p
    True
    """

    dist: str
    params: dict[str, Any] = field(default_factory=dict)

    def __init__(self, dist: str, /, **params: Any) -> None:
        object.__setattr__(self, "dist", dist)
        object.__setattr__(self, "params", {k: _plain(v) for k, v in params.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON/TOML-serialisable form ``{"dist": name, **params}``."""
        return {"dist": self.dist, **self.params}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prior:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        if "dist" not in d:
            raise ConfigError(f"a prior dict needs a 'dist' entry; got keys {sorted(d)}.")
        return cls(d.pop("dist"), **d)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"Prior({self.dist!r}{', ' if args else ''}{args})"


def _plain(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    return v


def default_priors() -> dict[str, Prior]:
    """A fresh copy of the default prior configuration (``"auto"`` = from the data).

    Examples
    --------
    >>> sorted(default_priors())
    ['corr', 'means', 'sds', 'shape', 'weights']
    """
    return {
        "weights": Prior("Dirichlet", a=1.0),
        "means": Prior("Normal", mu="auto", sigma="auto"),
        "sds": Prior("HalfNormal", sigma="auto"),
        "corr": Prior("LKJ", eta=2.0),
        "shape": Prior("ZeroSumNormal", mu="auto", sigma="auto"),
    }


@dataclass(frozen=True)
class ResolvedPriors:
    """Priors with every ``"auto"`` filled in and every parameter broadcast to its shape.

    Attributes
    ----------
    weights_a : ndarray of shape (K,)
    means_mu, means_sigma : ndarray of shape (D,)
    sds_dist : str
        ``"HalfNormal"`` or ``"HalfStudentT"``.
    sds_sigma : ndarray of shape (D,)
        Scale of the sd prior per feature (for ``spherical``, all entries equal).
    sds_nu : float
        Degrees of freedom for ``HalfStudentT`` (ignored otherwise).
    corr_eta : float
    shape_mu : ndarray of shape (D,)
        Location of the log shape (centred), in the data's units (mclust's families).
    shape_sigma : float
    config : dict
        The merged, serialisable configuration (``"auto"`` kept as given).
    """

    weights_a: np.ndarray
    means_mu: np.ndarray
    means_sigma: np.ndarray
    sds_dist: str
    sds_sigma: np.ndarray
    sds_nu: float
    corr_eta: float
    config: dict[str, dict[str, Any]]
    shape_mu: np.ndarray | None = None
    shape_sigma: float = 1.0

    def to_em_prior(self, covariance_type: str):
        """The conjugate-style prior EM uses for its MAP M-step (see :class:`EMPrior`).

        Weights and means priors are used as they are; the covariance prior becomes an
        inverse-Wishart with ``nu = D + 2`` whose scale matches the sd prior's scale
        (``Psi = diag(sigma_sd**2) / K**(2/D)``, as mclust's ``priorControl`` does).
        """
        from bayesgmm.core.em_prior import EMPrior

        K = self.weights_a.shape[0]
        D = self.means_mu.shape[0]
        return EMPrior(
            weight_concentration=self.weights_a.copy(),
            mean_loc=self.means_mu.copy(),
            mean_scale=self.means_sigma.copy(),
            cov_dof=float(D + 2),
            cov_scale=np.diag(component_variance(self.sds_sigma**2, K)),
        )


def _merge(user: Mapping[str, Any] | None) -> tuple[dict[str, dict[str, Any]], list[str]]:
    merged = {k: p.to_dict() for k, p in default_priors().items()}
    errors: list[str] = []
    if user is None:
        return merged, errors
    if not isinstance(user, Mapping):
        raise ConfigError(f"priors must be a dict of Prior objects; got {type(user).__name__}.")
    for key, value in user.items():
        if key not in _ALLOWED:
            errors.append(f"unknown prior {key!r}; valid names are {sorted(_ALLOWED)}")
            continue
        if isinstance(value, Prior):
            merged[key] = value.to_dict()
        elif isinstance(value, Mapping):
            value = dict(value)
            if "dist" in value and value["dist"] != merged[key]["dist"]:
                merged[key] = value  # a new distribution: its own params only
            else:
                merged[key] = {**merged[key], **value}  # override some parameters
        else:
            errors.append(
                f"prior {key!r} must be a Prior or a dict like {default_priors()[key].to_dict()}; "
                f"got {value!r}"
            )
    return merged, errors


def _param_array(key, name, value, shape, auto, errors) -> np.ndarray | None:
    if isinstance(value, str):
        if value == "auto" and auto is not None:
            return np.broadcast_to(np.asarray(auto, dtype=float), shape).copy()
        if value == "auto":
            errors.append(
                f"{key}.{name} cannot be 'auto' (read from the data); give a number"
                + (" or a list" if shape else "")
                + f". 'auto' is available for {', '.join(_AUTO_PARAMS)}"
            )
        else:
            allowed = "a number, a list or 'auto'" if (key, name) in _AUTO_KEYS else "a number"
            if shape and (key, name) not in _AUTO_KEYS:
                allowed = "a number or a list"
            errors.append(f"{key}.{name} must be {allowed}; got {value!r}")
        return None
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        errors.append(f"{key}.{name} must be numeric; got {value!r}")
        return None
    try:
        arr = np.broadcast_to(arr, shape).copy()
    except ValueError:
        errors.append(f"{key}.{name} has shape {arr.shape}; expected a scalar or shape {shape}")
        return None
    if not np.all(np.isfinite(arr)):
        errors.append(f"{key}.{name} must be finite; got {value!r}")
        return None
    if name in _POSITIVE and np.any(arr <= 0):
        errors.append(f"{key}.{name} must be > 0; got {value!r}")
        return None
    return arr


def column_moments(
    X: np.ndarray, sample_weight: np.ndarray | None = None, ddof: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Column means and variances, with frequency weights when given: those of the data
    with row ``i`` repeated ``w_i`` times (``ddof`` counts against ``sum w``).

    Examples
    --------
    >>> X = np.array([[0.0], [2.0]])
    >>> [m.tolist() for m in column_moments(X, np.array([1.0, 3.0]), ddof=1)]
    [[1.5], [1.0]]
    >>> [m.tolist() for m in column_moments(np.array([[0.0], [2.0], [2.0], [2.0]]), ddof=1)]
    [[1.5], [1.0]]

    Missing values (NaN, with ``missing="marginalize"``) are left out column by column:
    each column's moments are those of its observed entries.

    >>> [m.tolist() for m in column_moments(np.array([[0.0], [np.nan], [2.0]]))]
    [[1.0], [1.0]]
    """
    if np.isnan(X).any():
        observed = ~np.isnan(X)
        w = observed * (1.0 if sample_weight is None else sample_weight[:, None])
        total = w.sum(axis=0)
        filled = np.where(observed, X, 0.0)
        mean = (w * filled).sum(axis=0) / total
        dev = np.where(observed, X - mean, 0.0)
        return mean, (w * dev**2).sum(axis=0) / (total - ddof)
    if sample_weight is None:
        return X.mean(axis=0), X.var(axis=0, ddof=ddof)
    total = sample_weight.sum()
    mean = sample_weight @ X / total
    return mean, sample_weight @ (X - mean) ** 2 / (total - ddof)


def data_scale(
    X: np.ndarray, covariance_type: str, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Location and scale used for data-scaled defaults and internal standardisation.

    Column means and sds (``ddof=0``; weighted by ``sample_weight`` when given, see
    :func:`column_moments`); for an isotropic family (``spherical``) one common scale
    (RMS of the column sds), so that a spherical covariance stays spherical after
    standardising.
    """
    loc, var = column_moments(X, sample_weight)
    sd = np.sqrt(var)
    if family(covariance_type).isotropic:
        sd = np.full_like(sd, math.sqrt(float(np.mean(sd**2))))
    return loc, sd


def component_variance(var: np.ndarray, n_components: int) -> np.ndarray:
    """The variance a component would have if K components split the data's spread evenly:
    ``var / K**(2/D)`` per feature (the scale of EM's default covariance prior and start,
    as in mclust's ``priorControl``).

    ``var`` is what the caller scales from: the columns' sample variances (``ddof=1``) for
    :meth:`EMPrior.default` and EM's starting covariances, the squared scales of the sd
    prior for the Bayesian model's EM start (:meth:`ResolvedPriors.to_em_prior`).

    Examples
    --------
    >>> component_variance(np.array([4.0, 9.0]), 4).tolist()  # K**(2/D) = 4 for D = 2
    [1.0, 2.25]
    """
    return var / n_components ** (2.0 / var.shape[0])


def resolve_priors(
    priors: Mapping[str, Any] | None,
    X: np.ndarray,
    n_components: int,
    covariance_type: str = "full",
    sample_weight: np.ndarray | None = None,
) -> ResolvedPriors:
    """Merge user priors over the defaults, validate them and fill ``"auto"`` from ``X``.

    Parameters
    ----------
    priors : dict, optional
        ``{slot: Prior | dict}``; a dict without ``"dist"`` overrides parameters of the
        default distribution (``{"means": {"sigma": 5.0}}``).
    X : ndarray of shape (n_samples, n_features)
        Validated data (used only for ``"auto"`` values).
    n_components : int
    covariance_type : str
        Any family's name.
    sample_weight : ndarray of shape (n_samples,), optional
        Frequency weights of the rows (validated): ``"auto"`` values are those of the
        data with each row repeated ``w_i`` times.

    Raises
    ------
    ConfigError
        Listing every problem at once: unknown slots or parameters, distributions not
        allowed for a slot, non-positive scales or concentrations, wrong shapes.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(50, 2)) * 1e6
    >>> rp = resolve_priors({"weights": Prior("Dirichlet", a=0.5)}, X, 3)
    >>> rp.weights_a
    array([0.5, 0.5, 0.5])
    >>> bool(rp.sds_sigma[0] > 1e5)
    True
    """
    fam = family(covariance_type)
    merged, errors = _merge(priors)
    K, D = n_components, X.shape[1]
    loc, sd = data_scale(X, covariance_type, sample_weight)
    col_var = column_moments(X, sample_weight)[1]
    auto = {
        ("means", "mu"): loc,
        ("means", "sigma"): 2.0 * sd,
        # per column, but for the isotropic families (spherical, EII, E, V); mclust's
        # EVE, VVE, EEV, VEV standardise isotropically but their sds prior (and EM's
        # prior, to_em_prior) stays on each column's scale
        ("sds", "sigma"): sd if fam.kernel.isotropic else np.sqrt(col_var),
    }
    log_var = np.log(np.maximum(col_var, np.finfo(float).tiny))
    auto[("shape", "mu")] = (
        np.zeros(D)
        if fam.parameterisation == "eigen" and fam.form == "rotation"
        else log_var - log_var.mean()
    )
    auto[("shape", "sigma")] = math.sqrt(1.0 + float(np.var(log_var)))
    shapes = {"weights": (K,), "means": (D,), "sds": (D,), "corr": (), "shape": (D,)}
    values: dict[tuple[str, str], Any] = {}
    for key, spec in merged.items():
        dist = spec.get("dist")
        allowed = _ALLOWED[key]
        if dist not in allowed:
            errors.append(
                f"prior {key!r}: distribution {dist!r} is not allowed; use one of {sorted(allowed)}"
            )
            continue
        required, optional = allowed[dist]
        params = {k: v for k, v in spec.items() if k != "dist"}
        unknown = sorted(set(params) - set(required) - set(optional))
        if unknown:
            errors.append(
                f"prior {key!r} ({dist}): unknown parameter(s) {unknown}; valid: "
                f"{sorted(set(required) | set(optional))}"
            )
        for name in required:
            if name not in params:
                errors.append(f"prior {key!r} ({dist}) needs parameter {name!r}")
        for name in (*required, *optional):
            if name in params or name in optional:
                value = params.get(name, optional.get(name))
                shape = () if name == "nu" or (key, name) == ("shape", "sigma") else shapes[key]
                values[key, name] = _param_array(
                    key, name, value, shape, auto.get((key, name)), errors
                )
    if fam.kernel.isotropic and ("sds", "sigma") in values:
        s = values["sds", "sigma"]
        if s is not None and not np.allclose(s, s[0]):
            errors.append(f"sds.sigma must be a single number for covariance_type={fam.name!r}")
    if errors:
        raise ConfigError("invalid priors:\n  - " + "\n  - ".join(errors))
    return ResolvedPriors(
        weights_a=values["weights", "a"],
        means_mu=values["means", "mu"],
        means_sigma=values["means", "sigma"],
        sds_dist=merged["sds"]["dist"],
        sds_sigma=values["sds", "sigma"],
        sds_nu=float(values.get(("sds", "nu"), np.array(3.0))),
        corr_eta=float(values["corr", "eta"]),
        config=merged,
        shape_mu=values["shape", "mu"] - values["shape", "mu"].mean(),
        shape_sigma=float(values["shape", "sigma"]),
    )
