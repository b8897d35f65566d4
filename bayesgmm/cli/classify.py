"""``bayesgmm classify``: Bayesian discriminant analysis of a CSV file's labelled rows.

Fits a :class:`~bayesgmm.BayesianGMMClassifier` to the numeric columns of the data with
the classes in ``--class COLUMN``, cross-validates it (``--folds``, 0 for none) and writes,
in ``--out DIR``:

``classification.txt``  the classes, the model, training accuracy and the cross-validated
                        error and Brier score with standard errors
``cv_folds.csv``        each fold's size, error and Brier score (with ``--folds``)
``predictions.csv``     class probabilities with 94% HDIs of the ``--predict`` file's rows
                        (of the training rows without it)
``classifier/``         the saved classifier (``BayesianGMMClassifier.load``)

Files are only ever replaced when an earlier bayesgmm run wrote them (as reports).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

__all__ = ["FILES", "run_classify", "run_spec"]

FILES = ("classification.txt", "cv_folds.csv", "predictions.csv")
SAVED = "classifier"
#: The classifier takes complete rows: rows with missing values are an error or dropped.
MISSING = ("error", "drop")


def _read(path: str, columns, class_column: str | None, missing: str = "error", base_dir=None,
          origin: str = "cli", policies: tuple[str, ...] = MISSING):  # fmt: skip
    """The rows of ``path`` (a CSV path, relative to ``base_dir`` (default: the current
    directory), or a bundled data set, as :class:`~bayesgmm.cli.specs.DataSpec` takes it);
    ``policies``: the missing-value policies a message about missing values may suggest."""
    from bayesgmm.cli.specs import DataSpec
    from bayesgmm.cli.tables import read_data

    spec = DataSpec(path=str(path), columns=columns, labels=class_column, missing=missing,
                    base_dir=Path(base_dir or Path.cwd()).resolve(), origin=origin,
                    policies=policies)  # fmt: skip
    return read_data(spec)


def run_spec(spec, args: argparse.Namespace, overrides: dict) -> int:
    """``bayesgmm run`` of a classifier's spec (a ``[classifier]`` table): as
    ``bayesgmm classify`` with the spec's data, settings and sampler table."""
    from bayesgmm.exceptions import ConfigError

    c, data = spec.classifier, spec.data
    if data.missing == "marginalize":
        raise ConfigError(f"{spec.source}: the classifier takes complete rows; use "
                          "missing = 'drop' or 'error' in [data].")  # fmt: skip
    run = argparse.Namespace(  # the spec's paths are relative to its folder
        data=data.path, base_dir=data.base_dir, class_column=c["class"], columns=data.columns,
        missing=data.missing, model=c.get("model", "EDDA"),
        covariance=c.get("covariance", "auto"), components=c.get("components"),
        folds=c.get("folds", 10), predict=c.get("predict"), out=args.out, quiet=args.quiet,
        origin="spec",
    )  # fmt: skip
    return run_classify(run, {**spec.sampler_config(overrides).to_dict()})


def _predictions(clf, X: pd.DataFrame) -> pd.DataFrame:
    p, lo, hi = clf.predict_proba(X.to_numpy(), return_intervals=True)
    table = pd.DataFrame({"row": X.index, "class": clf.classes_[p.argmax(axis=1)],
                          "max_prob": p.max(axis=1)})  # fmt: skip
    for c, name in enumerate(clf.classes_):
        table[f"prob_{name}"] = p[:, c]
        table[f"prob_{name}_hdi94_lower"], table[f"prob_{name}_hdi94_upper"] = lo[:, c], hi[:, c]
    return table


