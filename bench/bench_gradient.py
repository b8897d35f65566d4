"""Benchmark: one value + gradient of the log density, against the arithmetic floor.

For each workload (full covariance, ``bench_em.make_data``), the jitted value and gradient
of the posterior log density near the EM start, per evaluation inside one compiled loop
of evaluations (as inside a sampler: no Python dispatch), timed to
``jax.block_until_ready`` (median of three loops after a warm-up), for:

``bayesgmm``
    What the NumPyro backend samples: the model's priors through PyTensor's JAX backend
    and the likelihood from ``bayesgmm.inference.jaxlik`` (custom VJP).
``pytensor``
    The whole PyMC model through PyTensor's JAX backend (``get_jaxified_logp``), as the
    backend did before: the likelihood as the model declares it.
``numpyro``
    The hand-written NumPyro model of ``bench_sampling.py`` (``MixtureSameFamily`` of
    ``MultivariateNormal(scale_tril)``), its potential from ``initialize_model``.

The floor is ``N K (D**2 + 4 D) 3`` floating-point operations (the Mahalanobis product
and its gradient; see the issue) at this machine's measured float64 rate, two ways: the
peak of a jitted 1000 x 1000 matrix product, and a fused multiply-add streamed over 4
million elements (the rate of memory-bound elementwise work, which is what most of a
mixture's per-point arithmetic is: exp, log and sums over N x K terms). Graph size is
the number of equations in the jaxpr of the value and gradient (it grows like D**2 for
bayesgmm, D**3 for an unrolled triangular inverse).

Run::

    python bench/bench_gradient.py
    python bench/bench_gradient.py --workloads W1,W2
"""

from __future__ import annotations

import argparse
import sys
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


def _time(fn, *args, repeats: int) -> float:
    import jax

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def _per_eval(vg, params, *rest, evals: int) -> float:
    """Seconds per value + gradient inside one compiled loop of ``evals`` evaluations (as
    in a sampler's trajectory: no Python dispatch per call). Each evaluation starts from
    a point moved by the previous gradient, so nothing can be hoisted out of the loop."""
    import jax

    def body(_, carry):
        _, grad = vg(carry, *rest)
        return jax.tree.map(lambda a, g: a + 1e-12 * g, carry, grad)

    loop = jax.jit(lambda p, *r: jax.lax.fori_loop(0, evals, body, p))
    return _time(loop, params, *rest, repeats=3) / evals


def gflops() -> tuple[float, float]:
    """Measured float64 rates of this machine (GFLOP/s): a 1000 x 1000 matrix product
    (the peak, BLAS-3 with cache reuse) and a fused multiply-add streamed over 4 million
    elements (memory-bound, like the per-point work of a mixture)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(1000, 1000)))
    peak = 2e9 / _time(jax.jit(lambda x: x @ x), a, repeats=10) / 1e9
    x, y, z = (jnp.asarray(rng.normal(size=4_000_000)) for _ in range(3))
    stream = 8e6 / _time(jax.jit(lambda x, y, z: x * y + z), x, y, z, repeats=20) / 1e9
    return peak, stream


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


def run(name: str, repeats: int, methods: list[str], rates: tuple[float, float]) -> list:
    import jax
    import jax.numpy as jnp
    from bench_em import make_data

    N, K, D = WORKLOADS[name]
    X = make_data(N, K, D, 0)
    flops = N * K * (D**2 + 4 * D) * 3
    floors = tuple(flops / (rate * 1e9) for rate in rates)
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="W1,W2,D20,D50")
    p.add_argument("--methods", default="bayesgmm,pytensor,numpyro")
    p.add_argument("--repeats", type=int, default=200, help="evaluations per timed loop")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the samplers use)

    rates = gflops()
    rows = []
    for name in args.workloads.split(","):
        new = run(name, args.repeats, args.methods.split(","), rates)
        rows += new
        for r in new:
            print(f"# {r[0]} {r[1]}: {r[2] * 1e6:.0f} us", file=sys.stderr, flush=True)
    print(
        f"measured float64 rates: {rates[0]:.1f} GFLOP/s (matrix product), "
        f"{rates[1]:.1f} GFLOP/s (streamed multiply-add)"
    )
    header = (
        f"{'workload':<9}{'method':<10}{'us/eval':>10}{'eqns':>7}"
        f"{'floor us (peak)':>17}{'x':>7}{'floor us (stream)':>19}{'x':>7}"
    )
    print(header)
    print("-" * len(header))
    for name, method, seconds, eqns, peak, stream in rows:
        print(
            f"{name:<9}{method:<10}{seconds * 1e6:>10.0f}{eqns:>7}"
            f"{peak * 1e6:>17.1f}{seconds / peak:>7.1f}{stream * 1e6:>19.1f}"
            f"{seconds / stream:>7.1f}"
        )


if __name__ == "__main__":
    main()
