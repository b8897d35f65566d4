"""Benchmark: the cost of ``missing="marginalize"`` relative to complete data.

W2-sized data (N=10,000, K=5, D=4, full covariances; ``bench_em.make_data``), once
complete and once with a fraction of its entries (default 10%) missing completely at
random, side by side in one run:

``EM``
    ``fit_em`` maximum likelihood from the same k-means++ start, a fixed number of
    iterations (``tol=0``): seconds per iteration. With missing values each iteration
    factorises every component's observed block once per missingness pattern and adds
    the conditional covariances of the missing coordinates to the M-step.
``value + gradient``
    The NumPyro backend's log density and its gradient (what NUTS evaluates at every
    leapfrog step), jitted, per evaluation inside one compiled loop, timed to
    ``jax.block_until_ready`` (``bench_gradient._per_eval``).
``NUTS`` (with ``--sample``)
    A short default ``BayesianGMM`` fit of each (``--draws``/``--tune``, 2 chains):
    wall seconds including compilation, and min bulk ESS per second.

Ratios are missing / complete. The machine's load average is printed first and last.

Run::

    python bench/bench_missing.py
    python bench/bench_missing.py --fraction 0.2 --sample --draws 300 --tune 300
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def with_missing(X: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = X.copy()
    out[rng.random(X.shape) < fraction] = np.nan
    empty = np.isnan(out).all(axis=1)
    out[empty] = X[empty]  # every row keeps an observed value
    return out


def em_seconds(X, K, iters, missing):
    from bayesgmm import fit_em

    t = time.perf_counter()
    fit = fit_em(X, K, prior=None, n_init=1, tol=0.0, max_iter=iters, random_seed=0,
                 missing=missing)  # fmt: skip
    return (time.perf_counter() - t) / fit.n_iter, fit.n_iter


def gradient_seconds(X, K, evals, missing):
    import jax
    import jax.numpy as jnp
    import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the sampler uses)
    from bench_gradient import _per_eval

    from bayesgmm import build_model, make_spec
    from bayesgmm.inference.jaxgraph import model_functions

    Xv, spec = make_spec(X, K, "full", missing=missing)
    model = build_model(Xv, spec=spec)
    functions, shared = model_functions(model, spec)
    values = functions.prepare(tuple(jnp.asarray(s.get_value()) for s in shared))
    vg = jax.jit(jax.value_and_grad(functions.logp))
    point = {k: jnp.asarray(v) for k, v in model.initial_point().items()}
    return _per_eval(vg, point, values, evals=evals)


def nuts(X, K, draws, tune, missing):
    import arviz as az

    from bayesgmm import BayesianGMM
    from bayesgmm.analysis.diagnostics import DEFAULT_VARS, flat_parameters

    sampler = {"draws": draws, "tune": tune, "chains": 2, "random_seed": 1,
               "progressbar": False}  # fmt: skip
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm = BayesianGMM(K, sampler=sampler, missing=missing).fit(X)
    seconds = time.perf_counter() - t
    post = gmm.posterior
    ess = float(az.ess(flat_parameters(post, [v for v in DEFAULT_VARS if v in post])).min())
    return seconds, ess


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--fraction", type=float, default=0.10)
    ap.add_argument("--em-iters", type=int, default=50)
    ap.add_argument("--evals", type=int, default=200)
    ap.add_argument("--sample", action="store_true", help="also time short NUTS fits")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--tune", type=int, default=200)
    args = ap.parse_args()
    from bench_em import make_data

    from bayesgmm.core.missing import Patterns

    print(f"load average at start: {os.getloadavg()}")
    X = make_data(args.n, args.k, args.d, 0)
    Xm = with_missing(X, args.fraction, 1)
    pats = Patterns.of(Xm)
    print(f"N={args.n}, K={args.k}, D={args.d}: {np.isnan(Xm).mean():.1%} of the entries "
          f"missing, {(~pats.observed.all(axis=1)).sum()} incomplete patterns + complete "
          f"rows ({np.isnan(Xm).any(axis=1).mean():.1%} of rows incomplete)")  # fmt: skip
    rows = []
    em_c, _ = em_seconds(X, args.k, args.em_iters, "error")
    em_m, _ = em_seconds(Xm, args.k, args.em_iters, "marginalize")
    rows.append(("EM, ms per iteration", 1e3 * em_c, 1e3 * em_m))
    g_c = gradient_seconds(X, args.k, args.evals, "error")
    g_m = gradient_seconds(Xm, args.k, args.evals, "marginalize")
    rows.append(("value + gradient, ms", 1e3 * g_c, 1e3 * g_m))
    if args.sample:
        s_c, e_c = nuts(X, args.k, args.draws, args.tune, "error")
        s_m, e_m = nuts(Xm, args.k, args.draws, args.tune, "marginalize")
        rows.append(("NUTS fit, s (incl. compile)", s_c, s_m))
        rows.append(("NUTS min bulk ESS / s", e_c / s_c, e_m / s_m))
    print(f"\n{'':32s}{'complete':>12s}{'missing':>12s}{'ratio':>8s}")
    for name, a, b in rows:
        print(f"{name:32s}{a:12.3f}{b:12.3f}{b / a:8.2f}")
    print(f"\nload average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
