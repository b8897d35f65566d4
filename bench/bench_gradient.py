"""Benchmark: one value + gradient of the log density, against the arithmetic floor.

For each workload (full covariance, ``bench_em.make_data``), the jitted value and gradient
of the posterior log density at the EM start, timed to ``jax.block_until_ready`` (median
of repeats after a warm-up call), for:

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
and its gradient; see the issue) at this machine's measured rate: the float64 GFLOP/s
of a jitted 1000 x 1000 matrix product. Graph size is the number of equations in the
jaxpr of the value and gradient (it grows like D**2 for bayesgmm, D**3 for an unrolled
triangular inverse).

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


def gflops() -> float:
    """Measured float64 matrix-product rate of this machine (GFLOP/s)."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).normal(size=(1000, 1000)))
    mm = jax.jit(lambda x: x @ x)
    return 2e9 / _time(mm, a, repeats=10) / 1e9


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
    from bayesgmm.inference.jaxgraph import model_functions
    from bayesgmm.inference.starts import em_start, jittered_unconstrained_starts

    Xv, spec = make_spec(X, K, "full")
    model = build_model(Xv, spec=spec)
    em = em_reference(X, K, 0)
    point = jittered_unconstrained_starts(
        model, em_start(em, spec), 1, 0.0, np.random.default_rng(0)
    )[0]
    return model, point, spec


def run(name: str, repeats: int, methods: list[str], rate: float) -> list:
    import jax
    import jax.numpy as jnp
    from bench_em import make_data

    N, K, D = WORKLOADS[name]
    X = make_data(N, K, D, 0)
    floor = N * K * (D**2 + 4 * D) * 3 / (rate * 1e9)
    rows = []
    model, point, spec = bayesgmm_fn(X, K)
    names = [v.name for v in model.value_vars]
    if "bayesgmm" in methods:
        from bayesgmm.inference.jaxgraph import model_functions

        functions, shared = model_functions(model, spec)
        values = jax.jit(functions.prepare)(tuple(jnp.asarray(s.get_value()) for s in shared))
        vg = jax.jit(jax.value_and_grad(functions.logp))
        p = {k: jnp.asarray(v) for k, v in point.items()}
        rows.append((name, "bayesgmm", _time(vg, p, values, repeats=repeats), _eqns(vg, p, values)))
    if "pytensor" in methods and D <= 20:
        from pymc.sampling.jax import get_jaxified_logp

        logp = get_jaxified_logp(model)
        vg = jax.jit(jax.value_and_grad(lambda xs: logp(xs)))
        xs = [jnp.asarray(point[n]) for n in names]
        rows.append((name, "pytensor", _time(vg, xs, repeats=repeats), _eqns(vg, xs)))
    if "numpyro" in methods:
        rows.append((name, "numpyro", *numpyro_time(X, K, repeats)))
    return [(*r, floor) for r in rows]


def numpyro_time(X, K, repeats):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer.util import initialize_model

    N, D = X.shape
    loc, sd = X.mean(axis=0), X.std(axis=0)

    def model(x):
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(K)))
        with numpyro.plate("component", K):
            means = numpyro.sample("means", dist.Normal(loc, 2.0 * sd).to_event(1))
            sds = numpyro.sample("sds", dist.HalfNormal(sd).to_event(1))
            chol_corr = numpyro.sample("chol_corr", dist.LKJCholesky(D, concentration=2.0))
        mix = dist.MixtureSameFamily(
            dist.Categorical(probs=weights),
            dist.MultivariateNormal(means, scale_tril=sds[..., :, None] * chol_corr),
        )
        with numpyro.plate("obs", N):
            numpyro.sample("x", mix, obs=x)

    info = initialize_model(jax.random.PRNGKey(0), model, model_args=(jnp.asarray(X),))
    vg = jax.jit(jax.value_and_grad(info.potential_fn))
    z = info.param_info.z
    return _time(vg, z, repeats=repeats), _eqns(vg, z)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="W1,W2,D20,D50")
    p.add_argument("--methods", default="bayesgmm,pytensor,numpyro")
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the samplers use)

    rate = gflops()
    rows = []
    for name in args.workloads.split(","):
        rows += run(name, args.repeats, args.methods.split(","), rate)
        for r in rows[-3:]:
            print(f"# {r[0]} {r[1]}: {r[2] * 1e6:.0f} us", file=sys.stderr, flush=True)
    print(f"measured rate: {rate:.1f} GFLOP/s (float64 matrix product)")
    header = f"{'workload':<9}{'method':<10}{'us/eval':>10}{'floor us':>10}{'x floor':>9}{'eqns':>8}"
    print(header)
    print("-" * len(header))
    for name, method, seconds, eqns, floor in rows:
        print(
            f"{name:<9}{method:<10}{seconds * 1e6:>10.0f}{floor * 1e6:>10.1f}"
            f"{seconds / floor:>9.1f}{eqns:>8}"
        )


if __name__ == "__main__":
    main()
