"""NUTS sampling started from the EM solution.

Every chain starts at the EM MAP solution, jittered per chain by a small Gaussian on
the *unconstrained* scale (log sds, simplex-transformed weights, ...), and the start
reaches the sampler for each backend: ``numpyro`` runs through :mod:`bayesgmm.jaxnuts`
(NumPyro's NUTS on PyMC's log density, started at the per-chain unconstrained points,
with one compiled sampler reused for every model of the same structure); ``pymc`` and
``blackjax`` take per-chain ``initvals`` in ``pm.sample`` without PyMC's own
uniform(-1, 1) jitter; ``nutpie`` takes one shared start (it adds no jitter of its own
here).
"""

from __future__ import annotations

import importlib.util
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import pymc as pm
import pytensor.tensor as pt
import xarray as xr

from bayesgmm.exceptions import ConfigError
from bayesgmm.model import GMMSpec

__all__ = [
    "NUTS_SAMPLERS",
    "SamplerConfig",
    "available_samplers",
    "em_start",
    "jittered_starts",
    "sample_posterior",
]

NUTS_SAMPLERS = ("auto", "pymc", "nutpie", "numpyro", "blackjax")
_MODULE_OF = {"pymc": "pymc", "nutpie": "nutpie", "numpyro": "numpyro", "blackjax": "blackjax"}
# Preference order for "auto", from bench/bench_sampling.py (N=1,000, K=3, D=2, 4 chains x
# 1,000 tune + 1,000 draws, one process, 2 shared cores, compile included): ESS/s numpyro
# 56.2, pymc 33.4, nutpie 9.2 (wall 56 s, 91 s, 363 s; min bulk ESS 3,120 / 3,035 / 3,328;
# R-hat <= 1.003 for all). The model compiles in seconds with JAX; numba took minutes.
_AUTO_ORDER = ("numpyro", "pymc", "nutpie")
_NUTPIE_COMPILE: dict[str, Any] = {"backend": "numba"}
_JAX_NUTS_KWARGS: dict[str, Any] = {"chain_method": "parallel"}  # blackjax via pm.sample


def available_samplers() -> list[str]:
    """NUTS backends importable in this environment.

    Examples
    --------
    >>> "pymc" in available_samplers()
    True
    """
    return [s for s, mod in _MODULE_OF.items() if importlib.util.find_spec(mod) is not None]


def config_from_mapping(cls, d, what: str):
    """``cls`` (a settings dataclass with ``validate()``) from a mapping merged over its
    defaults; unknown keys and bad values raise ConfigError naming ``what`` settings."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{what} settings must be a dict; got {type(d).__name__}.")
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(d) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {unknown}; valid: {valid}")
    cfg = cls(**{**asdict(cls()), **dict(d)})
    cfg.validate()
    return cfg


@dataclass(frozen=True)
class SamplerConfig:
    """Sampler settings.

    Parameters
    ----------
    draws, tune : int
        Posterior draws kept and tuning (warm-up) draws discarded, per chain.
    chains : int
    target_accept : float in (0, 1)
    nuts_sampler : {"auto", "pymc", "nutpie", "numpyro", "blackjax"}
        ``"auto"`` picks the fastest installed backend, in the order NumPyro, PyMC's
        own NUTS, nutpie (measured by ``bench/bench_sampling.py``, see ``_AUTO_ORDER``).
    random_seed : int, optional
    progressbar : bool
    cores : int, optional
        Parallel chains for the ``pymc`` backend (default: PyMC's choice).
    jitter : float
        Standard deviation of the per-chain Gaussian jitter around the EM start, on the
        unconstrained scale. 0 starts every chain exactly at the EM solution.

    Examples
    --------
    >>> SamplerConfig.from_dict({"draws": 500, "chains": 2}).draws
    500
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    target_accept: float = 0.9
    nuts_sampler: str = "auto"
    random_seed: int | None = None
    progressbar: bool = True
    cores: int | None = None
    jitter: float = 0.05

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | SamplerConfig | None) -> SamplerConfig:
        """Merge ``d`` over the defaults, rejecting unknown keys and bad values."""
        if d is None:
            return cls()
        if isinstance(d, SamplerConfig):
            return d
        return config_from_mapping(cls, d, "sampler")

    def to_dict(self) -> dict[str, Any]:
        """Plain serialisable form."""
        return asdict(self)

    def validate(self) -> None:
        """Raise ConfigError listing every out-of-range setting."""
        errors = []

        def is_int(v):
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        for name, lo in (("draws", 1), ("tune", 0), ("chains", 1)):
            v = getattr(self, name)
            if not is_int(v) or v < lo:
                errors.append(f"{name} must be an integer >= {lo}; got {v!r}")
        if not isinstance(self.target_accept, float | int) or not 0 < self.target_accept < 1:
            errors.append(f"target_accept must be in (0, 1); got {self.target_accept!r}")
        if self.nuts_sampler not in NUTS_SAMPLERS:
            errors.append(
                f"nuts_sampler must be one of {list(NUTS_SAMPLERS)}; got {self.nuts_sampler!r}"
            )
        elif self.nuts_sampler != "auto" and self.nuts_sampler not in available_samplers():
            errors.append(
                f"nuts_sampler={self.nuts_sampler!r} is not installed here; installed: "
                f"{available_samplers()} (pip install 'bayesgmm[jax]' or 'bayesgmm[nutpie]')"
            )
        if self.random_seed is not None and (not is_int(self.random_seed) or self.random_seed < 0):
            errors.append(
                f"random_seed must be a non-negative integer or None; got {self.random_seed!r}"
            )
        if self.cores is not None and (not is_int(self.cores) or self.cores < 1):
            errors.append(f"cores must be a positive integer or None; got {self.cores!r}")
        if not isinstance(self.jitter, float | int) or not 0 <= self.jitter <= 1:
            errors.append(f"jitter must be in [0, 1]; got {self.jitter!r}")
        if errors:
            raise ConfigError("invalid sampler settings:\n  - " + "\n  - ".join(errors))

    def resolved_sampler(self) -> str:
        """The backend that will actually run."""
        if self.nuts_sampler != "auto":
            return self.nuts_sampler
        have = available_samplers()
        return next(s for s in _AUTO_ORDER if s in have)


