"""NumPyro NUTS with a compiled-sampler cache: one compilation serves every dataset.

``pm.sample(nuts_sampler="numpyro")`` turns the model's data into constants of the JAX
program, so every fit compiles the sampler again; for the small models bayesgmm fits,
that compilation is most of the wall time. Here the model's ``pm.Data`` (the data and,
see :func:`bayesgmm.inference.model.build_model`, the standardisation and prior
parameters) are *arguments* of the compiled functions, and the compiled sampler is kept
in a process-wide cache keyed by the model's structure (K, D, covariance family, sd prior,
number of points, missingness patterns) and the sampler settings that shape the program
(tuning length, target acceptance, mass matrix). Another dataset of the same shape, or the
same data again, reuses it; JAX's persistent compilation cache
(:func:`~bayesgmm.inference.jaxgraph.enable_compilation_cache`) carries the compiled
programs over to new processes.

The sampler is NumPyro's NUTS (``numpyro.infer.hmc.hmc``; step size and a diagonal or
dense mass matrix adapted during tuning); the log density is the model's
(:mod:`bayesgmm.inference.jaxgraph`). Chains run in parallel, one thread each over the
same compiled program (JAX releases the GIL while it computes), on as many cores as
``workers`` allows, each in compiled chunks of iterations so that a progress bar can
follow them. The constrained draws and the pointwise log-likelihood are computed chunk by
chunk too (one compiled shape), each chunk once however many rounds of draws there are.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pymc as pm
import xarray as xr

from bayesgmm._logging import logger, progress_bar
from bayesgmm.inference.jaxgraph import (
    ModelFunctions,
    enable_compilation_cache,
    missing_observed,
    model_functions,
)

__all__ = ["cache_info", "clear_cache", "sample_numpyro"]

_CHUNK = 50  # NUTS iterations per compiled call (the progress bar's granularity)
#: Most rounds of ``draws`` that ``enough`` can ask for.
MAX_ROUNDS = 20
_CACHE_SIZE = 16
_CACHE: OrderedDict[tuple, _Compiled] = OrderedDict()
_LOCK = threading.Lock()
_STATS = ("diverging", "num_steps", "accept_prob", "energy", "potential_energy", "step_size")


@dataclass
class _Compiled:
    value_names: list[str]
    shared_names: list[str]
    out_names: list[str]
    prepare_fn: Any  # (shared values) -> args of the others
    init_fn: Any  # (rng_key, init_params, shared) -> HMCState
    advance_fn: Any  # (state, shared) -> (state, (z, stats)) over _CHUNK iterations
    post_fn: Any  # (z batched over draws, args) -> constrained outputs, pointwise loglik
    advance_exe: Any = None  # advance_fn compiled ahead of time (by the first run)


def clear_cache() -> None:
    """Forget every compiled sampler (frees their memory)."""
    with _LOCK:
        _CACHE.clear()


def cache_info() -> dict[str, int]:
    """Number of compiled samplers held and the cache's capacity."""
    return {"size": len(_CACHE), "capacity": _CACHE_SIZE}


def _structure_key(point, spec, shared, n_obs, tune, target_accept, dense, model) -> tuple:
    values = tuple((name, tuple(np.shape(point[name]))) for name in sorted(point))
    patterns = tuple(tuple(m.tolist()) for m in missing_observed(model))  # missing values
    shared = tuple((s.name, tuple(np.shape(s.get_value(borrow=True)))) for s in shared)
    model_key = (spec.n_components, spec.n_features, spec.covariance_type, spec.priors.sds_dist,
                 spec.has_corr, int(n_obs), values, shared, patterns)  # fmt: skip
    return (*model_key, int(tune), float(target_accept), bool(dense))


def _compile(functions: ModelFunctions, tune: int, target_accept: float, dense: bool):
    import jax

    # importing pymc.sampling.jax switches JAX to 64-bit floats, as pm.sample does
    import pymc.sampling.jax  # noqa: F401
    from numpyro.infer.hmc import hmc

    def potential_fn_gen(args):
        def potential(params):
            return -functions.logp(params, args)

        return potential

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_fn_gen, algo="NUTS")

    def init(rng_key, init_params, args):
        return init_kernel(
            init_params,
            num_warmup=tune,
            target_accept_prob=target_accept,
            adapt_step_size=True,
            adapt_mass_matrix=True,
            dense_mass=dense,
            model_args=(args,),
            rng_key=rng_key,
        )

    def advance(state, args):
        def step(s, _):
            s = sample_kernel(s, model_args=(args,))
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

    def post(z, args):
        return jax.vmap(lambda zi: functions.outputs(zi, args))(z)

    return _Compiled(
        value_names=functions.value_names,
        shared_names=functions.shared_names,
        out_names=functions.out_names,
        prepare_fn=jax.jit(functions.prepare),
        init_fn=jax.jit(init),
        advance_fn=jax.jit(advance),
        post_fn=jax.jit(post),
    )


