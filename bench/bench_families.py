"""Benchmark: ESS per second of bayesgmm's default fit for every covariance family.

Each family is fitted with ``BayesianGMM(K, covariance_type=family)`` and its default
settings (NumPyro backend, EM start, chains in parallel threads) on the same seeded
synthetic data (``bench_em.make_data``; the W2 workload by default: N=10,000, K=5, D=4),
each in its own fresh process with empty compilation caches (a cold fit: compiling is
included). Per family the table gives the wall time of the whole ``fit`` (EM, model,
compiling, sampling, relabelling, modes, pointwise log-likelihood, diagnostics), the
minimum bulk ESS and maximum R-hat over the weights, means, sds and (for correlated
families) the strictly lower correlations, label-aligned as in ``bench_sampling.py`` (per
draw, the best permutation to the EM means), ESS/s, its ratio to ``full`` (VVV) in the
same run, and the mean leapfrog steps per draw.

Run::

    python bench/bench_families.py --draws 500 --tune 500
    python bench/bench_families.py --families VVV,VEV,EVE --workload small
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = {"small": (1_000, 3, 2), "large": (10_000, 5, 4)}


def _parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=tuple(WORKLOADS), default="large")
    p.add_argument("--families", default="mclust", help="comma-separated names, or 'mclust'")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def worker(args: argparse.Namespace) -> None:
    """One family on the workload in this (fresh) process; prints a JSON row."""
    import logging

    import numpy as np

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    sys.path.insert(0, str(HERE))
    from bench_em import make_data
    from bench_sampling import align, em_reference

    from bayesgmm import BayesianGMM
    from bayesgmm.core.families import family

    n, K, D = WORKLOADS[args.workload]
    X = make_data(n, K, D, args.seed)
    name = args.worker
    cfg = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "random_seed": args.seed,
        "progressbar": False,
    }
    t = time.perf_counter()
    gmm = BayesianGMM(K, covariance_type=name, sampler=cfg).fit(X)
    wall = time.perf_counter() - t
    post = gmm.idata_["posterior"]
    cov = post["covariance"].transpose("chain", "draw", "component", ...).values
    sds = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    draws = {
        "weights": post["weights"].transpose("chain", "draw", "component").values,
        "means": post["means"].transpose("chain", "draw", "component", "feature").values,
        "sds": sds,
        "corr": cov / (sds[..., :, None] * sds[..., None, :]),
    }
    fam = family(name)
    ess, rhat = diagnostics(align(draws, em_reference(X, K, args.seed).means), fam.correlated)
    stats = gmm.idata_["sample_stats"]
    row = {
        "family": name,
        "mclust": fam.mclust,
        "parameters": fam.n_parameters(K, D) + K * D + K - 1,
        "wall": wall,
        "ess": ess,
        "rhat": rhat,
        "steps": float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan"),
        "divergences": int(stats["diverging"].sum()),
        "verdict": str(gmm.diagnostics_.verdict),
    }
    print("ROW " + json.dumps(row), flush=True)


def diagnostics(draws: dict, correlated: bool) -> tuple[float, float]:
    """Minimum bulk ESS and maximum R-hat over the aligned weights, means, sds and (when
    ``correlated``) the strictly lower correlations."""
    import arviz as az
    import numpy as np

    C, S, _K, D = draws["means"].shape
    cols = [draws[n].reshape(C, S, -1) for n in ("weights", "means", "sds")]
    if correlated and D > 1:
        i, j = np.tril_indices(D, k=-1)
        cols.append(draws["corr"][..., i, j].reshape(C, S, -1))
    flat = np.concatenate(cols, axis=-1)
    ess = np.asarray(az.ess(flat, method="bulk", chain_axis=0, draw_axis=1))
    rhat = np.asarray(az.rhat(flat, chain_axis=0, draw_axis=1))
    return float(np.min(ess)), float(np.max(rhat))


def _spawn(name: str, argv: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-families-") as caches:
        env = dict(os.environ)
        env["BAYESGMM_JAX_CACHE"] = str(Path(caches) / "jax")
        env["PYTENSOR_FLAGS"] = f"compiledir={Path(caches) / 'pytensor'}"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", name]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    rows = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    if proc.returncode != 0 or not rows:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        return {"family": name, "error": f"exit {proc.returncode}"}
    return json.loads(rows[-1])


def main(args: argparse.Namespace, argv: list[str]) -> None:
    if args.families == "mclust":
        sys.path.insert(0, str(HERE.parent))
        from bayesgmm.core.families import MCLUST_MODELS

        names = list(MCLUST_MODELS)
    else:
        names = [s.strip() for s in args.families.split(",") if s.strip()]
    if "VVV" not in names and "full" not in names:
        names.insert(0, "VVV")  # the reference
    rows = []
    for name in names:
        row = _spawn(name, argv)
        rows.append(row)
        print(f"{name}: {row}", file=sys.stderr, flush=True)
    ref = next(r for r in rows if r["family"] in ("VVV", "full") and "error" not in r)
    ref_rate = ref["ess"] / ref["wall"]
    n, K, D = WORKLOADS[args.workload]
    print(
        f"\nworkload {args.workload} (N={n:,}, K={K}, D={D}); {args.chains} chains x "
        f"{args.tune} tuning + {args.draws} draws; load {os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| family | parameters | wall s | min bulk ESS | max R-hat | ESS/s | × full "
          "| leapfrog steps/draw | divergences | verdict |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['family']} | | | | | | | | | {r['error']} |")
            continue
        rate = r["ess"] / r["wall"]
        print(
            f"| {r['mclust']} | {r['parameters']} | {r['wall']:.1f} | {r['ess']:,.0f} | "
            f"{r['rhat']:.3f} | {rate:.2f} | {rate / ref_rate:.2f} | {r['steps']:.1f} | "
            f"{r['divergences']} | {r['verdict']} |"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    argv = sys.argv[1:]
    ns = _parse_args(argv)
    if ns.worker:
        worker(ns)
    else:
        main(ns, argv)
