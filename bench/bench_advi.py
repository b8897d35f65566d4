"""Benchmark: NUTS (``BayesianGMM`` defaults) against minibatch ADVI (``inference="advi"``).

For each size N (default 10^4, 10^5, 10^6; K=5 components, D=4 features, the same seeded
well-separated data as ``bench_em.py`` and ``bench_sampling.py``), each method fits in a
fresh Python process, so that its peak memory is its own: the parent reads the child's
peak resident set size from ``os.wait4`` (``ru_maxrss``). The child times
``BayesianGMM(...).fit(X)`` (EM, model build, compiling, sampling or optimisation, draws,
pointwise log-likelihood, relabelling, diagnostics) and saves the relabelled posterior
means and sds of the component ``means``. Imports and data generation are outside the
timed fit but inside the peak memory.

Both fits start from, and are relabelled to, the same EM solution (same seed), so their
components correspond. Agreement is ``max |ADVI mean - NUTS mean| / NUTS sd`` over all
components and features of ``means``; the table also gives the median ratio of ADVI's
to NUTS's posterior sd (mean-field ADVI typically underestimates posterior variance).

A run that exceeds ``--time-limit`` seconds is killed and reported as "not finished
within T s" (NUTS at 10^5 and 10^6 points takes hours on 2 cores). Run::

    python bench/bench_advi.py --sizes 10000,100000,1000000 --nuts-chains 4 \\
        --nuts-draws 300 --nuts-tune 300 --time-limit 7200

and a quick check that it works::

    python bench/bench_advi.py --sizes 2000 --nuts-draws 50 --nuts-tune 50 --nuts-chains 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K, D = 5, 4


def _parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated N")
    p.add_argument("--methods", default="nuts,advi", help="comma-separated: nuts, advi")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nuts-chains", type=int, default=4)
    p.add_argument("--nuts-draws", type=int, default=1000)
    p.add_argument("--nuts-tune", type=int, default=1000)
    p.add_argument("--advi-steps", type=int, default=20_000)
    p.add_argument("--advi-batch", type=int, default=1024)
    p.add_argument("--advi-draws", type=int, default=1000)
    p.add_argument(
        "--time-limit", type=float, default=3600.0, help="seconds per fit before it is killed"
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# -- child process: one fit ----------------------------------------------------------------
def _worker(args: argparse.Namespace) -> None:
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    from bench_em import make_data  # same synthetic workloads as the EM benchmark

    from bayesgmm import BayesianGMM

    X = make_data(args.n, K, D, args.seed)
    if args.worker == "nuts":
        gmm = BayesianGMM(
            K,
            sampler={
                "draws": args.nuts_draws,
                "tune": args.nuts_tune,
                "chains": args.nuts_chains,
                "random_seed": args.seed,
                "progressbar": False,
            },
        )
    else:
        gmm = BayesianGMM(
            K,
            inference="advi",
            advi={
                "n_steps": args.advi_steps,
                "batch_size": args.advi_batch,
                "draws": args.advi_draws,
                "random_seed": args.seed,
                "progressbar": False,
            },
        )
    t = time.perf_counter()
    gmm.fit(X)
    seconds = time.perf_counter() - t
    means = gmm.posterior["means"]
    result = {
        "seconds": seconds,
        "mean": means.mean(("chain", "draw")).values.tolist(),
        "sd": means.std(("chain", "draw")).values.tolist(),
        "em_means": np.asarray(gmm.em_.means).tolist(),
        "verdict": gmm.diagnostics_.verdict,
        "failed": gmm.diagnostics_.failed,
        "backend": gmm.idata_.attrs.get("nuts_sampler", gmm.idata_.attrs.get("inference")),
    }
    Path(args.out).write_text(json.dumps(result))


# -- parent: run children, collect, print --------------------------------------------------
def _run_child(method: str, n: int, args: argparse.Namespace) -> dict:
    """Run one fit in a fresh process; its result, peak RSS (MB) and status."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, __file__, "--worker", method, "--n", str(n), "--out", str(out)]
        cmd += [
            f"--seed={args.seed}",
            f"--nuts-chains={args.nuts_chains}",
            f"--nuts-draws={args.nuts_draws}",
            f"--nuts-tune={args.nuts_tune}",
            f"--advi-steps={args.advi_steps}",
            f"--advi-batch={args.advi_batch}",
            f"--advi-draws={args.advi_draws}",
        ]
        log = (Path(tmp) / "stderr.txt").open("wb")  # a file: a full pipe would block the child
        proc = subprocess.Popen(cmd, start_new_session=True, stderr=log)
        t0 = time.perf_counter()
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - t0 > args.time_limit:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.close()
        stderr = (Path(tmp) / "stderr.txt").read_text(errors="replace")
        wall = time.perf_counter() - t0
        # ru_maxrss is in kilobytes on Linux (bytes on macOS)
        scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024**2
        row = {"method": method, "n": n, "peak_mb": usage.ru_maxrss * scale, "wall": wall}
        if timed_out:
            row["status"] = f"not finished within {args.time_limit:.0f} s"
        elif proc.returncode != 0 or not out.exists():
            last = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
            row["status"] = f"failed (exit {proc.returncode}): {last}"
        else:
            row.update(json.loads(out.read_text()), status="ok")
        return row


