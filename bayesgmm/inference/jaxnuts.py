"""NumPyro NUTS with a compiled-sampler cache: one compilation serves every dataset.

``pm.sample(nuts_sampler="numpyro")`` turns the model's data into constants of the JAX
program, so every fit compiles the sampler again; for the small models bayesgmm fits,
that compilation is most of the wall time (tens of seconds against a second of
sampling). Here the model's ``pm.Data`` (the data and, see
:func:`bayesgmm.inference.model.build_model`, the standardisation and prior parameters)
are *arguments* of the compiled functions, and
the compiled sampler is kept in a process-wide cache keyed by the model's structure
(K, D, covariance family, sd prior, number of points) and the sampler settings that
shape the program (tuning length, target acceptance). Fitting another dataset of the
same shape, or the same data again, reuses it.

The sampler is NumPyro's NUTS (``numpyro.infer.hmc.hmc``, diagonal mass matrix, step
size and mass matrix adapted during tuning, as ``pm.sample`` runs it); the log density
is PyMC's own (``model.logp()``), turned into JAX by PyTensor. Chains run one after the
other, each in compiled chunks of iterations so that a progress bar can follow them.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bayesgmm._logging import logger

__all__ = ["cache_info", "clear_cache", "sample_numpyro"]

_CHUNK = 50  # NUTS iterations per compiled call (the progress bar's granularity)
_CACHE_SIZE = 16
_CACHE: OrderedDict[tuple, _Compiled] = OrderedDict()
_LOCK = threading.Lock()
_STATS = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy", "step_size")


@dataclass
class _Compiled:
    value_names: list[str]
    shared_names: list[str]
    out_names: list[str]
    init_fn: Any  # (rng_key, init_params, shared) -> HMCState
    advance_fn: Any  # (state, shared) -> (state, (z, stats)) over _CHUNK iterations
    post_fn: Any  # (z batched over draws, shared) -> constrained outputs


def clear_cache() -> None:
    """Forget every compiled sampler (frees their memory)."""
    with _LOCK:
        _CACHE.clear()


def cache_info() -> dict[str, int]:
    """Number of compiled samplers held and the cache's capacity."""
    return {"size": len(_CACHE), "capacity": _CACHE_SIZE}


def _shared_inputs(model: pm.Model, outputs) -> list:
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
    return jax_funcify(fgraph)


def _graph(model: pm.Model) -> tuple[list, list, list]:
    """The model's log density, its posterior outputs, and the shared inputs of both."""
    from pymc.util import get_default_varnames

    logp = model.logp()
    outputs = list(get_default_varnames(model.unobserved_value_vars, include_transformed=False))
    return logp, outputs, _shared_inputs(model, [logp, *outputs])


def _structure_key(model: pm.Model, spec, shared, n_obs, tune, target_accept) -> tuple:
    point = model.initial_point()
    values = tuple((v.name, tuple(np.shape(point[v.name]))) for v in model.value_vars)
    shared = tuple((s.name, tuple(np.shape(s.get_value(borrow=True)))) for s in shared)
    return (
        spec.n_components,
        spec.n_features,
        spec.covariance_type,
        spec.priors.sds_dist,
        spec.has_corr,
        int(n_obs),
        values,
        shared,
        int(tune),
        float(target_accept),
    )


def _compile(model: pm.Model, graph, tune: int, target_accept: float) -> _Compiled:
    import jax

    # importing pymc.sampling.jax switches JAX to 64-bit floats, as pm.sample does
    import pymc.sampling.jax  # noqa: F401
    from numpyro.infer.hmc import hmc

    logp, outputs, shared = graph
    shared_names = [s.name for s in shared]
    value_names = [v.name for v in model.value_vars]
    logp_fn = _jaxify(model, [logp], shared)
    out_names = [v.name for v in outputs]
    post_fn_raw = _jaxify(model, outputs, shared)

    def potential_fn_gen(shared_values):
        def potential(params):
            return -logp_fn(*(params[n] for n in value_names), *shared_values)[0]

        return potential

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def init(rng_key, init_params, shared_values):
        return init_kernel(
            init_params,
            num_warmup=tune,
            target_accept_prob=target_accept,
            adapt_step_size=True,
            adapt_mass_matrix=True,
            dense_mass=False,
            model_args=(shared_values,),
            rng_key=rng_key,
        )

    def advance(state, shared_values):
        def step(s, _):
            s = sample_kernel(s, model_args=(shared_values,))
            stats = (
                s.diverging,
                s.num_steps,
                s.accept_prob,
                s.energy,
                s.potential_energy,
                s.adapt_state.step_size,
            )
            return s, (s.z, stats)

        return jax.lax.scan(step, state, None, length=_CHUNK)

    def post(z, shared_values):
        def one(zi):
            return post_fn_raw(*(zi[n] for n in value_names), *shared_values)

        return jax.vmap(one)(z)

    return _Compiled(
        value_names=value_names,
        shared_names=shared_names,
        out_names=out_names,
        init_fn=jax.jit(init),
        advance_fn=jax.jit(advance),
        post_fn=jax.jit(post),
    )


