"""The command line's options and help texts: ``bayesgmm fit``, ``run`` and ``demo``.

The commands themselves are in :mod:`bayesgmm.cli.main`. Building the parser imports
neither PyMC nor JAX (``--help`` is instant); the ``--sampler`` choices are the NUTS
backends installed here (:func:`bayesgmm.core.config.available_samplers`).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "COMMANDS", "DEFAULT_OUT", "MAX_TIME", "TARGET_ESS_PER_CHAIN", "build_parser", "checked",
    "column_names",
]  # fmt: skip

#: The CLI keeps drawing (numpyro backend) until min bulk/tail ESS >= this per chain ...
TARGET_ESS_PER_CHAIN = 100
#: ... or this many seconds have passed.
MAX_TIME = 1800.0


#: Where a report goes without --out: ``out/NAME`` in the current directory.
DEFAULT_OUT = "out/{name}"


def checked(constraint: Any, parse: Callable[[str], Any] = int) -> Callable[[str], Any]:
    """An argparse ``type``: the option's value parsed by ``parse`` if ``constraint`` (a
    :class:`~bayesgmm.core.checks.Constraint`, or the name of a
    :class:`~bayesgmm.core.config.SamplerConfig` setting) allows it; else argparse's error
    naming the option (exit code 2), before anything is read, printed or fitted.

    Examples
    --------
    >>> checked("max_time", float)("60")
    60.0
    >>> checked("draws")("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: must be an integer >= 1; got 0
    """
    if isinstance(constraint, str):
        from bayesgmm.core.config import SamplerConfig

        constraint = SamplerConfig.CONSTRAINTS[constraint]
    allowed = constraint.allowed.removesuffix(" or None")  # None: the option's absence

    def value(text: str) -> Any:
        try:
            v = parse(text)
        except ValueError:
            v = None
        if v is None or not constraint(v):
            raise argparse.ArgumentTypeError(f"must be {allowed}; got {text}")
        return v

    return value


def column_names(values: list[str] | None) -> list[str] | None:
    """The column names of ``--columns`` (each value space- or comma-separated), or None
    when the option is not given; refused when it names no column.

    Examples
    --------
    >>> column_names(["a,b", "c"])
    ['a', 'b', 'c']
    >>> column_names([" , "])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    bayesgmm.exceptions.DataError: --columns names no column; ...
    """
    if values is None:
        return None
    names = [c.strip() for item in values for c in item.split(",") if c.strip()]
    if not names:
        from bayesgmm.exceptions import DataError

        raise DataError(
            "--columns names no column; give them as --columns a,b (or leave the option "
            "out to use every numeric column)."
        )
    return names


def _add_sampler_args(p: argparse.ArgumentParser, defaults: str | dict[str, Any]) -> None:
    """The sampler options and --quiet / --strict. ``defaults``: the demo's own values,
    or ``"spec"`` (``run``: the spec's [sampler] table, else the package's defaults) or
    ``"package"`` (``fit``)."""
    from bayesgmm.core.checks import Constraint
    from bayesgmm.core.config import RHAT_OK, SamplerConfig, available_samplers

    base = SamplerConfig()
    d = defaults if isinstance(defaults, dict) else {}
    title = "sampler settings"
    if defaults == "spec":
        title += " (override the spec's [sampler] table)"

    def default(name: str, value: Any) -> str:
        if defaults == "spec":
            return f"default: the spec's, else {value}"
        return f"default {d.get(name, value)}"

    g = p.add_argument_group(title)
    g.add_argument(
        "--draws",
        type=checked("draws"),
        default=d.get("draws"),
        metavar="N",
        help=f"posterior draws per chain ({default('draws', base.draws)})",
    )
    g.add_argument(
        "--tune",
        type=checked("tune"),
        default=d.get("tune"),
        metavar="N",
        help=f"tuning steps per chain ({default('tune', base.tune)})",
    )
    g.add_argument(
        "--chains",
        type=checked("chains"),
        default=d.get("chains"),
        metavar="N",
        help=f"number of chains ({default('chains', base.chains)})",
    )
    seed = f"default {d['seed']}" if "seed" in d else "default: none, each run differs"
    if defaults == "spec":
        seed = "default: the spec's, else none: each run differs"
    g.add_argument(
        "--seed",
        type=checked("random_seed"),
        default=d.get("seed"),
        metavar="N",
        help=f"random seed; the same seed gives the same fit ({seed})",
    )
    installed = available_samplers()
    g.add_argument(
        "--sampler",
        default=None,
        choices=["auto", *installed],
        help="NUTS backend (installed here: " + ", ".join(installed) + "; default auto: the "
        "fastest of them)",
    )
    g.add_argument(
        "--target-ess",
        type=checked(Constraint(lambda v: v == 0 or v >= 1, "0 (off) or an integer >= 1")),
        default=None,
        metavar="N",
        help="keep drawing (in rounds of --draws) until the min bulk and tail ESS reach N and "
        f"R-hat <= {RHAT_OK} (default {TARGET_ESS_PER_CHAIN} x chains with the numpyro backend; "
        "0: exactly --draws)",
    )
    g.add_argument(
        "--max-time",
        type=checked("max_time", float),
        default=None,
        metavar="SECONDS",
        help=f"start no new round of draws after this many seconds (default {MAX_TIME:.0f})",
    )
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress messages or bars on stderr (results are still printed)",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit with code 1 when the diagnostics verdict is FAIL (the report is still "
        "written); without it a FAIL is reported but the exit code is 0",
    )


def _out_arg(p: argparse.ArgumentParser, name: str, extra: str = "") -> None:
    p.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help=f"report directory (default: {DEFAULT_OUT.format(name=name)} in the current "
        f"directory{extra}; created if needed). An earlier bayesgmm report there is "
        "replaced; the command stops, before fitting, rather than overwrite any other file",
    )


def _fit_args(p: argparse.ArgumentParser) -> None:
    from bayesgmm.core.checks import integer
    from bayesgmm.core.families import EM_COVARIANCE_TYPES

    p.add_argument("data", metavar="DATA.csv", help="CSV file with a header row")
    p.add_argument(
        "--components",
        "-k",
        type=checked(integer(1)),
        required=True,
        metavar="K",
        help="number of components",
    )
    p.add_argument(
        "--columns",
        nargs="+",
        metavar="COL",
        help="columns to use, e.g. --columns a,b,c (space- or comma-separated; default: all "
        "columns). Only numeric columns can be used",
    )
    p.add_argument(
        "--covariance",
        default="full",
        choices=EM_COVARIANCE_TYPES,
        help="covariance family (default full)",
    )
    p.add_argument(
        "--missing",
        default="error",
        choices=("error", "drop", "marginalize"),
        help="missing values (empty cells): stop with an error (default), drop their rows "
        "(reported), or marginalize them (missing at random: each row fitted with its "
        "observed values)",
    )
    p.add_argument(
        "--errors",
        metavar="COLUMNS",
        default=None,
        help="comma-separated columns of standard errors, one per fitted column (known "
        "measurement errors: the mixture of the true values is fitted; not fitted)",
    )
    p.add_argument(
        "--known",
        metavar="COLUMN",
        default=None,
        help="a column of known components, 0..K-1 (empty or -1 where unknown): those rows "
        "keep their components, the others are inferred (semi-supervised; not fitted)",
    )
    p.add_argument(
        "--noise-init",
        metavar="COLUMN",
        default=None,
        help="with --noise: a column of true/false (1/0) guessing the noise points, where "
        "EM starts (mclust's initialization noise; not fitted)",
    )
    p.add_argument(
        "--noise",
        action="store_true",
        help="add a background-noise component, uniform on the data's bounding box: "
        "scattered outliers go to it (cluster -1) instead of widening the clusters",
    )
    p.add_argument(
        "--weights",
        metavar="COLUMN",
        default=None,
        help="a numeric column of frequency weights: row i counts as w_i copies of itself "
        "(not fitted; not importance weights)",
    )
    _out_arg(p, "NAME", ", NAME being the CSV file's name without .csv")
    _add_sampler_args(p, "package")


def _run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", metavar="SPEC.toml", help="model spec, e.g. models/faithful.toml")
    _out_arg(p, "NAME", ", NAME being the spec's name, by default its file name without .toml")
    _add_sampler_args(p, "spec")


def _demo_args(p: argparse.ArgumentParser) -> None:
    from bayesgmm.core.checks import integer

    p.add_argument(
        "--components", "-k", type=checked(integer(1)), default=2, metavar="K",
        help="number of components (default 2)",
    )  # fmt: skip
    _out_arg(p, "demo", " (--out '': no report)")
    _add_sampler_args(p, {"draws": 1000, "tune": 1000, "chains": 4, "seed": 2026})


_EXIT_CODES = "Exit codes: 0 done, 1 failure (or a FAIL verdict with --strict), 2 bad input."
#: classify has no diagnostics verdict, hence no --strict.
_CLASSIFY_EXIT_CODES = "Exit codes: 0 done, 1 failure, 2 bad input."


#: command -> (its arguments, one-line help, description)
def _classify_args(p: argparse.ArgumentParser) -> None:
    from bayesgmm.cli.classify import classify_args

    classify_args(p)


COMMANDS = {
    "fit": (
        _fit_args,
        "fit numeric columns of a CSV file and write a report",
        "Fit a Bayesian Gaussian mixture with K components (EM start, then NUTS) to numeric "
        "columns of a CSV file with a header row, print the diagnostics verdict and write a "
        "report: tables, diagnostics, assignments, figures, report.html and the saved "
        "model. Only numeric columns can be used: select them with --columns. " + _EXIT_CODES,
    ),
    "run": (
        _run_args,
        "fit a TOML model spec (e.g. models/penguins.toml) and write a report",
        "Fit the model a TOML spec describes (data, K or a list of K, covariance, priors, "
        "sampler settings) and write a report; with a list of K, each K is fitted, they "
        "are compared by PSIS-LOO and the report is of the chosen K. Examples: "
        "models/faithful.toml, models/penguins.toml; the format is in the docstring of "
        "bayesgmm.cli.specs. " + _EXIT_CODES,
    ),
    "demo": (
        _demo_args,
        "fit the bundled Old Faithful data, print the results and write a report",
        "Fit a mixture of K Gaussians (default 2) to the bundled Old Faithful data (272 "
        "eruptions: duration and waiting time), print the EM start, the posterior summary, the "
        "relabelling and the diagnostics, and write the report (default out/demo). " + _EXIT_CODES,
    ),
    "classify": (
        _classify_args,
        "Bayesian discriminant analysis of a CSV file's labelled rows",
        "Fit a Bayesian Gaussian mixture classifier (EDDA: one Gaussian per class, one "
        "covariance family; MclustDA: a mixture per class) to the numeric columns of a CSV "
        "file with a column of class labels, cross-validate it and write "
        "classification.txt, cv_folds.csv, predictions.csv (class probabilities with "
        "94% HDIs) and the saved classifier. " + _CLASSIFY_EXIT_CODES,
    ),
}


def build_parser(run: Mapping[str, Callable[[argparse.Namespace], int]]) -> argparse.ArgumentParser:
    """The ``bayesgmm`` parser; ``run[name]`` runs command ``name`` (set as ``func``).

    Examples
    --------
    >>> p = build_parser({"fit": len, "run": len, "demo": len, "classify": len})
    >>> p.parse_args(["demo"]).out is None  # resolved by the command: out/demo
    True
    """
    parser = argparse.ArgumentParser(
        prog="bayesgmm",
        description="Fully Bayesian Gaussian mixture models: EM-started NUTS, relabelled "
        "posteriors, uncertainty-aware clustering. Every command fits, prints the "
        "diagnostics and writes a report directory (--out, default out/NAME).",
        epilog="Examples: bayesgmm demo; bayesgmm fit data.csv -k 3 --columns x,y; "
        "bayesgmm run models/penguins.toml. 'bayesgmm COMMAND --help' lists a command's "
        "options.",
    )
    parser.add_argument(
        "--traceback",
        action="store_true",
        help="show the full traceback of a failure (give it before the command)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_args, summary, description) in COMMANDS.items():
        command = sub.add_parser(name, help=summary, description=description)
        add_args(command)
        command.set_defaults(func=run[name])
    return parser
