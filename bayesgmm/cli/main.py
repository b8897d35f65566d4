"""Command-line interface: ``bayesgmm fit``, ``bayesgmm run`` and ``bayesgmm demo``.

Every command that fits can write a report directory (see :mod:`bayesgmm.analysis.report`).
User errors (bad path, column, spec or data) print one line to stderr and exit with
code 2; other failures print one line and exit with 1 (``--traceback`` shows the
traceback). With ``--strict``, a fit whose diagnostics verdict is FAIL also exits with 1
(after writing its report).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main"]

EXIT_OK, EXIT_FAILURE, EXIT_USER_ERROR = 0, 1, 2


class _Progress:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(
                f"[{time.perf_counter() - self.t0:6.1f} s] {message}", file=sys.stderr, flush=True
            )


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, key in (("draws", "draws"), ("tune", "tune"), ("chains", "chains")):
        if getattr(args, name, None) is not None:
            out[key] = getattr(args, name)
    if getattr(args, "seed", None) is not None:
        out["random_seed"] = args.seed
    if getattr(args, "sampler", None) is not None:
        out["nuts_sampler"] = args.sampler
    if args.quiet:
        out["progressbar"] = False
    return out


#: The CLI keeps drawing (numpyro backend) until min bulk/tail ESS >= this per chain ...
TARGET_ESS_PER_CHAIN = 100
#: ... or this many seconds have passed.
MAX_TIME = 1800.0


def _with_targets(cfg, args: argparse.Namespace):
    """The CLI's default: draw until the diagnostics' "ok" ESS (100 per chain) and R-hat
    are met, within MAX_TIME, when the backend draws in rounds (numpyro); --target-ess 0
    turns it off, and a spec's own target_ess is kept."""
    from dataclasses import replace

    target = getattr(args, "target_ess", None)
    if target == 0:
        return replace(cfg, target_ess=None)
    if target is None:
        if cfg.target_ess is not None or cfg.resolved_sampler() != "numpyro":
            return cfg
        target = TARGET_ESS_PER_CHAIN * cfg.chains
    max_time = getattr(args, "max_time", None) or cfg.max_time or MAX_TIME
    return replace(cfg, target_ess=target, max_time=max_time)


def _plan(cfg) -> str:
    from bayesgmm.core.config import RHAT_OK

    plan = f"NUTS {cfg.chains} chains x {cfg.draws} draws after {cfg.tune} tuning steps"
    if cfg.target_ess is not None:
        plan += (
            f", more rounds of {cfg.draws} until min ESS >= {cfg.target_ess} and R-hat <= "
            f"{RHAT_OK} (at most {cfg.max_time:.0f} s)"
        )
    return plan


def _fit_spec(spec, args: argparse.Namespace, progress: _Progress):
    """Fit the spec (one K, or each K compared by PSIS-LOO); returns (gmm, data, selection)."""
    from bayesgmm.estimator.estimator import BayesianGMM
    from bayesgmm.exceptions import ConvergenceWarning, DegenerateFitError, SamplingWarning

    data = spec.load_data()
    for note in data.notes:
        progress(note)
    cfg = _with_targets(spec.sampler_config(_overrides(args)), args)
    caught_notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        warnings.simplefilter("always", ConvergenceWarning)
        if len(spec.components) == 1:
            K = spec.components[0]
            progress(f"fitting K={K} ({spec.covariance}): EM start, then {_plan(cfg)}")
            gmm = BayesianGMM(
                K, spec.covariance, priors=spec.priors or None, sampler=cfg, em=spec.em or None
            ).fit(data.X)
            selection = None
        else:
            from bayesgmm.workflows.selection import loo_compare

            progress(f"fitting K in {spec.components} and comparing them by PSIS-LOO")
            res = loo_compare(
                data.X,
                spec.components,
                covariance_type=spec.covariance,
                priors=spec.priors or None,
                sampler={**cfg.to_dict(), "random_seed": None},
                em=spec.em or None,
                random_seed=cfg.random_seed or 0,
                progress=not args.quiet,
            )
            try:
                best = res.best
            except DegenerateFitError as exc:
                out = Path(args.out)
                out.mkdir(parents=True, exist_ok=True)
                res.table.to_csv(out / "selection.csv")
                raise DegenerateFitError(
                    f"{exc} No report was written; the comparison is in {out / 'selection.csv'}."
                ) from None
            gmm, selection = res.fits[best], res.table
            print(
                f"chosen K = {best}: the highest PSIS-LOO elpd among K = "
                f"{', '.join(str(k) for k in spec.components)} (selection.csv)"
            )
            caught_notes.append(
                f"K compared by PSIS-LOO over {spec.components}: best K={best} (highest elpd "
                "among fits whose diagnostics did not fail); see selection.csv."
            )
    for w in caught:
        if issubclass(w.category, SamplingWarning | ConvergenceWarning):
            first = str(w.message).splitlines()[0]
            caught_notes.append(f"{w.category.__name__} during the fit: {first}")
            progress(f"warning: {first}")
    return gmm, data, selection, caught_notes


