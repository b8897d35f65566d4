"""Benchmark: the first fit of a model structure against later fits that reuse its sampler.

Fits ``--repeats`` datasets of the same shape (new data each time, same priors and
settings) with the NumPyro backend in one process and prints each fit's wall time and
whether the compiled sampler was reused (``compile_cache_hit``). The ratio of the first
fit's time to the median of the others is what compiling costs.

Run::

    python bench/bench_cache.py --n 100 --k 2 --d 1 --repeats 4
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--d", type=int, default=1)
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    args = p.parse_args(argv)

    import numpy as np

    from bayesgmm import BayesianGMM

    warnings.filterwarnings("ignore")
    times = []
    for i in range(args.repeats):
        rng = np.random.default_rng(i)
        centres = rng.normal(scale=5.0, size=(args.k, args.d))
        X = centres[rng.integers(args.k, size=args.n)] + rng.normal(size=(args.n, args.d))
        sampler = {
            "draws": args.draws,
            "tune": args.tune,
            "chains": args.chains,
            "nuts_sampler": "numpyro",
            "random_seed": i,
            "progressbar": False,
        }
        start = time.perf_counter()
        gmm = BayesianGMM(args.k, sampler=sampler).fit(X)
        wall = time.perf_counter() - start
        hit = gmm.idata_["posterior"].attrs.get("compile_cache_hit")
        times.append(wall)
        print(f"fit {i}: {wall:6.1f} s  compiled sampler reused: {hit}", flush=True)
    if len(times) > 1:
        later = statistics.median(times[1:])
        print(
            f"first fit {times[0]:.1f} s, later fits (median) {later:.1f} s: "
            f"ratio {times[0] / later:.1f}"
        )


if __name__ == "__main__":
    main()
