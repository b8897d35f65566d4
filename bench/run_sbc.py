"""Simulation-based calibration of bayesgmm (issue 9): ranks, χ² p-values, histograms.

Two models, each fitted with bayesgmm's whole pipeline (EM start, NUTS, relabelling) on
data simulated from the prior (``bayesgmm.workflows.sbc.SBC_PRIORS``):

``1d``  K=2, D=1 (weights, means, sds)
``2d``  K=2, D=2, full covariance (weights, means, sds, correlations)
``2d-VEV``, ``2d-EVE``, ``2d-VVE``, ...
        K=2, D=2, one of mclust's families (``2d-`` and any name bayesgmm knows): the
        true parameters drawn from the model's own prior (a uniform rotation, ...)
``1d-noise``, ``2d-noise``
        K=2, D=1 or D=2 (full), and a background-noise component of volume 30 or 900
        (uniform on [-15, 15] or its square; the means' prior is Normal(0, 3)):
        ``noise_weight`` ranked too

Run::

    python bench/run_sbc.py --model both --sims 200 --out out/sbc
    python bench/run_sbc.py --model 2d-VEV --sims 200 --draws 500 --out out/sbc
    python bench/run_sbc.py --model 1d-noise --sims 200 --draws 500 --out out/sbc

Writes ``<out>/<model>_ranks.csv``, ``_fits.csv``, ``_uniformity.csv`` and
``_ranks.png``, and prints the per-quantity χ² p-values as Markdown. The two models run
in two processes side by side when ``--model both``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

MODELS = {"1d": {"n_features": 1}, "2d": {"n_features": 2}}
EXTRA = {
    "1d-noise": {"n_features": 1, "noise": 30.0},
    "2d-noise": {"n_features": 2, "noise": 900.0},
}


def _model(name: str) -> dict:
    """``1d``, ``2d`` or ``2d-<family>``: run_sbc's model arguments."""
    if name in MODELS or name in EXTRA:
        return {**MODELS, **EXTRA}[name]
    return {"n_features": 2, "covariance_type": name.removeprefix("2d-")}


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="both", help="1d, 2d, both, or 2d-<family> (2d-VEV)")
    p.add_argument("--sims", type=int, default=200)
    p.add_argument("--n-obs", type=int, default=100)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=500)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--n-ranks", type=int, default=99)
    p.add_argument("--bins", type=int, default=10)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--out", default="out/sbc")
    return p.parse_args(argv)


def run_one(model: str, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from bayesgmm.workflows.sbc import run_sbc

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    res = run_sbc(
        args.sims,
        n_obs=args.n_obs,
        n_components=2,
        draws=args.draws,
        tune=args.tune,
        chains=args.chains,
        n_ranks=args.n_ranks,
        random_seed=args.seed,
        **_model(model),
    )
    wall = time.perf_counter() - start
    uni = res.uniformity(args.bins)
    res.ranks.to_csv(out / f"{model}_ranks.csv")
    res.fits.to_csv(out / f"{model}_fits.csv")
    uni.to_csv(out / f"{model}_uniformity.csv")
    res.plot(args.bins).savefig(out / f"{model}_ranks.png", dpi=90)
    fits = res.fits
    ok = fits["status"] == "ok"
    print(f"## {model}: {int(ok.sum())}/{len(fits)} fits ok in {wall:.0f} s")
    print(
        f"verdicts: {fits.loc[ok, 'verdict'].value_counts().to_dict()}; "
        f"fits with divergences: {int((fits.loc[ok, 'divergences'] > 0).sum())}; "
        f"max R-hat over fits: {fits.loc[ok, 'max_rhat'].max():.3f}"
    )
    print("\n| quantity | χ² | p-value | Bonferroni p |\n|---|---:|---:|---:|")
    for name, row in uni.iterrows():
        print(f"| {name} | {row['chi2']:.1f} | {row['p_value']:.3f} | {row['p_adjusted']:.3f} |")
    verdict = "PASS" if uni["p_adjusted"].min() >= 0.01 else "FAIL"
    print(f"\n{verdict}: smallest Bonferroni-adjusted p-value {uni['p_adjusted'].min():.3f}\n")


def main(argv=None) -> None:
    args = _args(argv)
    if args.model != "both":
        run_one(args.model, args)
        return
    rest = [a for a in (argv or sys.argv[1:])]
    procs = [
        subprocess.Popen([sys.executable, __file__, *rest, "--model", m], stdout=subprocess.PIPE)
        for m in MODELS
    ]
    for p in procs:
        out, _ = p.communicate()
        sys.stdout.write(out.decode())
        if p.returncode:
            raise SystemExit(p.returncode)


if __name__ == "__main__":
    main()
