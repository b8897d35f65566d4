"""Command-line interface: ``bayesgmm fit``, ``run``, ``demo`` and ``classify``
(:mod:`bayesgmm.cli.classify`).

Every command fits and writes a report directory (see :mod:`bayesgmm.analysis.report`):
``--out DIR``, by default ``out/NAME`` in the current directory, where NAME is the data
file's stem (``fit``), the spec's name (``run``) or ``demo``. A report only replaces the
files of an earlier bayesgmm report; it stops, before fitting, rather than overwrite any
other file (``demo --out ''`` writes none). User errors (bad path, column, spec or data)
print one line to stderr and exit with code 2; other failures print one line and exit
with 1 (``--traceback`` shows the traceback). With ``--strict``, a fit whose diagnostics
verdict is FAIL also exits with 1 (after writing its report). The options and help texts
are in :mod:`bayesgmm.cli.options`.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from bayesgmm.cli.options import (
    DEFAULT_OUT,
    MAX_TIME,
    TARGET_ESS_PER_CHAIN,
    build_parser,
    column_names,
)

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


def _with_targets(cfg, args: argparse.Namespace):
    """The CLI's default: draw until the diagnostics' "ok" ESS (100 per chain) and R-hat
    are met, within MAX_TIME, when the backend draws in rounds (numpyro); --target-ess 0
    turns it off, and a spec's own target_ess is kept. --max-time (checked > 0 by the
    parser) replaces the spec's max_time."""
    from dataclasses import replace

    target, max_time = getattr(args, "target_ess", None), getattr(args, "max_time", None)
    if target == 0:
        return replace(cfg, target_ess=None)
    if max_time is not None:
        cfg = replace(cfg, max_time=max_time)
    if target is None:
        if cfg.target_ess is not None or cfg.resolved_sampler() != "numpyro":
            return cfg
        target = TARGET_ESS_PER_CHAIN * cfg.chains
    return replace(
        cfg, target_ess=target, max_time=MAX_TIME if cfg.max_time is None else cfg.max_time
    )


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
    from bayesgmm.exceptions import (
        ConvergenceWarning,
        DataError,
        DegenerateFitError,
        ReportPathError,
        SamplingWarning,
    )

    data = spec.load_data()
    missing = "marginalize" if spec.data.missing == "marginalize" else "error"
    noise = None if data.errors is None else data.errors.to_numpy() ** 2  # variances
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
                K, spec.covariance, priors=spec.priors or None, sampler=cfg,
                em=spec.em or None, missing=missing, noise=spec.noise,
            ).fit(data.X, data.known, sample_weight=data.weights, noise_cov=noise,
                  noise_init=data.noise_init)  # fmt: skip
            selection = None
        elif data.weights is not None:
            raise DataError(
                f"weights {spec.data.weights!r} and a list of components: choosing K by "
                "PSIS-LOO is not available for frequency-weighted data; give one K."
            )
        elif data.known is not None:
            raise DataError(
                f"known components {spec.data.known!r} and a list of components: the known "
                "components number the components of one K; give one K."
            )
        else:
            from bayesgmm.core.config import resolve_seed
            from bayesgmm.workflows.selection import loo_compare

            master = resolve_seed(cfg).random_seed  # the run's seed, drawn once if not given
            progress(f"fitting K in {spec.components} and comparing them by PSIS-LOO")
            res = loo_compare(
                data.X,
                spec.components,
                covariance_type=spec.covariance,
                priors=spec.priors or None,
                sampler={**cfg.to_dict(), "random_seed": None},
                em=spec.em or None,
                random_seed=master,
                progress=not args.quiet,
                missing=missing,
                noise_cov=noise,
                noise=spec.noise,
                noise_init=data.noise_init,
            )
            try:
                best = res.best
            except DegenerateFitError as exc:
                from bayesgmm.analysis.report import write_selection

                try:
                    written = write_selection(args.out, res.table)
                except ReportPathError as refused:  # a file of the user's appeared meanwhile
                    raise DegenerateFitError(f"{exc} Nothing was written: {refused}") from None
                where = (
                    f"the comparison is in {Path(args.out) / 'selection.csv'}."
                    if written
                    else f"{args.out} holds an earlier report, of another run, left as it "
                    f"was. The comparison:\n{res.table.to_string()}"
                )
                raise DegenerateFitError(f"{exc} No report was written; {where}") from None
            gmm, selection = res.fits[best], res.table
            print(
                f"chosen K = {best}: the highest PSIS-LOO elpd among K = "
                f"{', '.join(str(k) for k in spec.components)} (selection.csv)"
            )
            caught_notes.append(
                f"K compared by PSIS-LOO over {spec.components}: best K={best} (highest elpd "
                "among fits whose diagnostics did not fail); see selection.csv."
                + (" Every fit had the same background-noise component." if spec.noise else "")
            )
            caught_notes.append(
                f"random_seed {master} seeds the comparison (rerunning the spec with it "
                "reruns every fit); each K's fit has its own seed derived from it, the "
                "chosen fit's is given above."
            )
    for w in caught:
        if issubclass(w.category, SamplingWarning | ConvergenceWarning):
            first = str(w.message).splitlines()[0]
            caught_notes.append(f"{w.category.__name__} during the fit: {first}")
            progress(f"warning: {first}")
    return gmm, data, selection, caught_notes


