"""NUTS sampling started from the EM solution.

First the sampler's coordinates are set from the EM solution
(:func:`~bayesgmm.inference.coordinates.set_coordinate_units`: every unconstrained
coordinate in units of its standard error, for every backend). Every chain starts at the
EM MAP solution, jittered per chain by a small Gaussian in those coordinates (log sds,
simplex-transformed weights, ..., over their units), and the start reaches the sampler
for each backend: ``numpyro`` runs through :mod:`bayesgmm.inference.jaxnuts`
(NumPyro's NUTS on PyMC's log density, started at the per-chain unconstrained points,
with one compiled sampler reused for every model of the same structure); ``pymc`` and
``blackjax`` take per-chain ``initvals`` in ``pm.sample`` without PyMC's own
uniform(-1, 1) jitter; ``nutpie`` takes one shared start (it adds no jitter of its own
here).
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bayesgmm._logging import logger
from bayesgmm.core.config import DENSE_MAX_PARAMETERS, SamplerConfig
from bayesgmm.core.predict import draw_log_densities
from bayesgmm.core.spec import GMMSpec
from bayesgmm.inference.coordinates import set_coordinate_units
from bayesgmm.inference.starts import em_start, jittered_starts, jittered_unconstrained_starts

__all__ = ["dense_mass", "pointwise_log_likelihood", "sample_posterior"]

_NUTPIE_COMPILE: dict[str, Any] = {"backend": "numba"}
_JAX_NUTS_KWARGS: dict[str, Any] = {"chain_method": "parallel"}  # blackjax via pm.sample


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
    X = np.asarray(model["data"].get_value())
    ll = draw_log_densities(posterior, X)
    coords = {"chain": posterior["chain"], "draw": posterior["draw"], "obs": np.arange(len(X))}
    return xr.Dataset({"x": (("chain", "draw", "obs"), ll)}, coords=coords)


def dense_mass(n_parameters: int, config: SamplerConfig) -> bool:
    """Whether to adapt a dense mass matrix: ``config.mass_matrix``, with ``"auto"``
    dense up to :data:`~bayesgmm.core.config.DENSE_MAX_PARAMETERS` unconstrained
    parameters."""
    if config.mass_matrix == "auto":
        return n_parameters <= DENSE_MAX_PARAMETERS
    return config.mass_matrix == "dense"


def sample_posterior(
    model: pm.Model,
    spec: GMMSpec,
    em,
    config: SamplerConfig,
    enough: Callable[[xr.DataTree], bool] | None = None,
) -> xr.DataTree:
    """Run NUTS from the EM start and return a DataTree with the pointwise log-likelihood.

    Groups: ``posterior``, ``sample_stats``, ``log_likelihood``, ``observed_data``
    (plus ``constant_data``), with dims ``chain``, ``draw``, ``component``, ``feature``,
    ``feature_bis`` and ``obs``. With ``config.target_ess`` set, ``enough`` (a check of
    the draws so far) decides whether the ``numpyro`` backend draws another round.

    Sets ``model``'s coordinate units from ``em`` first
    (:func:`~bayesgmm.inference.coordinates.set_coordinate_units`), so the jitter
    ``config.jitter`` is in units of :data:`~bayesgmm.inference.coordinates.POSTERIOR_SD`
    standard errors.
    """
    sampler = config.resolved_sampler()
    rng = np.random.default_rng(config.random_seed)
    start = em_start(em, spec)
    set_coordinate_units(model, spec, em, start)  # before the starts are mapped to them
    if sampler == "numpyro":
        from bayesgmm.inference.jaxnuts import sample_numpyro

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
                workers=config.workers(),
                dense_mass=dense_mass(sum(np.size(v) for v in points[0].values()), config),
                enough=enough if config.target_ess is not None else None,
                max_time=config.max_time,
            )
        return _finish(idata, model, sampler)
    starts = jittered_starts(model, start, config.chains, config.jitter, rng)
    seed = int(rng.integers(2**31 - 1))
    kwargs: dict[str, Any] = {}
    if sampler == "pymc":
        kwargs.update(init="adapt_diag", initvals=starts, cores=_pymc_cores(config.workers()))
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


def _pymc_cores(workers: int) -> int:
    """Processes for PyMC's chains: ``workers``, but one (the chains in this process, one
    after the other) once JAX is loaded here. PyMC forks its chain processes on Linux, and
    forking a process whose JAX threads run is unsafe (it may deadlock; a same-seed fit
    was seen to differ from another in the 12th digit); its other start methods need the
    user's script to guard its main code with ``if __name__ == "__main__"``."""
    if workers > 1 and "jax" in sys.modules:
        logger.info("JAX is loaded in this process: PyMC's chains run one after the other")
        return 1
    return workers


def _finish(idata: xr.DataTree, model: pm.Model, sampler: str) -> xr.DataTree:
    if "log_likelihood" not in idata.children:
        idata["log_likelihood"] = pointwise_log_likelihood(model, idata["posterior"].to_dataset())
    idata.attrs["nuts_sampler"] = sampler
    if "background" in model.named_vars:  # its density, for predictions (core.draws)
        idata["posterior"].attrs["background"] = float(model["background"].get_value())
    return idata
