"""Benchmark: bayesgmm's EM (``fit_em(prior=None)``) against scikit-learn's GaussianMixture.

Both fit the same seeded synthetic data (well-separated Gaussian clusters) in the same
process, with k-means++ starts, the same number of starts, the same reg_covar and the
same fixed number of iterations (``tol=0`` so neither stops early; the iteration counts
are printed). BLAS threads are pinned identically for both with threadpoolctl, repeats
are interleaved (alternating which library runs first) and medians are reported.

Run::

    python bench/bench_em.py --n 100000 --k 5 --d 5 --n-init 1 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

from bayesgmm.core.em import fit_em

FAMILIES = ("full", "tied", "diag", "spherical")


def make_data(n: int, k: int, d: int, seed: int) -> np.ndarray:
    """``n`` points from ``k`` well-separated Gaussian clusters with random covariances."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=12.0, size=(k, d))
    sizes = rng.multinomial(n, np.full(k, 1.0 / k))
    blocks = []
    for c, m in zip(centres, sizes, strict=True):
        a = rng.normal(size=(d, d)) / np.sqrt(d)
        chol = np.linalg.cholesky(a @ a.T + 0.3 * np.eye(d))
        blocks.append(c + rng.normal(size=(m, d)) @ chol.T)
    X = np.concatenate(blocks)
    return X[rng.permutation(n)]


def time_ours(X, k, ct, n_init, max_iter, seed):
    t = time.perf_counter()
    fit = fit_em(
        X, k, covariance_type=ct, prior=None, init="k-means++", n_init=n_init, tol=0.0,
        max_iter=max_iter, reg_covar=1e-6, random_seed=seed,
    )  # fmt: skip
    return time.perf_counter() - t, fit.n_iter, fit.log_likelihood


def time_sklearn(X, k, ct, n_init, max_iter, seed):
    from sklearn.mixture import GaussianMixture  # here: make_data's users need no sklearn

    gm = GaussianMixture(
        k, covariance_type=ct, init_params="k-means++", n_init=n_init, tol=0.0,
        max_iter=max_iter, reg_covar=1e-6, random_state=seed,
    )  # fmt: skip
    t = time.perf_counter()
    gm.fit(X)
    elapsed = time.perf_counter() - t
    return elapsed, gm.n_iter_, float(gm.score(X) * X.shape[0])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--d", type=int, default=5)
    p.add_argument("--n-init", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--max-iter", type=int, default=100)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads for both libraries")
    p.add_argument("--covariance-type", default="all", choices=("all", *FAMILIES))
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    families = FAMILIES if args.covariance_type == "all" else (args.covariance_type,)
    X = make_data(args.n, args.k, args.d, args.seed)
    warnings.filterwarnings("ignore", message=".*converge")  # tol=0: both run max_iter

    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=args.threads):
        blas = {(i["internal_api"], i["num_threads"]) for i in threadpool_info()}
        print(
            f"n={args.n} k={args.k} d={args.d} n_init={args.n_init} max_iter={args.max_iter} "
            f"repeats={args.repeats} BLAS threads={sorted(blas)}"
        )
        header = (
            f"{'family':<10} {'iters ours/skl':>14} {'ours [s]':>9} {'sklearn [s]':>11} "
            f"{'ratio':>6} {'logL ours':>16} {'logL sklearn':>16}"
        )
        print(header)
        print("-" * len(header))
        differ = []
        for ct in families:
            ours, skl = [], []
            for rep in range(args.repeats):
                seed = args.seed + rep
                runners = [("ours", time_ours), ("skl", time_sklearn)]
                for name, runner in runners if rep % 2 == 0 else runners[::-1]:
                    res = runner(X, args.k, ct, args.n_init, args.max_iter, seed)
                    (ours if name == "ours" else skl).append(res)
            t_o = statistics.median(r[0] for r in ours)
            t_s = statistics.median(r[0] for r in skl)
            iters = f"{ours[-1][1]}/{skl[-1][1]}"
            print(
                f"{ct:<10} {iters:>14} {t_o:>9.3f} {t_s:>11.3f} {t_o / t_s:>6.2f} "
                f"{ours[-1][2]:>16.4f} {skl[-1][2]:>16.4f}"
            )
            if abs(ours[-1][2] - skl[-1][2]) > 1e-6 * abs(skl[-1][2]):
                differ.append(ct)
        print("ratio = ours / sklearn (median times); logL = total log-likelihood, last repeat")
        if differ:
            print(
                f"note: final log-likelihoods differ for {differ}: the two runs ended in "
                "different local optima (same data, same iteration count)."
            )


if __name__ == "__main__":
    main()
