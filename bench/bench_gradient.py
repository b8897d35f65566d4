"""Benchmark: one value + gradient of the log density, against the arithmetic floor.

For each workload (full covariance, ``bench_em.make_data``), the jitted value and gradient
of the posterior log density near the EM start, per evaluation inside one compiled loop
of evaluations (as inside a sampler: no Python dispatch; the data as arguments of the
compiled loop, not constants), timed to ``jax.block_until_ready`` (median of
``--rounds`` loops after a warm-up), for:

``bayesgmm``
    What the NumPyro backend samples: the model's priors through PyTensor's JAX backend
    and the likelihood from ``bayesgmm.inference.jaxlik`` (custom VJP): its value and
    gradient in one pass of the C++ kernel of ``bayesgmm.inference.jaxkernel`` where it
    serves (K <= 64, K F <= 512, a C++ compiler at hand), the XLA program otherwise;
    ``BAYESGMM_NATIVE=0`` times the XLA program.
``pytensor``
    The whole PyMC model through PyTensor's JAX backend (``get_jaxified_logp``), as the
    backend did before: the likelihood as the model declares it.
``numpyro``
    The hand-written NumPyro model of ``bench_sampling.py`` (``MixtureSameFamily`` of
    ``MultivariateNormal(scale_tril)``), its potential from ``initialize_model``.

Each is timed twice: alone (one compiled loop at a time) and with all cores busy (one
such loop per available core at once, from threads over the one compiled program, as the
sampler runs its chains; seconds per evaluation = wall seconds / evaluations done). One
evaluation runs on one core (XLA:CPU gains nothing from splitting these small loops over
threads: the same time pinned to one core), so the machine's rate of evaluations is the
all-cores figure, and it is the one to hold against the machine's peak rate.

The floor is ``N K (D**2 + 4 D) 3`` floating-point operations (the Mahalanobis product
and its gradient; see the issue) at this machine's measured float64 rate, two ways:

``floor (peak)``
    at the rate of a jitted 1000 x 1000 matrix product (BLAS-3 with cache reuse; the
    fastest of 20, and the larger of one product at a time, which XLA spreads over the
    cores, and one per core at once: the issue's floor);
``floor (K x F x N product)``
    at the measured rate of a matrix product of the workload's own shape, the
    ``(K, F) x (F, N)`` product of bayesgmm's likelihood (``F = 1 + D + D (D + 1) / 2``
    point features), timed like the evaluations (inside a compiled loop, through
    ``jnp.matmul``). With K of 3 to 5 rows this product runs far below the peak: the
    rate the arithmetic can have in this computation on this machine.

and ``exp pass`` is the measured time of one ``exp`` over N x K values (a jitted
``jnp.exp`` inside a compiled loop, alone): work the flop
count leaves out, which every exact mixture log-likelihood has to do once per evaluation.
Graph size is the number of equations in the jaxpr of the value and gradient (bayesgmm's
grows like D: the blocked triangular inverse; D**3 for an unrolled one). The machine's
load average is printed first and last: on a shared machine, compare runs made at the
same load.

Run::

    python bench/bench_gradient.py
    python bench/bench_gradient.py --workloads W1,W2 --methods bayesgmm --rounds 5
    BAYESGMM_NATIVE=0 python bench/bench_gradient.py --workloads W2 --methods bayesgmm
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
WORKLOADS = {  # name: (N, K, D)
    "W1": (1_000, 3, 2),
    "W2": (10_000, 5, 4),
    "D20": (2_000, 3, 20),
    "D50": (2_000, 3, 50),
}


def _time(fn, *args, repeats: int, threads: int = 1, stat=np.median) -> float:
    """Median (or ``stat``) wall seconds of ``fn(*args)`` over ``repeats`` calls; with
    ``threads > 1``, of ``threads`` simultaneous calls from as many threads (one compiled
    program, as the sampler runs its chains), divided by ``threads``: seconds per call at
    that throughput."""
    import jax

    def once():
        jax.block_until_ready(fn(*args))

    once()
    times = []
    for _ in range(repeats):
        workers = [threading.Thread(target=once) for _ in range(threads)]
        t = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        times.append((time.perf_counter() - t) / threads)
    return float(stat(times))


ROUNDS = 3  # compiled loops per timing (median); set by --rounds
THREADS = len(os.sched_getaffinity(0))  # loops at once for the all-cores time; --threads


def _per_eval(vg, params, *rest, evals: int) -> tuple[float, float]:
    """Seconds per value + gradient inside one compiled loop of ``evals`` evaluations (as
    in a sampler's trajectory: no Python dispatch per call), alone and with every core
    busy (``THREADS`` such loops at once; see :func:`_time`). Each evaluation starts from
    a point moved by the previous gradient, so nothing can be hoisted out of the loop.
    ``rest`` (the data) enters the compiled loop as arguments, as in the sampler: closed
    over, it would be a compile-time constant that XLA may fold (e.g. transpose) ahead."""
    import jax

    def loop(p, *data):
        def body(_, carry):
            _, grad = vg(carry, *data)
            return jax.tree.map(lambda a, g: a + 1e-12 * g, carry, grad)

        return jax.lax.fori_loop(0, evals, body, p)

    compiled = jax.jit(loop)
    alone = _time(compiled, params, *rest, repeats=ROUNDS) / evals
    busy = _time(compiled, params, *rest, repeats=ROUNDS, threads=THREADS) / evals
    return alone, busy


def peak_gflops() -> float:
    """Measured float64 rate of this machine (GFLOP/s): a 1000 x 1000 matrix product, its
    fastest of 20, the larger of one product at a time (XLA spreads it over the cores) and
    one per core at once."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).normal(size=(1000, 1000)))
    product = jax.jit(lambda x: x @ x)
    seconds = min(
        _time(product, a, repeats=20, threads=t, stat=np.min) for t in sorted({1, THREADS})
    )
    return 2e9 / seconds / 1e9


def workload_rates(N: int, K: int, D: int, evals: int) -> tuple[float, float]:
    """The rate (GFLOP/s) of the workload's own ``(K, F) x (F, N)`` matrix product and the
    seconds of one ``exp`` pass over ``N K`` values, each inside a compiled loop."""
    import jax
    import jax.numpy as jnp

    F = 1 + D + D * (D + 1) // 2  # bayesgmm's features of a full-covariance mixture
    rng = np.random.default_rng(0)
    coef = jnp.asarray(rng.normal(size=(K, F)))
    feats = jnp.asarray(rng.normal(size=(F, N)))

    def product(a, f):  # the barrier keeps the column slice from shrinking the product
        return a + 1e-12 * jax.lax.optimization_barrier(a @ f)[:, :1]

    seconds = _per_eval_loop(product, coef, feats, evals=evals)
    logs = jnp.asarray(-np.abs(rng.normal(scale=5.0, size=(K, N))))
    exp_seconds = _per_eval_loop(lambda x: x + 1e-12 * jnp.exp(x), logs, evals=evals)
    return 2 * K * F * N / seconds / 1e9, exp_seconds


def _per_eval_loop(step, x, *data, evals: int) -> float:
    """Seconds per ``x = step(x, *data)`` inside a compiled loop (``data`` as arguments)."""
    import jax

    def loop(x, *data):
        return jax.lax.fori_loop(0, evals, lambda _, y: step(y, *data), x)

    return _time(jax.jit(loop), x, *data, repeats=ROUNDS) / evals


def _eqns(fn, *args) -> int:
    import jax

    def subs(value):
        if hasattr(value, "jaxpr") and hasattr(value, "consts"):  # a ClosedJaxpr
            yield value.jaxpr
        elif hasattr(value, "eqns"):
            yield value
        elif isinstance(value, (tuple, list)):
            for v in value:
                yield from subs(v)

    def count(jaxpr) -> int:
        n = 0
        for eqn in jaxpr.eqns:
            n += 1
            for value in eqn.params.values():
                n += sum(count(sub) for sub in subs(value))
        return n

    return count(jax.make_jaxpr(fn)(*args).jaxpr)


def bayesgmm_fn(X, K):
    from bench_sampling import em_reference

    from bayesgmm import build_model, make_spec
    from bayesgmm.inference.starts import em_start, jittered_unconstrained_starts

    Xv, spec = make_spec(X, K, "full")
    model = build_model(Xv, spec=spec)
    em = em_reference(X, K, 0)
    point = jittered_unconstrained_starts(
        model, em_start(em, spec), 1, 0.0, np.random.default_rng(0)
    )[0]
    return model, point, spec


def run(name: str, repeats: int, methods: list[str], peak: float) -> list:
    import jax
    import jax.numpy as jnp
    from bench_em import make_data

    N, K, D = WORKLOADS[name]
    X = make_data(N, K, D, 0)
    flops = N * K * (D**2 + 4 * D) * 3
    shape_rate, exp_seconds = workload_rates(N, K, D, repeats)
    floors = (flops / (peak * 1e9), flops / (shape_rate * 1e9), shape_rate, exp_seconds)
    rows = []
    model, point, spec = bayesgmm_fn(X, K)
    names = [v.name for v in model.value_vars]
    if "bayesgmm" in methods:
        from bayesgmm.inference.jaxgraph import model_functions

        functions, shared = model_functions(model, spec)
        values = jax.jit(functions.prepare)(tuple(jnp.asarray(s.get_value()) for s in shared))
        vg = jax.jit(jax.value_and_grad(functions.logp))
        p = {k: jnp.asarray(v) for k, v in point.items()}
        seconds = _per_eval(vg, p, values, evals=repeats)
        rows.append((name, "bayesgmm", seconds, _eqns(vg, p, values)))
    if "pytensor" in methods and D <= 20:
        from pymc.sampling.jax import get_jaxified_logp

        logp = get_jaxified_logp(model)
        vg = jax.jit(jax.value_and_grad(lambda xs: logp(xs)))
        xs = [jnp.asarray(point[n]) for n in names]
        rows.append((name, "pytensor", _per_eval(vg, xs, evals=repeats), _eqns(vg, xs)))
    if "numpyro" in methods:
        rows.append((name, "numpyro", *numpyro_time(X, K, repeats)))
    return [(*r, *floors) for r in rows]


def numpyro_time(X, K, repeats):
    import jax
    import jax.numpy as jnp
    from bench_sampling import em_reference, em_start, numpyro_model
    from numpyro.infer import init_to_value
    from numpyro.infer.util import initialize_model

    model = numpyro_model(X, K)
    start = em_start(em_reference(X, K, 0))  # the EM start (random starts fail for D >= 20)
    info = initialize_model(
        jax.random.PRNGKey(0),
        model,
        model_args=(jnp.asarray(X),),
        init_strategy=init_to_value(values=start),
    )
    vg = jax.jit(jax.value_and_grad(info.potential_fn))
    z = info.param_info.z
    return _per_eval(vg, z, evals=repeats), _eqns(vg, z)


def main(argv=None) -> None:
    global ROUNDS, THREADS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="W1,W2,D20,D50")
    p.add_argument("--methods", default="bayesgmm,pytensor,numpyro")
    p.add_argument("--repeats", type=int, default=200, help="evaluations per timed loop")
    p.add_argument("--rounds", type=int, default=3, help="timed loops per timing (median)")
    p.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help="compiled loops at once for the 'all cores' time (default: the available cores)",
    )
    p.add_argument(
        "--one-core",
        action="store_true",
        help="pin the process to one core and XLA to one thread (what each chain has when "
        "the sampler runs one chain per core), so the peak is one core's",
    )
    args = p.parse_args(argv)
    ROUNDS, THREADS = args.rounds, args.threads
    if args.one_core:  # before JAX starts its thread pools
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flags}".strip()
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = "1"
        THREADS = 1
        print("one core: affinity", sorted(os.sched_getaffinity(0)), "and one XLA thread")
    warnings.filterwarnings("ignore")
    import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the samplers use)

    load = os.getloadavg()
    print(
        f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cpus)"
    )
    peak = peak_gflops()
    rows = []
    for name in args.workloads.split(","):
        new = run(name, args.repeats, args.methods.split(","), peak)
        rows += new
        for r in new:
            print(f"# {r[0]} {r[1]}: {r[2][0] * 1e6:.0f} us", file=sys.stderr, flush=True)
    print(
        f"measured float64 peak: {peak:.1f} GFLOP/s (1000 x 1000 matrix product); "
        f"'all cores': {THREADS} compiled loops at once, one per core, as the sampler's chains"
    )
    header = (
        f"{'workload':<9}{'method':<10}{'us/eval':>9}{'all cores':>10}{'eqns':>6}"
        f"{'floor(peak)':>12}{'x':>6}{'x all':>7}"
        f"{'KxFxN GFLOP/s':>14}{'floor(KxFxN)':>13}{'x':>6}{'exp pass us':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, method, (alone, busy), eqns, peak_floor, shape_floor, shape_rate, exp_s in rows:
        print(
            f"{name:<9}{method:<10}{alone * 1e6:>9.0f}{busy * 1e6:>10.0f}{eqns:>6}"
            f"{peak_floor * 1e6:>12.1f}{alone / peak_floor:>6.1f}{busy / peak_floor:>7.1f}"
            f"{shape_rate:>14.1f}{shape_floor * 1e6:>13.1f}"
            f"{alone / shape_floor:>6.1f}{exp_s * 1e6:>12.1f}"
        )
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
