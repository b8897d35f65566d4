"""Reading the data a spec names: the CSV, its columns, and the missing-value policy.

:func:`read_data` turns a :class:`~bayesgmm.cli.specs.DataSpec` into
:class:`LoadedData` -- the numeric columns to fit, labels and weights beside them -- and
says in plain words what it did (rows dropped, values marginalised), for the report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayesgmm.cli.specs import _BUNDLED_PREFIX, BUNDLED, DataSpec
from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["LoadedData", "read_data"]

_WEIGHT_COLUMN = "\x00sample_weight"  # the weights beside the data while rows are checked


@dataclass(frozen=True)
class LoadedData:
    """Data ready to fit, with an account of what was done to it.

    Attributes
    ----------
    X : DataFrame
        The selected numeric columns, rows with missing values removed if allowed; its
        index keeps the original row numbers (0-based, header excluded).
    n_rows : int
        Rows in the source.
    dropped : list of int
        Original row numbers dropped for missing values.
    notes : list of str
        Plain-language account for the report.
    labels : Series, optional
        The spec's label column (``[data] labels``) for the rows of ``X`` (same index),
        or None.
    weights : Series, optional
        The spec's frequency weights (``[data] weights``) for the rows of ``X``, or None.
    errors : DataFrame, optional
        The standard errors of ``X``'s columns (``[data] errors``), same rows, or None.
    noise_init : ndarray of bool, optional
        The noise guesses of the rows of ``X`` (``[data] noise_init``), or None.
    """

    X: pd.DataFrame
    n_rows: int
    dropped: list[int]
    notes: list[str]
    labels: pd.Series | None = None
    weights: pd.Series | None = None
    known: np.ndarray | None = None  # known components of the rows of X (-1: unknown)
    errors: pd.DataFrame | None = None
    noise_init: np.ndarray | None = None


def _read_table(spec: DataSpec) -> pd.DataFrame:
    if spec.path.startswith(_BUNDLED_PREFIX):
        from bayesgmm.core import datasets

        name = spec.path.removeprefix(_BUNDLED_PREFIX)
        if name not in BUNDLED:
            raise ConfigError(
                f"unknown bundled data set {name!r}; available: "
                + ", ".join(f"'{_BUNDLED_PREFIX}{b}'" for b in BUNDLED)
            )
        return getattr(datasets, f"load_{name}")()
    path = spec.resolved_path
    if path.is_dir():
        raise DataError(f"{path} is a directory, not a CSV file; give the path of the CSV file.")
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path} is empty: a CSV file with a header row is needed.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        # the parser's own message can quote the file; say what failed, not what it holds
        raise DataError(
            f"cannot read {path} as a CSV file ({type(exc).__name__}); check that it is a "
            "comma-separated text file with a header row."
        ) from None


def _columns_hint(spec: DataSpec, names: list[str]) -> str:
    """How to select ``names``, in the form the user gave the spec (CLI or TOML)."""
    if spec.origin == "cli":
        return "--columns " + ",".join(names)
    return "columns = [" + ", ".join(f'"{n}"' for n in names) + "] in [data]"


_POLICY_DOES = {
    "drop": "to drop them",
    "marginalize": "to fit every row with its observed values (missing at random)",
}


def _missing_hint(spec: DataSpec) -> str:
    """What to do about missing values, with the policies the command takes, in the form
    the user gave the spec (CLI or TOML)."""
    cli = spec.origin == "cli"
    ways = [
        (f"--missing {p}" if cli else f'missing = "{p}" in [data]') + f" {does}"
        for p, does in _POLICY_DOES.items()
        if p in spec.policies
    ]
    if not ways:
        return "fill or remove those values in the file"
    return f"{'give' if cli else 'set'} {', '.join(ways)}, or clean the file"


def _dropped(X: pd.DataFrame, columns, numeric, spec: DataSpec, n_rows: int, notes):
    """``missing = "error"`` or ``"drop"``: rows with a missing or non-finite value are an
    error, or dropped (reported)."""
    bad = ~np.isfinite(X.to_numpy()).all(axis=1)
    dropped = [int(i) for i in X.index[bad]]
    if dropped:
        cols = [spec.weights if c == _WEIGHT_COLUMN else c for c in X.columns
                if not np.isfinite(X.loc[bad, c]).all()]  # fmt: skip
        shown = ", ".join(map(str, dropped[:20])) + (" ..." if len(dropped) > 20 else "")
        if spec.missing == "error":
            raise DataError(
                f"{len(dropped)} of {n_rows} rows of {spec.source} have missing or non-finite "
                f"values in {cols} (rows {shown}, 0-based); {_missing_hint(spec)}"
            )
        X = X.loc[~bad]
        if X.empty:
            raise DataError(
                f"every one of the {n_rows} rows of {spec.source} has missing or non-finite "
                f"values in {cols}, so dropping them leaves nothing to fit; choose other "
                f"columns ({_columns_hint(spec, [c for c in columns if c not in cols] or numeric)})"
                " or fill the missing values"
            )
        notes.append(
            f"missing values: dropped {len(dropped)} of {n_rows} rows with missing or "
            f"non-finite values in {cols} (rows {shown}, 0-based, header excluded); "
            f"{X.shape[0]} rows fitted."
        )
    else:
        notes.append("missing values: none in the selected columns.")
    return X, dropped


def _marginalized(X: pd.DataFrame, columns, spec: DataSpec, notes: list[str]):
    """``missing = "marginalize"``: empty cells (NaN) of the data columns are missing at
    random and stay; infinities and rows without a weight are refused; rows with every
    value missing carry no information and are dropped (reported)."""
    data = X[columns].to_numpy()
    inf = np.isinf(data)
    if inf.any():
        rows, cols = np.nonzero(inf)
        raise DataError(
            f"{int(inf.sum())} infinite value(s) in {spec.source} (first at row "
            f'{X.index[rows[0]]}, column {columns[cols[0]]!r}); missing = "marginalize" '
            "treats only empty cells (NaN) as missing. Empty those cells or clean the file"
        )
    if spec.weights is not None:
        no_weight = ~np.isfinite(X[_WEIGHT_COLUMN].to_numpy())
        if no_weight.any():
            raise DataError(
                f"{int(no_weight.sum())} row(s) of {spec.source} have no finite weight in "
                f"{spec.weights!r} (first: row {X.index[no_weight][0]}); a missing weight "
                "cannot be marginalised. Fill or drop those rows"
            )
    nan = np.isnan(data)
    empty = nan.all(axis=1)
    dropped = [int(i) for i in X.index[empty]]
    X = X.loc[~empty]
    if nan.any():
        partial = int((nan.any(axis=1) & ~empty).sum())
        cols = [c for c, has in zip(columns, nan[~empty].any(axis=0), strict=True) if has]
        notes.append(
            f"missing values: {int(nan[~empty].sum())} of {nan[~empty].size} values missing, "
            f"in {partial} rows (columns {cols}), marginalised as missing at random: every "
            "row is fitted with its observed values."
            + (f" Dropped {len(dropped)} row(s) with every value missing (rows "
               f"{', '.join(map(str, dropped[:20]))}, 0-based)." if dropped else "")
        )  # fmt: skip
    else:
        notes.append("missing values: none in the selected columns.")
    return X, dropped


def read_data(spec: DataSpec) -> LoadedData:
    """Read the CSV, select the columns and apply the missing-value policy.

    Error messages name the file's columns only when it holds numeric data (a data
    table), so pointing ``data.path`` at some other file never echoes what it holds.

    Raises
    ------
    FileNotFoundError
        The CSV does not exist.
    DataError
        A directory or an unreadable or empty file; unknown, repeated or non-numeric
        columns; rows with missing values with ``missing = "error"`` (the message names
        the rows and columns, and how to drop them), or none left after dropping them.
    """
    df = _read_table(spec)
    n_rows = df.shape[0]
    numeric = [str(c) for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    if n_rows == 0:
        raise DataError(f"{spec.source} has a header but no data rows; there is nothing to fit.")
    if not numeric:
        raise DataError(
            f"{spec.source} has no numeric columns ({df.shape[1]} column(s), {n_rows} rows): "
            "bayesgmm fits numeric columns of a CSV file with a header row."
        )
    available = f"available numeric columns: {numeric}"
    if spec.labels is not None and spec.labels not in df.columns:
        raise DataError(
            f"label column {spec.labels!r} (labels in [data]) not in {spec.source}; "
            f"available columns: {[str(c) for c in df.columns]}"
        )
    if spec.weights is not None and spec.weights not in numeric:
        raise DataError(
            f"weight column {spec.weights!r} (weights in [data]; --weights) is not a numeric "
            f"column of {spec.source}; {available}"
        )
    if spec.noise_init is not None and spec.noise_init not in df.columns:
        raise DataError(
            f"column of noise guesses {spec.noise_init!r} (noise_init in [data]; --noise-init) "
            f"not in {spec.source}; available columns: {[str(c) for c in df.columns]}"
        )
    if spec.known is not None and spec.known not in df.columns:
        raise DataError(
            f"column of known components {spec.known!r} (known in [data]; --known) not in "
            f"{spec.source}; available columns: {[str(c) for c in df.columns]}"
        )
    extra = [c for c in spec.errors or [] if c not in numeric]
    if extra:
        raise DataError(f"error column(s) {extra} (errors in [data]; --errors) are not numeric "
                        f"columns of {spec.source}; {available}")  # fmt: skip
    if spec.columns is None:
        columns = [c for c in df.columns
                   if c not in (spec.labels, spec.weights, spec.known, spec.noise_init,
                                *(spec.errors or []))]  # fmt: skip
    else:
        columns = list(spec.columns)
        unknown = [c for c in columns if c not in df.columns]
        if unknown:
            raise DataError(f"column(s) {unknown} not in {spec.source}; {available}")
        repeated = list(dict.fromkeys(c for c in columns if columns.count(c) > 1))
        if repeated:
            raise DataError(
                f"column(s) {repeated} are selected more than once; name each column once, "
                f"e.g. {_columns_hint(spec, list(dict.fromkeys(columns)))}"
            )
    X = df[columns]
    non_numeric = [c for c in columns if not pd.api.types.is_numeric_dtype(X[c])]
    if non_numeric:
        chosen = [c for c in columns if c not in non_numeric] or numeric
        raise DataError(
            f"column(s) {non_numeric} of {spec.source} are not numeric (only numeric columns "
            f"can be fitted); choose numeric columns, e.g. {_columns_hint(spec, chosen)}"
        )
    X = X.astype(float)
    if spec.weights is not None:  # a row without a weight is a row with a missing value
        X = X.assign(**{_WEIGHT_COLUMN: df[spec.weights].astype(float)})
    notes = [f"data: {spec.source}, {n_rows} rows, columns {columns}."]
    if spec.missing == "marginalize":
        X, dropped = _marginalized(X, columns, spec, notes)
    else:
        X, dropped = _dropped(X, columns, numeric, spec, n_rows, notes)
    weights = None
    if spec.weights is not None:
        weights = X.pop(_WEIGHT_COLUMN).rename(spec.weights)
        notes.append(
            f"weights: column {spec.weights!r} as frequency weights (row i counts as w_i "
            f"copies of itself; {weights.sum():g} in all), not fitted."
        )
    labels = None
    if spec.labels is not None:
        labels = df.loc[X.index, spec.labels]
        notes.append(
            f"labels: column {spec.labels!r} ({labels.nunique()} values), not fitted; the "
            "clusters are compared with it."
        )
    errors = None if spec.errors is None else _error_columns(df, X, spec, notes)
    known = None if spec.known is None else _known_column(df, X, spec, notes)
    guess = None if spec.noise_init is None else _noise_init_column(df, X, spec, notes)
    return LoadedData(X=X, n_rows=n_rows, dropped=dropped, notes=notes, labels=labels,
                      weights=weights, errors=errors, known=known,
                      noise_init=guess)  # fmt: skip


_TRUE, _FALSE = {"true", "t", "yes", "1", "1.0"}, {"false", "f", "no", "0", "0.0", "nan", ""}


def _noise_init_column(df: pd.DataFrame, X: pd.DataFrame, spec: DataSpec, notes: list[str]):
    """The noise guesses of the fitted rows (``[data] noise_init``): true/false, yes/no
    or 1/0 (any case), an empty cell false."""
    cells = df.loc[X.index, spec.noise_init]
    text = cells.astype(str).str.strip().str.lower().where(cells.notna(), "")
    bad = ~text.isin(_TRUE | _FALSE)
    if bad.any():
        row = bad.index[bad.to_numpy()][0]
        raise DataError(
            f"column of noise guesses {spec.noise_init!r} must hold true/false (or 1/0, "
            f"empty for false); row {row} is {df.loc[row, spec.noise_init]!r}."
        )
    guess = text.isin(_TRUE).to_numpy()
    notes.append(
        f"noise_init: column {spec.noise_init!r} guesses {int(guess.sum())} of {len(guess)} "
        "rows as background noise, where EM starts; not fitted."
    )
    return guess


def _known_column(df: pd.DataFrame, X: pd.DataFrame, spec: DataSpec, notes: list[str]):
    """The known components of the fitted rows (``[data] known``): integers, -1 where a
    cell is empty (unknown); the range is checked against K by the fit."""
    col = pd.to_numeric(df.loc[X.index, spec.known], errors="coerce")
    bad = df.loc[X.index, spec.known].notna() & col.isna()
    if bad.any():
        row = bad.index[bad.to_numpy()][0]
        raise DataError(
            f"column of known components {spec.known!r} must hold component numbers "
            f"(0..K-1; empty or -1 where unknown); row {row} is "
            f"{df.loc[row, spec.known]!r}."
        )
    known = col.fillna(-1).to_numpy()
    notes.append(
        f"known: column {spec.known!r} gives the components of {int((known >= 0).sum())} of "
        f"{len(known)} rows (a semi-supervised fit: those rows keep their components), "
        "not fitted."
    )
    return known


def _error_columns(df: pd.DataFrame, X: pd.DataFrame, spec: DataSpec, notes: list[str]):
    """The fitted columns' standard errors (``[data] errors``), checked: one column per
    fitted column, finite and >= 0 in every fitted row."""
    if len(spec.errors) != X.shape[1]:
        raise DataError(
            f"errors names {len(spec.errors)} column(s) but {X.shape[1]} columns are fitted "
            f"({list(X.columns)}); give one column of standard errors per fitted column"
        )
    errors = df.loc[X.index, spec.errors].astype(float)
    bad = ~(np.isfinite(errors.to_numpy()) & (errors.to_numpy() >= 0)).all(axis=1)
    if bad.any():
        raise DataError(
            f"the error columns {spec.errors} hold missing, negative or non-finite values in "
            f"{int(bad.sum())} fitted row(s) (first: row {errors.index[bad][0]}); standard "
            "errors must be finite and >= 0"
        )
    pairs = ", ".join(f"{e} of {c}" for e, c in zip(spec.errors, X.columns, strict=True))
    notes.append(f"errors: standard errors {pairs}; the mixture is deconvolved (that of the "
                 "true values), not fitted to the errors.")  # fmt: skip
    return errors