def _agreement(advi: dict, nuts: dict) -> tuple[float, float]:
    """``max |mean difference| / NUTS sd`` and the median ADVI sd / NUTS sd."""
    from scipy.optimize import linear_sum_assignment

    a_mean, a_sd = np.asarray(advi["mean"]), np.asarray(advi["sd"])
    n_mean, n_sd = np.asarray(nuts["mean"]), np.asarray(nuts["sd"])
    # both were relabelled to their EM solution; match the two EM solutions (identical
    # when both EM runs found the same optimum, as they should with the same seed)
    cost = ((np.asarray(nuts["em_means"])[:, None] - np.asarray(advi["em_means"])[None]) ** 2).sum(
        -1
    )
    _, order = linear_sum_assignment(cost)
    a_mean, a_sd = a_mean[order], a_sd[order]
    return float(np.max(np.abs(a_mean - n_mean) / n_sd)), float(np.median(a_sd / n_sd))


def _table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        "| N | method | fit s | peak RSS MB | diagnostics | max abs(mean diff) / NUTS sd "
        "| ADVI sd / NUTS sd (median) | status |",
        "|---:|---|---:|---:|---|---:|---:|---|",
    ]
    by = {(r["n"], r["method"]): r for r in rows}
    for r in rows:
        label = (
            f"NUTS ({r.get('backend', 'default backend')}, {args.nuts_chains} x {args.nuts_tune}+"
            f"{args.nuts_draws})"
            if r["method"] == "nuts"
            else f"minibatch ADVI ({args.advi_steps:,} steps, batch {args.advi_batch:,}, "
            f"{args.advi_draws:,} draws)"
        )
        agree = sd_ratio = "-"
        nuts = by.get((r["n"], "nuts"))
        if r["method"] == "advi" and r["status"] == "ok" and nuts and nuts["status"] == "ok":
            diff, ratio = _agreement(r, nuts)
            agree, sd_ratio = f"{diff:.2f}", f"{ratio:.2f}"
        seconds = diag = "-"
        if r["status"] == "ok":
            seconds = f"{r['seconds']:.1f}"
            diag = r["verdict"] + (f" ({', '.join(r['failed'])})" if r["failed"] else "")
        lines.append(
            f"| {r['n']:,} | {label} | {seconds} | {r['peak_mb']:,.0f} | {diag} | {agree} "
            f"| {sd_ratio} | {r['status']} |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",") if s]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - {"nuts", "advi"})
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; valid: nuts, advi")
    rows = []
    for n in sizes:
        for method in methods:
            print(f"N={n:,} {method} ...", file=sys.stderr, flush=True)
            row = _run_child(method, n, args)
            print(f"  {row['status']}, {row['wall']:.0f} s wall", file=sys.stderr, flush=True)
            rows.append(row)
    print(f"K={K}, D={D}, seed {args.seed}; per-fit time limit {args.time_limit:.0f} s\n")
    print(_table(rows, args))
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n(parent process peak RSS {own:,.0f} MB, not included above)")


if __name__ == "__main__":
    ARGS = _parse_args()
    if ARGS.worker:
        _worker(ARGS)
    else:
        main(ARGS)