def run_classify(args: argparse.Namespace, overrides: dict) -> int:
    """The command: fit, cross-validate, write; returns the exit code."""
    from bayesgmm.analysis.report import claim_output, record_output
    from bayesgmm.exceptions import ConfigError
    from bayesgmm.workflows.classifier import BayesianGMMClassifier
    from bayesgmm.workflows.crossval import cross_validate

    if args.folds < 0 or args.folds == 1:
        raise ConfigError(
            f"--folds must be 0 (no cross-validation) or at least 2; got {args.folds}."
        )
    out = Path(args.out)
    claim_output(out, FILES, SAVED, create=False)  # before any work
    from bayesgmm.cli.options import column_names

    columns = column_names(args.columns)
    missing, base_dir = getattr(args, "missing", "error"), getattr(args, "base_dir", None)
    origin = getattr(args, "origin", "cli")
    train = _read(args.data, columns, args.class_column, missing, base_dir, origin)
    new = None
    if args.predict:  # the rows to classify must be complete
        new = _read(args.predict, list(train.X.columns), None, base_dir=base_dir,
                    origin=origin, policies=("error",)).X  # fmt: skip
    y = train.labels.to_numpy()
    clf = BayesianGMMClassifier(args.model, args.covariance, n_components=args.components,
                                sampler=overrides)  # fmt: skip
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    say(f"fitting {args.model} ({args.covariance}) to {len(y)} rows of {len(set(y))} classes")
    clf.fit(train.X.to_numpy(), y)
    lines = [
        *(n for n in train.notes if not n.startswith("labels:")),  # (the classes: below)
        "classes: "
        + ", ".join(f"{c} ({n})" for c, n in zip(clf.classes_, clf.class_counts_, strict=True)),
        f"model: {args.model}, covariance '{clf.covariance_type_}', components per class "
        f"{dict(zip(clf.classes_.tolist(), clf.n_components_, strict=True))}",
        f"training log-likelihood at the EM solution: {clf.log_likelihood_:.3f}",
        f"training accuracy (resubstitution): {clf.score(train.X.to_numpy(), y):.4f}",
    ]
    cv = None
    if args.folds:
        say(f"{args.folds}-fold cross-validation ({args.folds} more fits)")
        cv = cross_validate(clf, train.X.to_numpy(), y, n_folds=args.folds,
                            random_seed=overrides.get("random_seed", 0))  # fmt: skip
        lines.append(str(cv))
    earlier = claim_output(out, FILES, SAVED)
    for name in FILES:  # an earlier run's own files that this run does not write
        if name in earlier and (out / name).is_file():
            (out / name).unlink()
    clf.save(out / SAVED, overwrite=True)
    (out / "classification.txt").write_text("\n".join(lines) + "\n")
    if cv is not None:
        cv.folds.to_csv(out / "cv_folds.csv")
    _predictions(clf, new if new is not None else train.X).to_csv(
        out / "predictions.csv", index=False
    )
    record_output(out, FILES)
    print(lines[-1] if cv is not None else lines[-2])
    print(f"written to {out} (classification.txt, predictions.csv, classifier/)")
    return 0


def classify_args(p: argparse.ArgumentParser) -> None:
    """The options of ``bayesgmm classify``."""
    from bayesgmm.cli.options import checked
    from bayesgmm.core.checks import integer

    p.add_argument("data", metavar="DATA.csv", help="CSV file with a header row")
    p.add_argument("--class", dest="class_column", required=True, metavar="COLUMN",
                   help="the column of class labels (not fitted)")  # fmt: skip
    p.add_argument("--columns", action="append", metavar="A,B,...",
                   help="numeric columns to use (default: every other numeric column)")  # fmt: skip
    p.add_argument("--model", default="EDDA", choices=("EDDA", "MclustDA"),
                   help="one Gaussian per class with a shared family (EDDA, default) or a "
                   "mixture per class (MclustDA)")  # fmt: skip
    p.add_argument("--covariance", default="auto",
                   help="covariance family; 'auto' (default, EDDA only) picks the mclust "
                   "family by BIC")  # fmt: skip
    p.add_argument("--components", type=checked(integer(1)), default=None, metavar="K",
                   help="MclustDA: components per class (default: by BIC, up to 3)")  # fmt: skip
    p.add_argument("--missing", default="error", choices=MISSING,
                   help="rows with missing values (empty cells): stop with an error "
                   "(default) or drop them (reported); the classifier needs complete "
                   "rows")  # fmt: skip
    p.add_argument("--folds", type=int, default=10, metavar="N",
                   help="cross-validation folds (default 10; 0: none)")  # fmt: skip
    p.add_argument("--predict", metavar="NEW.csv", default=None,
                   help="classify this file's rows (same columns) in predictions.csv")  # fmt: skip
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default out/NAME); only files an earlier bayesgmm "
                   "run wrote are replaced")  # fmt: skip
    p.add_argument("--seed", type=checked("random_seed"), default=None, help="random seed")
    p.add_argument("--draws", type=checked("draws"), default=None, metavar="N")
    p.add_argument("--tune", type=checked("tune"), default=None, metavar="N")
    p.add_argument("--chains", type=checked("chains"), default=None, metavar="N")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