def _check_out(out: str | None) -> None:
    """Refuse an output directory the report may not write to, before fitting."""
    if out:
        from bayesgmm.analysis.report import check_output_dir

        check_output_dir(out)


def _exit_code(verdict: str, strict: bool) -> int:
    if strict and verdict == "fail":
        print(
            "bayesgmm: the diagnostics verdict is FAIL and --strict is set: exit code 1 "
            "(see diagnostics.txt for what to do).",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _report(gmm, data, selection, notes, title: str, out: str, progress: _Progress) -> None:
    from bayesgmm.analysis.report import write_report

    page = write_report(
        gmm,
        out,
        title=title,
        notes=notes,
        data=data.X if data is not None else None,
        selection=selection,
        progress=lambda m: progress(f"report: {m}"),
    )
    verdict = (Path(out) / "diagnostics.txt").read_text().splitlines()[0]
    print(verdict)
    print(f"report written to {page} (model saved in {Path(out) / 'model'})")


def _cmd_fit(args: argparse.Namespace) -> int:
    from bayesgmm.cli.specs import DataSpec, ModelSpec

    columns = None
    if args.columns:
        columns = [c.strip() for item in args.columns for c in item.split(",") if c.strip()]
    spec = ModelSpec(
        name=Path(args.data).stem,
        data=DataSpec(
            path=str(Path(args.data).resolve()),
            columns=columns,
            missing=args.missing,
            origin="cli",
        ),
        components=[args.components],
        covariance=args.covariance,
        source=str(args.data),
    )
    _check_out(args.out)
    progress = _Progress(args.quiet)
    gmm, data, selection, notes = _fit_spec(spec, args, progress)
    _report(
        gmm, data, selection, data.notes + notes, f"bayesgmm fit: {spec.name}", args.out, progress
    )
    return _exit_code(gmm.diagnostics_.verdict, args.strict)


def _cmd_run(args: argparse.Namespace) -> int:
    from bayesgmm.cli.specs import load_spec

    spec = load_spec(args.spec)
    _check_out(args.out)
    progress = _Progress(args.quiet)
    progress(f"model spec {args.spec}: {spec.description or spec.name}")
    gmm, data, selection, notes = _fit_spec(spec, args, progress)
    title = f"bayesgmm run: {spec.name}" + (f" - {spec.description}" if spec.description else "")
    _report(
        gmm, data, selection, [f"spec: {args.spec}", *data.notes, *notes], title, args.out, progress
    )
    return _exit_code(gmm.diagnostics_.verdict, args.strict)


def _cmd_demo(args: argparse.Namespace) -> int:
    import pandas as pd

    from bayesgmm.core.config import SamplerConfig
    from bayesgmm.core.datasets import load_faithful
    from bayesgmm.estimator.estimator import BayesianGMM
    from bayesgmm.exceptions import SamplingWarning

    _check_out(args.out)
    df = load_faithful()
    print(
        f"bayesgmm demo: Old Faithful ({df.shape[0]} eruptions x {df.shape[1]} features), "
        f"K={args.components}, covariance 'full'"
    )
    sampler = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "random_seed": args.seed,
        "progressbar": not args.quiet,
    }
    if args.sampler is not None:
        sampler["nuts_sampler"] = args.sampler
    sampler = _with_targets(SamplerConfig.from_dict(sampler), args)
    gmm = BayesianGMM(args.components, sampler=sampler)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SamplingWarning)
        gmm.fit(df)
    elapsed = time.perf_counter() - t0
    print()
    print(gmm.em_.summary())
    print()
    rounds = gmm.idata_["posterior"].attrs.get("rounds", 1)
    print(
        f"NUTS ({gmm.idata_.attrs.get('nuts_sampler')}): {args.chains} chains x "
        f"{gmm.idata_['posterior'].sizes['draw']} draws ({rounds} round{'s' * (rounds > 1)} "
        f"of {args.draws}) after {args.tune} tuning steps, started at the EM solution; fit "
        f"took {elapsed:.1f} s"
    )
    print()
    print("Posterior summary (data units; 89% equal-tailed intervals, ArviZ default):")
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(gmm.summary().to_string())
    sampling = [w for w in caught if issubclass(w.category, SamplingWarning)]
    print()
    if gmm.relabel_info_ is not None:
        print(f"Relabelling: {gmm.relabel_info_}")
        print()
    print(gmm.diagnostics_)
    if sampling:
        print()
        print("WARNING: the diagnostics above flagged problems; treat the posterior with care.")
    if args.out:
        print()
        notes = [
            "data: bundled Old Faithful data (272 eruptions; eruptions, waiting).",
            *(
                f"SamplingWarning during the fit: {str(w.message).splitlines()[0]}"
                for w in sampling
            ),
        ]
        _report(
            gmm, None, None, notes, "bayesgmm demo: Old Faithful", args.out, _Progress(args.quiet)
        )
    return _exit_code(gmm.diagnostics_.verdict, args.strict)