def em_start(em, spec: GMMSpec) -> dict[str, np.ndarray]:
    """The EM solution as constrained start values for the model's free variables.

    Parameters
    ----------
    em : EMResult
        Needs ``weights`` (K,), ``means`` (K, D) and ``covariance_matrices()`` (K, D, D).
    spec : GMMSpec
    """
    K, D, ct = spec.n_components, spec.n_features, spec.covariance_type
    scale = spec.scale
    weights = np.clip(np.asarray(em.weights, dtype=float), 1e-6, None)
    start: dict[str, np.ndarray] = {
        "weights": weights / weights.sum(),
        "means_z": (np.asarray(em.means) - spec.loc) / scale,
    }
    cov_z = np.asarray(em.covariance_matrices()) / np.outer(scale, scale)[None]
    sds_z = np.sqrt(np.diagonal(cov_z, axis1=-2, axis2=-1))  # (K, D)
    if ct == "spherical":
        start["sds_z"] = sds_z.mean(axis=1)
    elif ct == "tied":
        start["sds_z"] = sds_z[0]
    else:
        start["sds_z"] = sds_z
    if spec.has_corr:
        corr = cov_z / (sds_z[:, :, None] * sds_z[:, None, :])
        chol_corr = np.linalg.cholesky(corr)
        start["chol_corr"] = chol_corr[0] if ct == "tied" else chol_corr
    assert start["weights"].shape == (K,) and start["means_z"].shape == (K, D)
    return start


def jittered_starts(
    model: pm.Model, start: Mapping[str, np.ndarray], chains: int, jitter: float, rng
) -> list[dict[str, np.ndarray]]:
    """Per-chain starts: ``start`` plus N(0, jitter²) noise on the unconstrained scale."""
    out = []
    for point in jittered_unconstrained_starts(model, start, chains, jitter, rng):
        constrained = {}
        for rv in model.free_RVs:
            value = model.rvs_to_values[rv]
            tr = model.rvs_to_transforms.get(rv)
            u = point[value.name]
            if tr is None:
                constrained[rv.name] = u
            else:
                constrained[rv.name] = tr.backward(pt.as_tensor(u), *rv.owner.inputs).eval()
        out.append(constrained)
    return out


