"""The PyMC model as JAX functions of its unconstrained parameters, for NumPyro's NUTS.

:func:`model_functions` returns the log density (the model's priors, transforms and
Jacobians through PyTensor's JAX backend, plus the likelihood term from
:mod:`bayesgmm.inference.jaxlik`) and the posterior outputs (free variables and
deterministics in their constrained form). Both take the model's shared data -- the
observations, the standardisation and the priors' values -- as *arguments*, so that one
compiled program serves every dataset of the same shape.

:func:`enable_compilation_cache` turns on JAX's persistent compilation cache, so a new
process skips XLA's compilation of a program compiled before (see the README).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
import pymc as pm

from bayesgmm.core.missing import Patterns
from bayesgmm.core.spec import GMMSpec
from bayesgmm.inference.jaxlik import (
    features,
    label_offset,
    marginal_cov_param,
    mixture_loglik,
    noise_loglik,
    pointwise_loglik,
)

__all__ = ["ModelFunctions", "enable_compilation_cache", "missing_observed", "model_functions"]

#: Environment variable: "0" (or "off", "false", "no") keeps JAX's persistent cache off.
CACHE_ENV = "BAYESGMM_JAX_CACHE"
_CACHE_STATE: dict[str, Any] = {"done": False, "dir": None}


def enable_compilation_cache() -> str | None:
    """Turn on JAX's persistent compilation cache, once per process; returns its folder.

    The folder is ``$BAYESGMM_JAX_CACHE`` when that is a path, else
    ``$XDG_CACHE_HOME/bayesgmm/jax`` (``~/.cache/bayesgmm/jax``). Nothing changes when the
    variable is ``0`` / ``off``, or when JAX's own cache is configured already (e.g. by
    ``JAX_COMPILATION_CACHE_DIR``).
    """
    if _CACHE_STATE["done"]:
        return _CACHE_STATE["dir"]
    import jax

    _CACHE_STATE["done"] = True
    setting = os.environ.get(CACHE_ENV, "").strip()
    if setting.lower() in ("0", "off", "false", "no"):
        return None
    if jax.config.jax_compilation_cache_dir:  # the user (or the test suite) chose one
        _CACHE_STATE["dir"] = jax.config.jax_compilation_cache_dir
        return _CACHE_STATE["dir"]
    if setting and setting.lower() not in ("1", "on", "true", "yes"):
        folder = Path(setting).expanduser()
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        folder = Path(base) / "bayesgmm" / "jax"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home: compile every time, as without the cache
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
    _CACHE_STATE["dir"] = str(folder)
    return _CACHE_STATE["dir"]


@dataclass
class ModelFunctions:
    """JAX functions for one model structure.

    ``prepare`` turns the values of the model's shared variables (``shared_names``
    order) into the arguments ``args`` of the others, once per dataset: those values
    and the likelihood's point features.
    """

    value_names: list[str]  # the unconstrained parameters (the sampler's state)
    shared_names: list[str]  # pm.Data of the model, in the order of ``shared_values``
    out_names: list[str]
    prepare: Any  # (shared values) -> args
    logp: Any  # (params, args) -> scalar log density
    outputs: Any  # (params, args) -> constrained outputs (``out_names``), pointwise loglik


def shared_inputs(model: pm.Model, outputs) -> list:
    """The model's shared variables (``pm.Data``) the graphs ``outputs`` read, by name."""
    from pytensor.compile.sharedvalue import SharedVariable
    from pytensor.graph.traversal import graph_inputs

    found = {v.name: v for v in graph_inputs(outputs) if isinstance(v, SharedVariable)}
    if any(name is None for name in found):
        raise RuntimeError("the model has an unnamed shared variable; cannot cache it.")
    return [found[name] for name in sorted(found)]


def _jaxify(model: pm.Model, outputs, shared: Sequence):
    """JAX function of (value variables..., shared values...) -> outputs."""
    from pytensor.compile import mode as pt_mode
    from pytensor.graph import FunctionGraph
    from pytensor.graph.replace import graph_replace
    from pytensor.link.jax.dispatch import jax_funcify

    symbolic = [s.type() for s in shared]
    outs = graph_replace(list(outputs), dict(zip(shared, symbolic, strict=True)), strict=False)
    fgraph = FunctionGraph(inputs=[*model.value_vars, *symbolic], outputs=outs, clone=True)
    pt_mode.JAX.optimizer.rewrite(fgraph)
    with warnings.catch_warnings():
        # PyTensor drops the priors' parameter checks in JAX (their values are validated
        # by bayesgmm before the model is built) and says so for each; nothing to act on
        warnings.filterwarnings("ignore", message="Skipping .* as JAX tracing would remove it")
        return jax_funcify(fgraph)


def _graphs(model: pm.Model):
    from pymc.util import get_default_varnames

    x = model["x"]
    likelihood_inputs = model.replace_rvs_by_values(x.owner.inputs[-3:])  # w, mu_z, cov
    prior = model.logp(vars=model.free_RVs)
    outputs = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    extra = [model["sample_weight"]] if "sample_weight" in model.named_vars else []
    rows = ("noise_cov", "labels", "background")
    extra += [v for name, v in model.named_vars.items()
              if name.startswith("missing_rows_") or name in rows]  # fmt: skip
    shared = shared_inputs(model, [prior, *likelihood_inputs, *outputs, model["data"], *extra])
    return prior, likelihood_inputs, outputs, shared


def missing_observed(model: pm.Model) -> list[np.ndarray]:
    """The observed coordinates (bool masks, in the model's ``missing_rows_<p>`` order) of
    the missingness patterns of a model built with missing values; ``[]`` without."""
    if "missing_mask" not in model.named_vars:
        return []
    nan = np.asarray(model["missing_mask"].get_value(borrow=True)).astype(bool)
    return list(Patterns.of(np.where(nan, np.nan, 0.0)).observed)


