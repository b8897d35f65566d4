"""Benchmark: streaming predictions on a large synthetic posterior.

Builds a synthetic posterior (``--chains`` x ``--draws`` draws of K weights, means and
full covariances) and ``--n`` new points, then times ``predict_proba`` (posterior mean
only) and ``score_samples`` (log predictive density), reporting wall time and the peak
memory allocated *beyond the inputs*, measured two ways:

* ``tracemalloc`` peak of Python/numpy allocations during the call (numpy reports its
  buffers to tracemalloc);
* growth of the process's resident-set high-water mark (``ru_maxrss``) across the call
  (coarse: it only grows when a call exceeds every earlier peak).

Run::

    python bench/bench_predict.py --n 100000 --chains 4 --draws 1000 --k 5 --d 4

Optionally ``--intervals-max-draws 500`` also times ``predict_proba`` with 94% HDIs
from 500 evenly thinned draws. BLAS threads are pinned with ``--threads`` (default 1:
the machine is shared; 0 leaves BLAS its own default, as in a user's session).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

import numpy as np
import xarray as xr
from threadpoolctl import threadpool_limits

from bayesgmm.core.predict import predict_proba, score_samples

MiB = 2**20


def synthetic_posterior(chains: int, draws: int, k: int, d: int, seed: int) -> xr.Dataset:
    """Posterior-like draws around k well-separated centres with random covariances."""
    rng = np.random.default_rng(seed)
    shape = (chains, draws)
    centres = rng.normal(scale=8.0, size=(k, d))
    weights = rng.dirichlet(np.full(k, 50.0), size=shape)
    means = centres + 0.05 * rng.normal(size=(*shape, k, d))
    a = rng.normal(size=(1, 1, k, d, d)) / np.sqrt(d)
    base = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(d)
    cov = base * np.exp(0.05 * rng.normal(size=(*shape, k, 1, 1)))
    names = [f"f{j}" for j in range(d)]
    return xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), weights),
            "means": (("chain", "draw", "component", "feature"), means),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        },
        coords={"feature": names, "feature_bis": names, "component": np.arange(k)},
    ), centres


def maxrss_mib() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MiB


def measure(label: str, fn) -> None:
    rss0 = maxrss_mib()
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out_mib = sum(np.asarray(o).nbytes for o in (out if isinstance(out, tuple) else (out,))) / MiB
    print(
        f"{label:<34s} wall {wall:7.1f} s  cpu {cpu:7.1f} s  "
        f"tracemalloc peak {peak / MiB:8.1f} MiB (output {out_mib:.1f} MiB)  "
        f"ru_maxrss growth {maxrss_mib() - rss0:8.1f} MiB",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--d", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--intervals-max-draws", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    post, centres = synthetic_posterior(args.chains, args.draws, args.k, args.d, args.seed)
    rng = np.random.default_rng(args.seed + 1)
    X = centres[rng.integers(args.k, size=args.n)] + rng.normal(size=(args.n, args.d))
    inputs = (post.nbytes + X.nbytes) / MiB
    print(
        f"N={args.n} points x S={args.chains * args.draws} draws x K={args.k}, D={args.d}; "
        f"inputs {inputs:.1f} MiB; BLAS threads {args.threads or 'default'}; baseline maxrss "
        f"{maxrss_mib():.0f} MiB",
        flush=True,
    )
    with threadpool_limits(limits=args.threads or None):
        measure("predict_proba (mean only)", lambda: predict_proba(post, X))
        measure("score_samples", lambda: score_samples(post, X))
        if args.intervals_max_draws:
            measure(
                f"predict_proba + HDI ({args.intervals_max_draws} draws)",
                lambda: predict_proba(
                    post, X, return_intervals=True, max_draws=args.intervals_max_draws
                ),
            )


if __name__ == "__main__":
    main()