def jittered_unconstrained_starts(
    model: pm.Model, start: Mapping[str, np.ndarray], chains: int, jitter: float, rng
) -> list[dict[str, np.ndarray]]:
    """As :func:`jittered_starts`, keyed by value-variable name on the unconstrained scale.

    (``weights_simplex__``, ``sds_z_log__``, ...: what a sampler's state holds.)
    """
    unconstrained = {}
    for rv in model.free_RVs:
        tr = model.rvs_to_transforms.get(rv)
        value = np.asarray(start[rv.name], dtype=float)
        if tr is not None:
            value = tr.forward(pt.as_tensor(value), *rv.owner.inputs).eval()
        unconstrained[model.rvs_to_values[rv].name] = np.asarray(value, dtype=float)
    return [
        {name: u + jitter * rng.standard_normal(np.shape(u)) for name, u in unconstrained.items()}
        for _ in range(chains)
    ]


def pointwise_log_likelihood(model: pm.Model, posterior: xr.Dataset) -> xr.Dataset:
    """Pointwise log-likelihood of the observed data for every posterior draw.

    Evaluates the mixture density of the model's data at each draw's ``weights``,
    ``means`` and ``covariance`` (numpy, Cholesky factors, log space), which equals the
    model's ``x`` log-probability (tested against it and against scipy). It replaces
    ``pm.compute_log_likelihood``, which fails in pymc 6.4 for models with ``LKJCorr``
    (its untransformed value variable is renamed ``<name>_cholesky``), and needs no
    compilation.

    Returns
    -------
    Dataset with variable ``x``, dims (chain, draw, obs).
    """
    from bayesgmm.predict import draw_log_densities

    X = np.asarray(model["data"].get_value())
    ll = draw_log_densities(posterior, X)
    coords = {"chain": posterior["chain"], "draw": posterior["draw"], "obs": np.arange(len(X))}
    return xr.Dataset({"x": (("chain", "draw", "obs"), ll)}, coords=coords)


def sample_posterior(model: pm.Model, spec: GMMSpec, em, config: SamplerConfig) -> xr.DataTree:
    """Run NUTS from the EM start and return a DataTree with the pointwise log-likelihood.

    Groups: ``posterior``, ``sample_stats``, ``log_likelihood``, ``observed_data``
    (plus ``constant_data``), with dims ``chain``, ``draw``, ``component``, ``feature``,
    ``feature_bis`` and ``obs``.
    """
    sampler = config.resolved_sampler()
    rng = np.random.default_rng(config.random_seed)
    start = em_start(em, spec)
    if sampler == "numpyro":
        from bayesgmm.jaxnuts import sample_numpyro

        points = jittered_unconstrained_starts(model, start, config.chains, config.jitter, rng)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
            idata = sample_numpyro(
                model,
                spec,
                points,
                draws=config.draws,
                tune=config.tune,
                target_accept=config.target_accept,
                random_seed=int(rng.integers(2**31 - 1)),
                progressbar=config.progressbar,
            )
        return _finish(idata, model, sampler)
    starts = jittered_starts(model, start, config.chains, config.jitter, rng)
    seed = int(rng.integers(2**31 - 1))
    kwargs: dict[str, Any] = {}
    if sampler == "pymc":
        kwargs.update(init="adapt_diag", initvals=starts, cores=config.cores)
    elif sampler == "blackjax":
        kwargs.update(initvals=starts, nuts={"jitter": False, **_JAX_NUTS_KWARGS})
    else:  # nutpie takes one start for all chains
        kwargs.update(initvals=starts[0], compile_kwargs={"jitter_rvs": set(), **_NUTPIE_COMPILE})
    # the JAX samplers' graph rewrites can rename model variables in place (seen with
    # pymc 6.4: chol_corr -> chol_corr_cholesky); remember and restore the names
    names = {var: var.name for var in model.named_vars.values()}
    with model, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
        idata = pm.sample(
            draws=config.draws,
            tune=config.tune,
            chains=config.chains,
            target_accept=config.target_accept,
            random_seed=seed,
            progressbar=config.progressbar,
            nuts_sampler=sampler,
            compute_convergence_checks=False,
            **kwargs,
        )
        renamed = {var.name: name for var, name in names.items() if var.name != name}
        for var, name in names.items():
            var.name = name
        if renamed:
            for group in ("posterior", "sample_stats"):
                if group in idata.children:
                    ds = idata[group].to_dataset()
                    idata[group] = ds.rename({k: v for k, v in renamed.items() if k in ds})
    return _finish(idata, model, sampler)


def _finish(idata: xr.DataTree, model: pm.Model, sampler: str) -> xr.DataTree:
    if "log_likelihood" not in idata.children:
        idata["log_likelihood"] = pointwise_log_likelihood(model, idata["posterior"].to_dataset())
    idata.attrs["nuts_sampler"] = sampler
    return idata