def _compiled_for(model, spec, n_obs, tune, target_accept) -> tuple[_Compiled, list, bool]:
    graph = _graph(model)
    shared = graph[2]
    key = _structure_key(model, spec, shared, n_obs, tune, target_accept)
    with _LOCK:
        hit = key in _CACHE
        if hit:
            _CACHE.move_to_end(key)
            return _CACHE[key], shared, True
        compiled = _compile(model, graph, tune, target_accept)
        _CACHE[key] = compiled
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled, shared, False


def sample_numpyro(
    model: pm.Model,
    spec,
    init_points: Sequence[Mapping[str, np.ndarray]],
    *,
    draws: int,
    tune: int,
    target_accept: float,
    random_seed: int,
    progressbar: bool = False,
) -> xr.DataTree:
    """Run NumPyro NUTS from given unconstrained starts, reusing a compiled sampler.

    Parameters
    ----------
    model : pm.Model
        From :func:`bayesgmm.inference.model.build_model`.
    spec : GMMSpec
    init_points : sequence of dict
        One start per chain, keyed by the model's *value variable* names (unconstrained
        scale, e.g. ``weights_simplex__``).
    draws, tune : int
    target_accept : float
    random_seed : int
    progressbar : bool

    Returns
    -------
    DataTree
        ``posterior`` (free variables in their constrained form and the deterministics),
        ``sample_stats`` (``diverging``, ``n_steps``, ``tree_depth``, ``acceptance_rate``,
        ``energy``, ``lp``, ``step_size``), ``observed_data`` and ``constant_data``; the
        attribute ``compile_cache_hit`` says whether a compiled sampler was reused.
    """
    import jax
    import jax.numpy as jnp

    n_obs = int(np.shape(model["data"].get_value(borrow=True))[0])
    t0 = time.perf_counter()
    compiled, shared, hit = _compiled_for(model, spec, n_obs, tune, target_accept)
    if not hit and progressbar:
        logger.info(
            "compiling the NUTS sampler for K=%d, D=%d, %r covariance, %d points (first fit "
            "of this model structure in this process; later fits of it reuse it)...",
            spec.n_components,
            spec.n_features,
            spec.covariance_type,
            n_obs,
        )
    shared_values = tuple(jnp.asarray(s.get_value(borrow=True)) for s in shared)
    chains = len(init_points)
    total = tune + draws
    n_chunks = math.ceil(total / _CHUNK)
    keys = jax.random.split(jax.random.PRNGKey(random_seed), chains)
    bar = _progress(progressbar, chains * n_chunks * _CHUNK)
    zs, stats = [], []
    for c in range(chains):
        init = {n: jnp.asarray(init_points[c][n], dtype=jnp.float64) for n in compiled.value_names}
        state = compiled.init_fn(keys[c], init, shared_values)
        z_parts, s_parts = [], []
        for i in range(n_chunks):
            state, (z, st) = compiled.advance_fn(state, shared_values)
            if c == 0 and i == 0 and not hit and progressbar:
                jax.block_until_ready(z)
                logger.info("compiled in %.1f s; sampling", time.perf_counter() - t0)
            z_parts.append(z)
            s_parts.append(st)
            if bar is not None:
                bar.update(_CHUNK)
        keep = slice(tune, total)
        zs.append({n: jnp.concatenate([p[n] for p in z_parts])[keep] for n in compiled.value_names})
        stats.append([np.concatenate([np.asarray(p[i]) for p in s_parts])[keep] for i in range(6)])
    if bar is not None:
        bar.close()
    posterior = {name: [] for name in compiled.out_names}
    for z in zs:
        outs = compiled.post_fn(z, shared_values)
        for name, value in zip(compiled.out_names, outs, strict=True):
            posterior[name].append(np.asarray(value))
    posterior = {name: np.stack(v) for name, v in posterior.items()}
    stat = {name: np.stack([s[i] for s in stats]) for i, name in enumerate(_STATS)}
    sample_stats = {
        "diverging": stat["diverging"].astype(bool),
        "n_steps": stat["num_steps"].astype(int),
        "tree_depth": np.log2(stat["num_steps"]).astype(int) + 1,
        "acceptance_rate": stat["accept_prob"],
        "energy": stat["energy"],
        "lp": -stat["potential_energy"],
        "step_size": stat["step_size"],
    }
    return _to_datatree(model, posterior, sample_stats, tune, hit)


def _progress(progressbar: bool, total: int):
    if not progressbar:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - numpyro depends on tqdm
        return None
    return tqdm(total=total, desc="NUTS[numpyro, cached]", unit="it")


def _to_datatree(model, posterior, sample_stats, tune, hit) -> xr.DataTree:
    from arviz_base import from_dict
    from pymc.backends.arviz import (
        coords_and_dims_for_inferencedata,
        find_constants,
        find_observations,
    )

    coords, dims = coords_and_dims_for_inferencedata(model)
    groups: dict[str, Any] = {"posterior": posterior, "sample_stats": sample_stats}
    observed = find_observations(model)
    if observed is not None:
        groups["observed_data"] = observed
    constant = find_constants(model)
    if constant is not None:
        groups["constant_data"] = constant
    attrs = {"inference_library": "numpyro", "tuning_steps": tune, "compile_cache_hit": hit}
    tree = from_dict(
        data=groups,
        coords=coords,
        dims=dims,
        sample_dims=["chain", "draw"],
        attrs={"posterior": attrs},
    )
    return tree