def model_shared(model: pm.Model, names: Sequence[str]) -> list:
    """The model's shared variables of these names (data, or the lengths of dims)."""
    return [model.named_vars[n] if n in model.named_vars else model.dim_lengths[n] for n in names]


def _compiled_for(model, spec, point, n_obs, tune, target_accept, dense, say=False):
    """The compiled sampler for this model structure (from the cache, else compiled), the
    model's shared variables in its argument order, and whether it was a cache hit. With
    ``say``, a miss logs one line before compiling starts."""
    enable_compilation_cache()
    data = sorted(model.data_vars, key=lambda v: v.name)
    key = _structure_key(point, spec, data, n_obs, tune, target_accept, dense, model)
    with _LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            compiled = _CACHE[key]
            return compiled, model_shared(model, compiled.shared_names), True
        if say:
            logger.info(
                "compiling the NUTS sampler for K=%d, D=%d, %r covariance, %d points (the "
                "first fit of this model structure in this process; later fits reuse it)...",
                spec.n_components,
                spec.n_features,
                spec.covariance_type,
                n_obs,
            )
        functions, shared = model_functions(model, spec)
        compiled = _compile(functions, tune, target_accept, dense)
        _CACHE[key] = compiled
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return compiled, shared, False


class _Chains:
    """The chains of one run: their sampler states, advanced together chunk by chunk."""

    def __init__(self, compiled, args, init_points, keys, workers):
        self.compiled, self.args, self.bar = compiled, args, None
        self.init_points, self.keys = init_points, keys
        self.workers = max(1, min(int(workers), len(init_points)))
        self.states: list[Any] = [None] * len(init_points)
        self.z: list[list] = [[] for _ in init_points]
        self.stats: list[list] = [[] for _ in init_points]
        self.done: list[dict[int, tuple]] = [{} for _ in init_points]  # chunk -> outputs
        self.iterations = 0
        self.compile_seconds = 0.0
        self.exe: Any = None

    def start(self) -> bool:
        """Every chain's initial state, and the chunk program compiled ahead of time (once
        per compiled sampler), so that all chains start together; returns whether the
        chunk program was compiled now."""
        import jax.numpy as jnp

        t = time.perf_counter()
        compiled = self.compiled
        for c in range(len(self.states)):
            init = {n: jnp.asarray(self.init_points[c][n], dtype=jnp.float64)
                    for n in compiled.value_names}  # fmt: skip
            self.states[c] = compiled.init_fn(self.keys[c], init, self.args)
        fresh = False
        with _LOCK:
            if compiled.advance_exe is None:
                compiled.advance_exe = compiled.advance_fn.lower(
                    self.states[0], self.args
                ).compile()
                fresh = True
        self.compile_seconds = time.perf_counter() - t
        self.exe = compiled.advance_exe
        return fresh

    def _advance_one(self, exe, c: int, n_chunks: int) -> None:
        import jax

        for _ in range(n_chunks):
            state, (z, st) = exe(self.states[c], self.args)
            jax.block_until_ready(z)
            self.states[c] = state
            self.z[c].append(z)
            self.stats[c].append(tuple(np.asarray(v) for v in st))
            if self.bar is not None:
                self.bar.update(_CHUNK)

    def _each_chain(self, work: Callable[[int], None]) -> None:
        """``work(chain)`` for every chain, ``workers`` chains at a time."""
        if self.workers == 1:
            for c in range(len(self.states)):
                work(c)
            return
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            for fut in [pool.submit(work, c) for c in range(len(self.states))]:
                fut.result()

    def advance(self, n_chunks: int) -> None:
        """Run every chain ``n_chunks`` chunks further, ``workers`` chains at a time."""
        if n_chunks <= 0:
            return
        if self.exe is None:
            self.start()
        exe = self.exe
        self._each_chain(lambda c: self._advance_one(exe, c, n_chunks))
        self.iterations += n_chunks * _CHUNK

    def outputs(self, keep: slice) -> list[np.ndarray]:
        """``post_fn``'s outputs for the draws in ``keep``, each (chain, draw, ...).

        ``post_fn`` runs on whole chunks (one compiled shape, whatever ``keep``), each
        chunk once over all rounds of draws (kept in ``done``), never on tuning-only ones.
        """
        first, stop = keep.start // _CHUNK, math.ceil(keep.stop / _CHUNK)

        def process(c: int, limit: int | None = None) -> None:
            todo = [j for j in range(first, stop) if j not in self.done[c]][:limit]
            outs = [self.compiled.post_fn(self.z[c][j], self.args) for j in todo]
            for j, out in zip(todo, outs, strict=True):  # all dispatched, then collected
                self.done[c][j] = tuple(np.asarray(v) for v in out)

        if not self.done[0]:
            process(0, 1)  # compiles post_fn (once) before the threads need it
        self._each_chain(process)
        s0, n, arrays = keep.start, keep.stop - keep.start, []
        for i, proto in enumerate(self.done[0][first]):
            out = np.empty((len(self.done), n, *proto.shape[1:]), dtype=proto.dtype)
            for j in range(first, stop):
                off = j * _CHUNK
                a, b = max(off, keep.start), min(off + _CHUNK, keep.stop)
                for c, done in enumerate(self.done):
                    out[c, a - s0 : b - s0] = done[j][i][a - off : b - off]
            arrays.append(out)
        return arrays

    def sample_stats(self, keep: slice) -> dict[str, np.ndarray]:
        """The sampler's statistics (``_STATS``) in ``keep``, each (chain, draw)."""
        return {
            name: np.stack([np.concatenate([p[i] for p in parts])[keep] for parts in self.stats])
            for i, name in enumerate(_STATS)
        }


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
    workers: int = 1,
    dense_mass: bool = False,
    enough: Callable[[xr.DataTree], float] | None = None,
    max_time: float | None = None,
) -> xr.DataTree:
    """Run NumPyro NUTS from given unconstrained starts, reusing a compiled sampler.

    Parameters
    ----------
    model : pm.Model
        From :func:`bayesgmm.inference.model.build_model`.
    spec : GMMSpec
    init_points : sequence of dict
        One start per chain, keyed by the model's *value variable* names (unconstrained
        scale, e.g. ``weights_scaled_simplex__``).
    draws, tune : int
    target_accept : float
    random_seed : int
    progressbar : bool
    workers : int
        Chains run at the same time (threads over one compiled program).
    dense_mass : bool
        Adapt a dense mass matrix (else a diagonal one).
    enough : callable, optional
        Called with the draws so far (a DataTree as returned); it returns how far they
        are towards the target (1.0 or True: met). While it is below 1, every chain draws
        ``draws`` more, until ``max_time`` seconds have passed since the start, or
        ``MAX_ROUNDS`` rounds, or, from the second round on, the rate so far says the
        target would take more rounds than ``MAX_ROUNDS`` or more time than
        ``max_time`` (``projected_rounds`` in the posterior's attributes: drawing on would
        not reach it; the sampler or the model needs changing instead).
    max_time : float, optional

    Returns
    -------
    DataTree
        ``posterior`` (free variables in their constrained form and the deterministics),
        ``sample_stats`` (``diverging``, ``n_steps``, ``tree_depth``, ``acceptance_rate``,
        ``energy``, ``lp``, ``step_size``), ``log_likelihood`` (``x`` point by point, in
        the data's units), ``observed_data`` and ``constant_data``; the
        posterior's attributes say whether a compiled sampler was reused
        (``compile_cache_hit``), the seconds spent compiling (and initialising the
        chains) and sampling, the rounds of
        draws and whether ``enough`` was met (``target_met``).
    """
    import jax
    import jax.numpy as jnp

    n_obs = int(np.shape(model["data"].get_value(borrow=True))[0])
    t0 = time.perf_counter()
    compiled, shared, hit = _compiled_for(
        model, spec, init_points[0], n_obs, tune, target_accept, dense_mass, say=progressbar
    )
    args = compiled.prepare_fn(tuple(jnp.asarray(s.get_value(borrow=True)) for s in shared))
    chains = len(init_points)
    keys = jax.random.split(jax.random.PRNGKey(random_seed), chains)
    run = _Chains(compiled, args, init_points, keys, workers)
    # compile before the bar starts, so that its rate and time left count sampling only
    if run.start() and progressbar:
        logger.info("compiled in %.1f s", time.perf_counter() - t0)

    def steps(n_rounds: int) -> int:  # NUTS steps of every chain after n_rounds rounds
        return chains * math.ceil((tune + n_rounds * draws) / _CHUNK) * _CHUNK

    run.bar = bar = _progress(progressbar, steps(1), chains, hit)
    rounds, target_met, early = 1, None, None
    try:
        while True:
            total = tune + rounds * draws
            run.advance(math.ceil(total / _CHUNK) - run.iterations // _CHUNK)
            if rounds == 1:
                first_seconds = time.perf_counter() - t0
            tree = _posterior_tree(model, run, slice(tune, total), tune, hit)
            if enough is None:
                break
            progress = float(enough(tree))
            target_met = progress >= 1.0
            elapsed = time.perf_counter() - t0
            out_of_time = max_time is not None and elapsed >= max_time
            if target_met or out_of_time or rounds >= MAX_ROUNDS:
                break
            if rounds >= 2 and _out_of_reach(progress, rounds, elapsed, first_seconds, max_time):
                early = math.ceil(rounds / progress) if progress > 0 else -1
                break
            rounds += 1
            if bar is not None:  # the same bar counts on, over the grown total
                bar.total = steps(rounds)
                bar.set_description(f"{progress_label(hit)} round {rounds}", refresh=False)
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()
    tree["posterior"].attrs.update(
        sampling_seconds=round(time.perf_counter() - t0, 3),
        first_round_seconds=round(first_seconds, 3),
        compile_seconds=round(run.compile_seconds, 3),
        rounds=rounds,
        workers=run.workers,
        dense_mass=bool(dense_mass),
    )
    if target_met is not None:
        tree["posterior"].attrs["target_met"] = target_met
    if early is not None:  # rounds the target would take at the rate so far (-1: no ESS)
        tree["posterior"].attrs["projected_rounds"] = early
    return tree


def _out_of_reach(progress: float, rounds: int, elapsed: float, first: float, max_time) -> bool:
    """Whether the ESS rate of the rounds so far says the target would take more than
    ``MAX_ROUNDS`` rounds or, at the seconds per round since the first, past ``max_time``
    (ESS grows about linearly with the draws once the chains have mixed).

    Examples
    --------
    >>> _out_of_reach(0.01, 2, 20.0, 10.0, None)  # 200 rounds needed
    True
    >>> _out_of_reach(0.4, 2, 20.0, 10.0, None)  # 5 rounds needed, 10 s each
    False
    >>> _out_of_reach(0.4, 2, 20.0, 10.0, 40.0)  # ... but 50 s > 40 s
    True
    """
    if progress <= 0.0:
        return rounds >= 3  # no ESS at all after three rounds
    needed = rounds / progress
    if needed > MAX_ROUNDS:
        return True
    per_round = (elapsed - first) / max(rounds - 1, 1)
    return max_time is not None and elapsed + per_round * (needed - rounds) > max_time


def _posterior_tree(model, run: _Chains, keep: slice, tune: int, hit: bool) -> xr.DataTree:
    *outs, ll = run.outputs(keep)  # ll (chain, draw, obs): the model's x term, point by point
    posterior = dict(zip(run.compiled.out_names, outs, strict=True))
    stat = run.sample_stats(keep)
    sample_stats = {
        "diverging": stat["diverging"].astype(bool),
        "n_steps": stat["num_steps"].astype(int),
        "tree_depth": np.log2(stat["num_steps"]).astype(int) + 1,
        "acceptance_rate": stat["accept_prob"],
        "energy": stat["energy"],
        "lp": -stat["potential_energy"],
        "step_size": stat["step_size"],
    }
    tree = _to_datatree(model, posterior, sample_stats, tune, hit)
    post = tree["posterior"]
    coords = {"chain": post["chain"].values, "draw": post["draw"].values,
              "obs": np.arange(ll.shape[-1])}  # fmt: skip
    tree["log_likelihood"] = xr.Dataset({"x": (("chain", "draw", "obs"), ll)}, coords=coords)
    return tree


def progress_label(cache_hit: bool) -> str:
    """The progress bar's label: ``"cached"`` only when the compiled sampler was reused.

    Examples
    --------
    >>> progress_label(False), progress_label(True)
    ('NUTS[numpyro]', 'NUTS[numpyro, cached]')
    """
    return "NUTS[numpyro, cached]" if cache_hit else "NUTS[numpyro]"


def _progress(progressbar: bool, total: int, chains: int, hit: bool):
    """A bar over every chain's NUTS steps (tuning and draws), or None."""
    if not progressbar:
        return None
    detail = f"{chains} chain{'s' * (chains != 1)}"
    return progress_bar(total, progress_label(hit), unit="steps", detail=detail)


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
    if "background" in model.named_vars:  # its density, for predictions (core.draws)
        attrs["background"] = float(model["background"].get_value())
    tree = from_dict(
        data=groups,
        coords=coords,
        dims=dims,
        sample_dims=["chain", "draw"],
        attrs={"posterior": attrs},
    )
    return tree
