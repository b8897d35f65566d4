"""Benchmark: how often EM with a background-noise component ends short of its best fit.

Two data sets: ``scattered`` (two clusters of 100 points, N([0, 0], I) and N([6, 0], I),
and 20 points uniform on [-40, 40]^2: k-means++ likes to seed on them) and
``faithful_noise`` (Old Faithful and 30 scattered points, tests/data/mclust). For each
model and K, ``fit_em(X, K, covariance_type=m, prior=None, noise=True, n_init=n,
random_seed=s)`` over seeds ``s`` in 0..19; a fit is *short* when its log-likelihood is
more than 0.1 below the best of those 20 fits. It prints, per row, that best and how many
fits were short (and by how much at worst), for whichever bayesgmm is on the path; to
compare two versions, run it with each::

    git worktree add /tmp/old 6326c61
    PYTHONPATH=/tmp/old python bench/bench_noise_starts.py
    python bench/bench_noise_starts.py

``--by-kind`` instead counts, for single starts (``n_init=1``, which is seeded by ``init``
from all points) of each kind (``init="k-means++"`` and ``"random"``), the seeds that reach
within 0.1 of the best fit seen: of those single starts and of a fit with 100 starts from
each ``init``.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from bayesgmm import fit_em

HERE = Path(__file__).resolve().parent


def scattered(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([
        rng.normal([0.0, 0.0], 1.0, (100, 2)),
        rng.normal([6.0, 0.0], 1.0, (100, 2)),
        rng.uniform(-40.0, 40.0, (20, 2)),
    ])  # fmt: skip


def _loglik(X, K, model, init, n_init, seed) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_em(X, K, covariance_type=model, prior=None, noise=True, n_init=n_init,
                     init=init, random_seed=seed)  # fmt: skip
    return fit.log_likelihood


def by_kind(data: dict[str, np.ndarray], seeds: int) -> None:
    kinds = ("k-means++", "random")
    print(f"{'data':15s} {'model':5s} {'K':>2s} {'best':>10s} "
          + " ".join(f"{k + ' hits':>16s}" for k in kinds))  # fmt: skip
    for name, X in data.items():
        for model in ("EII", "VII", "VVV", "VVI", "EEE"):
            for K in (2, 3):
                single = np.array([[_loglik(X, K, model, kind, 1, s) for s in range(seeds)]
                                   for kind in kinds])  # fmt: skip
                best = max(single.max(), *(_loglik(X, K, model, k, 100, 99) for k in kinds))
                hits = (single > best - 0.1).sum(axis=1)
                print(f"{name:15s} {model:5s} {K:2d} {best:10.2f} "
                      + " ".join(f"{h:13d}/{seeds:<2d}" for h in hits), flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--n-init", default="1,10,20", help="comma-separated n_init values")
    ap.add_argument("--by-kind", action="store_true", help="single starts by kind")
    args = ap.parse_args()
    data = {
        "scattered": scattered(),
        "faithful_noise": pd.read_csv(
            HERE.parent / "tests/data/mclust/faithful_noise.csv"
        ).to_numpy(dtype=float),
    }
    if args.by_kind:
        by_kind(data, args.seeds)
        return
    print(f"{'data':15s} {'model':5s} {'K':>2s} {'n_init':>6s} {'best':>10s} "
          f"{'short':>7s} {'worst':>8s} {'s/fit':>6s}")  # fmt: skip
    for name, X in data.items():
        for model in ("EII", "VII", "VVV"):
            for K in (2, 3):
                for n_init in (int(v) for v in args.n_init.split(",")):
                    t = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        ll = np.array([
                            fit_em(X, K, covariance_type=model, prior=None, noise=True,
                                   n_init=n_init, random_seed=s).log_likelihood
                            for s in range(args.seeds)
                        ])  # fmt: skip
                    per_fit = (time.perf_counter() - t) / args.seeds
                    short = int((ll < ll.max() - 0.1).sum())
                    print(f"{name:15s} {model:5s} {K:2d} {n_init:6d} {ll.max():10.2f} "
                          f"{short:3d}/{args.seeds:<3d} {ll.min() - ll.max():8.2f} "
                          f"{per_fit:6.2f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
