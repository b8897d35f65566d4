"""High-dimensional full-covariance fits with default settings: do they complete, how long.

Workloads (``bench_em.make_data``, well-separated clusters):

``D50``  N=2,000, K=3, D=50 (3,977 parameters)
``D39``  N=5,000, K=8, D=39 (speech-like: MFCC features; 6,559 parameters)

Each is one ``BayesianGMM(K).fit(X)`` with default settings (4 chains x 1,000 tuning +
1,000 draws, NumPyro backend), unless ``--draws`` / ``--tune`` / ``--chains`` shorten
it. Prints the wall time, the estimated compile time and the sampling time, leapfrog steps per draw,
the mass matrix used, and the diagnostics' R-hat / min bulk ESS.

Run::

    python bench/bench_highdim.py --workloads D50,D39
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
WORKLOADS = {"D50": (2_000, 3, 50), "D39": (5_000, 8, 39)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="D50,D39")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    from bench_em import make_data

    from bayesgmm import BayesianGMM

    for name in args.workloads.split(","):
        N, K, D = WORKLOADS[name]
        X = make_data(N, K, D, args.seed)
        cfg = {"draws": args.draws, "tune": args.tune, "chains": args.chains,
               "random_seed": args.seed, "progressbar": False}  # fmt: skip
        t = time.perf_counter()
        gmm = BayesianGMM(K, sampler=cfg).fit(X)
        wall = time.perf_counter() - t
        a = gmm.idata_["posterior"].attrs
        steps = float(gmm.idata_["sample_stats"]["n_steps"].mean())
        table = gmm.diagnostics_.table
        print(
            f"{name}: N={N} K={K} D={D}, {gmm.em_.n_parameters()} parameters, "
            f"{args.tune}+{args.draws} x {args.chains} chains: wall {wall:.0f} s, compile ~"
            f"{a.get('compile_seconds', float('nan')):.0f} s, sampling "
            f"{a.get('sampling_seconds', float('nan')):.0f} s, {steps:.0f} steps/draw, "
            f"{'dense' if a.get('dense_mass') else 'diagonal'} mass, R-hat "
            f"{table.loc['r_hat', 'value']:.3f}, min bulk ESS "
            f"{table.loc['ess_bulk', 'value']:.0f}, "
            f"verdict {gmm.diagnostics_.verdict}",
            flush=True,
        )


if __name__ == "__main__":
    main()