def _resolve_out(args: argparse.Namespace, name: str, optional: bool = False) -> None:
    """Set ``args.out`` (the default ``out/NAME`` when not given) and refuse, before
    fitting, an output directory the report may not write to. ``optional``: ``--out ''``
    means no report (``demo``)."""
    if args.out is None:
        args.out = DEFAULT_OUT.format(name=name)
    if args.out == "":
        if optional:
            return
        from bayesgmm.exceptions import ReportPathError

        raise ReportPathError("--out '' is not a directory; give the report's directory")
    from bayesgmm.analysis.report import check_output_dir

    check_output_dir(args.out)


def _exit_code(verdict: str, strict: bool) -> int:
    if strict and verdict == "fail":
        print(
            "bayesgmm: the diagnostics verdict is FAIL and --strict is set: exit code 1 "
            "(see diagnostics.txt for what to do).",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def _report(
    gmm, data, selection, notes, title: str, out: str, progress: _Progress, verdict: bool = True
) -> None:
    """Write the report; print its verdict line (unless the caller printed the
    diagnostics already) and where it is."""
    from bayesgmm.analysis.report import write_report

    page = write_report(
        gmm,
        out,
        title=title,
        notes=notes,
        data=data.X if data is not None else None,
        labels=data.labels if data is not None else None,
        selection=selection,
        progress=lambda m: progress(f"report: {m}"),
    )
    if verdict:
        print((Path(out) / "diagnostics.txt").read_text().splitlines()[0])
    if data is not None and data.labels is not None:  # the clusters against known labels
        print((Path(out) / "labels.txt").read_text().splitlines()[0])
    print(f"report written to {page} (model saved in {Path(out) / 'model'})")


def _cmd_fit(args: argparse.Namespace) -> int:
    from bayesgmm.cli.specs import DataSpec, ModelSpec

    if args.noise_init and not args.noise:
        from bayesgmm.exceptions import ConfigError

        raise ConfigError(
            f"--noise-init {args.noise_init} guesses the points a background-noise component "
            "starts from; add --noise for one."
        )
    columns = column_names(args.columns)
    spec = ModelSpec(
        name=Path(args.data).stem,
        data=DataSpec(
            path=str(Path(args.data).resolve()),
            columns=columns,
            missing=args.missing,
            weights=args.weights,
            known=args.known,
            noise_init=args.noise_init,
            errors=[c.strip() for c in args.errors.split(",") if c.strip()]
            if args.errors
            else None,
            origin="cli",
        ),
        components=[args.components],
        covariance=args.covariance,
        noise=args.noise,
        source=str(args.data),
    )
    _resolve_out(args, spec.name)
    progress = _Progress(args.quiet)
    gmm, data, selection, notes = _fit_spec(spec, args, progress)
    _report(
        gmm, data, selection, data.notes + notes, f"bayesgmm fit: {spec.name}", args.out, progress
    )
    return _exit_code(gmm.diagnostics_.verdict, args.strict)


def _cmd_run(args: argparse.Namespace) -> int:
    from bayesgmm.cli.specs import load_spec

    spec = load_spec(args.spec)
    if spec.classifier is not None:  # Bayesian discriminant analysis (bayesgmm classify)
        from bayesgmm.cli.classify import run_spec

        if args.out is None:
            args.out = DEFAULT_OUT.format(name=spec.name)
        return run_spec(spec, args, _overrides(args))
    _resolve_out(args, spec.name)
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

    _resolve_out(args, "demo", optional=True)
    progress = _Progress(args.quiet)
    df = load_faithful()
    print(
        f"bayesgmm demo: Old Faithful ({df.shape[0]} eruptions x {df.shape[1]} features), "
        f"K={args.components}, covariance 'full'" + (f"; report to {args.out}" if args.out else "")
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
    progress(f"fitting K={args.components} (full): EM start, then {_plan(sampler)}")
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
    print("Posterior summary (data units; 94% HDI: highest-density intervals):")
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
        # the diagnostics are printed above: the report's verdict line would repeat them
        title = "bayesgmm demo: Old Faithful"
        _report(gmm, None, None, notes, title, args.out, progress, verdict=False)
    return _exit_code(gmm.diagnostics_.verdict, args.strict)


def _cmd_classify(args: argparse.Namespace) -> int:
    from bayesgmm.cli.classify import run_classify

    if args.out is None:
        args.out = DEFAULT_OUT.format(name=Path(args.data).stem)
    return run_classify(args, _overrides(args))


def _parser() -> argparse.ArgumentParser:
    return build_parser(
        {"fit": _cmd_fit, "run": _cmd_run, "demo": _cmd_demo, "classify": _cmd_classify}
    )


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