def model_functions(model: pm.Model, spec: GMMSpec) -> tuple[ModelFunctions, list]:
    """The log density and the posterior outputs of ``model`` as JAX functions, and the
    model's shared variables whose values they take (in ``shared_names`` order).

    The log density is ``model.logp()`` -- the priors and Jacobians of the free variables
    from PyTensor, and the likelihood of ``x`` from :func:`mixture_loglik` at the
    likelihood's own inputs (as the model computes them from the parameters).
    """
    prior, likelihood_inputs, outputs, shared = _graphs(model)
    shared_names = [s.name for s in shared]
    value_names = [v.name for v in model.value_vars]
    prior_fn = _jaxify(model, [prior, *likelihood_inputs], shared)
    # the posterior's outputs with the likelihood's inputs (one graph: their common parts
    # once, and no prior density to trace)
    outputs_fn = _jaxify(model, [*likelihood_inputs, *outputs], shared)
    fam = spec.family.kernel  # the likelihood's form of the covariance argument
    where = {name: i for i, name in enumerate(shared_names)}

    # NaN = missing: one group of features per missingness pattern, whose observed
    # coordinates are part of the structure (jaxnuts' cache key), and whose rows are data
    observed = [np.flatnonzero(m) for m in missing_observed(model)] or [np.arange(spec.n_features)]
    rows_of = [f"missing_rows_{p}" for p in range(len(observed))]

    noisy = "noise_cov" in where  # known measurement errors: the deconvolved likelihood

    def prepare(shared_values):
        data, loc, scale = (shared_values[where[n]] for n in ("data", "loc", "scale"))
        w = shared_values[where["sample_weight"]] if "sample_weight" in where else None
        offset = None  # known labels: (K, N) terms ruling components out (and the background)
        if "labels" in where:
            rows = spec.n_components + ("background" in where)
            offset = label_offset(shared_values[where["labels"]], rows)
        if noisy:
            noise_z = shared_values[where["noise_cov"]] / (scale[:, None] * scale[None, :])
            return tuple(shared_values), (((data - loc) / scale, noise_z, w, offset),)
        if rows_of[0] not in where:
            return tuple(shared_values), (features(data, loc, scale, fam, w, offset),)
        groups = []
        for obs, name in zip(observed, rows_of, strict=True):
            rows = shared_values[where[name]]
            weights = None if w is None else w[rows]
            off = None if offset is None else offset[:, rows]
            groups.append(features(data[rows][:, obs], loc[obs], scale[obs], fam, weights, off))
        return tuple(shared_values), tuple(groups)

    def _parts(weights, means_z, cov_param):
        """The weights and each pattern's (means, covariance argument), from the
        likelihood's inputs (with the leading batch axis of 1 of PyMC's CustomDist)."""
        weights, means_z, cov_param = weights[0], means_z[0], cov_param[0]
        D = means_z.shape[1]
        parts = [(means_z[:, obs], marginal_cov_param(cov_param, obs, D, fam)) for obs in observed]
        return weights, parts

    def _marginals(values, shared_values):
        """The prior's log density, the weights and each pattern's marginal."""
        lp, *inputs = prior_fn(*values, *shared_values)
        return lp, *_parts(*inputs)

    def _noisy_pointwise(weights, parts, groups, scale):
        (z, noise_z, w, offset), ((means_z, cov_param),) = groups[0], parts
        pointwise = noise_loglik(weights, means_z, cov_param, z, noise_z, fam, offset)
        return pointwise - jnp.log(scale).sum(), w

    def logp(params, args):
        shared_values, groups = args
        lp, weights, parts = _marginals([params[n] for n in value_names], shared_values)
        scale = shared_values[where["scale"]]
        if noisy:
            pointwise, w = _noisy_pointwise(weights, parts, groups, scale)
            return lp + (pointwise.sum() if w is None else pointwise @ w)
        bg = shared_values[where["background"]] if "background" in where else None
        for feats, obs, (means_p, cov_p) in zip(groups, observed, parts, strict=True):
            n_obs = feats.shape[1] if feats.weights is None else feats.weights.sum()
            lp = lp + mixture_loglik(weights, means_p, cov_p, feats, n_obs, scale[obs], fam, bg)
        return lp

    def outputs_of(params, args):
        """The constrained outputs and the points' log-likelihoods (N,)."""
        shared_values, groups = args
        values = [params[n] for n in value_names]
        results = outputs_fn(*values, *shared_values)
        weights, parts = _parts(*results[: len(likelihood_inputs)])
        outs = results[len(likelihood_inputs) :]
        scale = shared_values[where["scale"]]
        if noisy:
            pointwise = _noisy_pointwise(weights, parts, groups, scale)[0]
            return (*outs, pointwise)
        bg = shared_values[where["background"]] if "background" in where else None
        pointwise = [
            pointwise_loglik(weights, means_p, cov_p, feats, scale[obs], fam, bg)
            for feats, obs, (means_p, cov_p) in zip(groups, observed, parts, strict=True)
        ]
        if rows_of[0] in where:  # back to the points' order
            n = shared_values[where["data"]].shape[0]
            out = jnp.zeros(n, pointwise[0].dtype)
            for name, part in zip(rows_of, pointwise, strict=True):
                out = out.at[shared_values[where[name]]].set(part)
            pointwise = [out]
        return (*outs, pointwise[0])

    names = [v.name for v in outputs]
    return ModelFunctions(value_names, shared_names, names, prepare, logp, outputs_of), shared
