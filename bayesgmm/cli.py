"""Command-line interface: ``bayesgmm demo`` (more commands arrive with the report)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    import arviz as az  # noqa: F401  (import cost shown before the fit starts)

    from bayesgmm import BayesianGMM, load_faithful
    from bayesgmm.exceptions import SamplingWarning

    df = load_faithful()
    print(
        f"bayesgmm demo: Old Faithful ({df.shape[0]} eruptions x {df.shape[1]} features), "
        f"K={args.components}, covariance 'full'"
    )
    gmm = BayesianGMM(
        args.components,
        sampler={
            "draws": args.draws,
            "tune": args.tune,
            "chains": args.chains,
            "random_seed": args.seed,
            "progressbar": not args.quiet,
        },
    )
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        gmm.fit(df)
    elapsed = time.perf_counter() - t0
    print()
    print(gmm.em_.summary())
    print()
    print(
        f"NUTS ({gmm.idata_.attrs.get('nuts_sampler')}): {args.chains} chains x {args.draws} "
        f"draws after {args.tune} tuning steps, started at the EM solution; fit took "
        f"{elapsed:.1f} s"
    )
    print()
    print("Posterior summary (data units; 89% equal-tailed intervals, ArviZ default):")
    with __import__("pandas").option_context("display.width", 120, "display.max_columns", 20):
        print(gmm.summary().to_string())
    sampling = [w for w in caught if issubclass(w.category, SamplingWarning)]
    print()
    if sampling:
        for w in sampling:
            print(f"WARNING: {w.message}")
    else:
        print(
            "Diagnostics: no divergences, R-hat <= 1.01 and bulk ESS >= 100 per chain for "
            "weights, means and sds."
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesgmm`` command."""
    parser = argparse.ArgumentParser(
        prog="bayesgmm", description="Fully Bayesian Gaussian mixture models."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser(
        "demo", help="fit the bundled Old Faithful data and print a posterior summary"
    )
    demo.add_argument("--components", "-k", type=int, default=2, help="number of components")
    demo.add_argument("--draws", type=int, default=1000, help="posterior draws per chain")
    demo.add_argument("--tune", type=int, default=1000, help="tuning steps per chain")
    demo.add_argument("--chains", type=int, default=4, help="number of chains")
    demo.add_argument("--seed", type=int, default=2026, help="random seed")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    from bayesgmm.exceptions import BayesGMMError

    try:
        return args.func(args)
    except BayesGMMError as exc:
        print(f"bayesgmm: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