def _add_sampler_args(p: argparse.ArgumentParser, defaults: dict[str, Any] | None = None) -> None:
    from bayesgmm.core.config import RHAT_OK

    d = defaults or {}
    g = p.add_argument_group("sampler settings (override the spec's [sampler] table)")
    g.add_argument("--draws", type=int, default=d.get("draws"), help="posterior draws per chain")
    g.add_argument("--tune", type=int, default=d.get("tune"), help="tuning steps per chain")
    g.add_argument("--chains", type=int, default=d.get("chains"), help="number of chains")
    g.add_argument("--seed", type=int, default=d.get("seed"), help="random seed")
    g.add_argument(
        "--sampler", default=None, help="NUTS backend: auto, pymc, nutpie, numpyro or blackjax"
    )
    g.add_argument(
        "--target-ess",
        type=int,
        default=None,
        metavar="N",
        help="keep drawing (in rounds of --draws) until the min bulk and tail ESS reach N and "
        f"R-hat <= {RHAT_OK} (default {TARGET_ESS_PER_CHAIN} x chains with the numpyro backend; "
        "0: exactly --draws)",
    )
    g.add_argument(
        "--max-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"no new round of draws after this (default {MAX_TIME:.0f})",
    )
    g.add_argument("--quiet", action="store_true", help="no progress messages or bars")
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with code 1 when the diagnostics verdict is FAIL (the report is still "
        "written); without it a FAIL is reported but the exit code is 0",
    )


def _fit_args(p: argparse.ArgumentParser) -> None:
    from bayesgmm.core.families import COVARIANCE_TYPES

    p.add_argument("data", metavar="DATA.csv", help="CSV file with a header row")
    p.add_argument("--components", "-k", type=int, required=True, help="number of components K")
    p.add_argument(
        "--columns",
        nargs="+",
        metavar="COL",
        help="columns to use, e.g. --columns a,b,c (space- or comma-separated; default: all "
        "columns). Only numeric columns can be used",
    )
    p.add_argument(
        "--covariance", default="full", choices=COVARIANCE_TYPES, help="covariance family"
    )
    p.add_argument(
        "--missing",
        default="error",
        choices=("error", "drop"),
        help="rows with missing values: stop with an error (default) or drop them (reported)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="report directory")
    _add_sampler_args(p)


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC.toml", help="model spec, e.g. models/faithful.toml")
    p.add_argument("--out", required=True, metavar="DIR", help="report directory")
    _add_sampler_args(p)


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--components", "-k", type=int, default=2, help="number of components")
    p.add_argument(
        "--out",
        default="out/demo",
        metavar="DIR",
        help="write the report here (default: out/demo); '' for no report",
    )
    _add_sampler_args(p, {"draws": 1000, "tune": 1000, "chains": 4, "seed": 2026})


# command -> (what runs it, its arguments, one-line help, description)
_COMMANDS = {
    "fit": (
        _cmd_fit,
        _fit_args,
        "fit a CSV file and write a report",
        "Fit a Bayesian Gaussian mixture to numeric columns of a CSV file (with a header row) "
        "and write a report (tables, diagnostics, assignments, figures, report.html, saved "
        "model). Only numeric columns can be used: select them with --columns. Exit codes: "
        "0 done, 1 failure (or a FAIL verdict with --strict), 2 bad input.",
    ),
    "run": (
        _cmd_run,
        _run_args,
        "fit a TOML model spec (models/NAME.toml) and write a report",
        "Fit the model described by a TOML spec (data, K or a list of K, covariance, priors, "
        "sampler) and write a report. See bayesgmm.cli.specs for the format.",
    ),
    "demo": (
        _cmd_demo,
        _demo_args,
        "fit the bundled Old Faithful data and print a posterior summary",
        "Fit the bundled Old Faithful data and print a posterior summary; with --out, also "
        "write the report there.",
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesgmm",
        description="Fully Bayesian Gaussian mixture models: EM-started NUTS, relabelled "
        "posteriors, uncertainty-aware clustering.",
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of a failure"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (func, add_args, summary, description) in _COMMANDS.items():
        command = sub.add_parser(name, help=summary, description=description)
        add_args(command)
        command.set_defaults(func=func)
    return parser


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    head, rest = lines[0], [ln.removeprefix("- ").strip() for ln in lines[1:]]
    return " ".join([head, "; ".join(rest)]) if rest else head


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesgmm`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    from bayesgmm.exceptions import BayesGMMError

    try:
        return args.func(args)
    except (BayesGMMError, FileNotFoundError, FileExistsError, IsADirectoryError) as exc:
        if args.traceback:
            raise
        print(f"bayesgmm: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("bayesgmm: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        print(
            f"bayesgmm: failed: {type(exc).__name__}: {_one_line(exc)} "
            "(run with --traceback for details)",
            file=sys.stderr,
        )
        return EXIT_FAILURE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
