"""Declarative model specs (TOML files in ``models/``), validated against a schema.

A spec names the data, the model and the sampler settings::

    name = "faithful"                      # optional, default: the file's stem
    description = "Old Faithful, K=2"      # optional

    [data]
    path = "bundled:faithful"              # a CSV path (relative to the spec file) or
                                           # "bundled:faithful" / "bundled:penguins"
    columns = ["eruptions", "waiting"]     # optional, default: every column
    missing = "error"                      # "error" (default) or "drop" (reported)
    labels = "species"                     # optional: a column of known groups, not
                                           # fitted; the report compares the clusters
                                           # with it (confusion table, adjusted Rand index)
    weights = "count"                      # optional: a column of frequency weights (row
                                           # i counts as w_i copies), not fitted

    [model]
    components = 2                         # one K, or a list of K to compare by PSIS-LOO
    covariance = "full"                    # scikit-learn's four or any of mclust's names

    [priors.weights]                       # optional; merged over the defaults
    a = 2.0                                # (see bayesgmm.core.priors)

    [sampler]                              # optional; bayesgmm.SamplerConfig settings
    draws = 1000

    [em]                                   # optional; n_init, init, max_iter, tol
    n_init = 10

Unknown keys, wrong types and bad values raise :class:`~bayesgmm.ConfigError` naming
the key and what is allowed; all problems of a file are reported together.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesgmm.core.checks import Constraint, choice, integer, is_int
from bayesgmm.core.config import EM_SETTINGS, SamplerConfig
from bayesgmm.core.families import EM_COVARIANCE_TYPES
from bayesgmm.core.priors import default_priors
from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["BUNDLED", "DataSpec", "LoadedData", "ModelSpec", "load_spec", "read_data"]

MISSING_POLICIES = ("error", "drop")
BUNDLED = ("faithful", "penguins")
_BUNDLED_PREFIX = "bundled:"


# --------------------------------------------------------------------------- #
# The schema: key -> Constraint (bayesgmm.core.checks), per table
# --------------------------------------------------------------------------- #


def _is_components(v: Any) -> bool:
    if is_int(v):
        return v >= 1
    ok = isinstance(v, list) and len(v) > 0 and all(integer(1)(k) for k in v)
    return ok and len(set(v)) == len(v)


_WEIGHT_COLUMN = "\x00sample_weight"  # the weights beside the data while rows are checked
_TEXT = Constraint(lambda v: isinstance(v, str) and v != "", "a non-empty string")

SCHEMA: dict[str, dict[str, Constraint]] = {
    "": {
        "name": _TEXT,
        "description": Constraint(lambda v: isinstance(v, str), "a string"),
    },
    "data": {
        "path": _TEXT.says(
            "a CSV path (relative to the spec file) or one of "
            + ", ".join(f"'{_BUNDLED_PREFIX}{b}'" for b in BUNDLED)
        ),
        "columns": Constraint(
            lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(c, str) for c in v),
            "a non-empty list of column names (strings)",
        ),
        "missing": choice(MISSING_POLICIES),
        "labels": _TEXT.says("the name of a column of known groups (a string)"),
        "weights": _TEXT.says("the name of a column of frequency weights (a string)"),
    },
    "model": {
        "components": Constraint(
            _is_components, "an integer >= 1, or a list of distinct integers >= 1 (Ks to compare)"
        ),
        "covariance": choice(EM_COVARIANCE_TYPES),
    },
    "em": EM_SETTINGS,
}
TABLES = ("data", "model", "priors", "sampler", "em")
REQUIRED = {"data": ("path",), "model": ("components",)}


@dataclass(frozen=True)
class DataSpec:
    """Where the data come from and how missing values are handled."""

    path: str
    columns: list[str] | None = None
    missing: str = "error"
    labels: str | None = None
    weights: str | None = None
    base_dir: Path = field(default_factory=Path.cwd)
    origin: str = "spec"  # "spec" (a TOML file) or "cli" (bayesgmm fit): how hints are put

    @property
    def source(self) -> str:
        """Readable name of the data source."""
        if self.path.startswith(_BUNDLED_PREFIX):
            return f"bundled data set '{self.path.removeprefix(_BUNDLED_PREFIX)}'"
        return str(self.resolved_path)

    @property
    def resolved_path(self) -> Path:
        """The CSV path, relative paths taken from the spec file's directory."""
        p = Path(self.path).expanduser()
        return p if p.is_absolute() else self.base_dir / p


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
    """

    X: pd.DataFrame
    n_rows: int
    dropped: list[int]
    notes: list[str]
    labels: pd.Series | None = None
    weights: pd.Series | None = None


@dataclass(frozen=True)
class ModelSpec:
    """A validated model spec (see the module docstring for the file format)."""

    name: str
    data: DataSpec
    components: list[int]
    covariance: str = "full"
    priors: dict[str, dict[str, Any]] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)
    em: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "<dict>"
    ) -> ModelSpec:
        """Validate a parsed spec (e.g. from TOML) and build the :class:`ModelSpec`."""
        errors = _schema_errors(d)
        if errors:
            raise ConfigError(f"invalid model spec {source}: " + "; ".join(errors))
        data = d["data"]
        model = d["model"]
        components = model["components"]
        return cls(
            name=d.get("name", Path(source).stem if source != "<dict>" else "model"),
            description=d.get("description", ""),
            data=DataSpec(
                path=data["path"],
                columns=list(data["columns"]) if "columns" in data else None,
                missing=data.get("missing", "error"),
                labels=data.get("labels"),
                weights=data.get("weights"),
                base_dir=base_dir if base_dir is not None else Path.cwd(),
            ),
            components=[components] if is_int(components) else list(components),
            covariance=model.get("covariance", "full"),
            priors={k: dict(v) for k, v in d.get("priors", {}).items()},
            sampler=dict(d.get("sampler", {})),
            em=dict(d.get("em", {})),
            source=source,
        )

    def sampler_config(self, overrides: Mapping[str, Any] | None = None) -> SamplerConfig:
        """The sampler settings, with ``overrides`` (e.g. from the command line) on top."""
        try:
            return SamplerConfig.from_dict({**self.sampler, **dict(overrides or {})})
        except ConfigError as exc:
            raise ConfigError(f"{self.source} [sampler]: {exc}") from None

    def load_data(self) -> LoadedData:
        """Read the data this spec names; see :func:`read_data`."""
        return read_data(self.data)


def _schema_errors(d: Any) -> list[str]:
    if not isinstance(d, Mapping):
        return [f"a spec must be a table of settings; got {type(d).__name__}"]
    errors: list[str] = []
    top_valid = sorted([*SCHEMA[""], *TABLES])
    for key, value in d.items():
        if key in SCHEMA[""]:
            c = SCHEMA[""][key]
            if not c(value):
                errors.append(f"'{key}' = {value!r} is not allowed; expected {c.allowed}")
        elif key not in TABLES:
            errors.append(f"unknown key '{key}'; valid top-level keys: {top_valid}")
        elif not isinstance(value, Mapping):
            errors.append(f"'{key}' must be a table ([{key}]); got {value!r}")
    data = d.get("data", {})
    if isinstance(data, Mapping) and isinstance(data.get("columns"), list):
        if data.get("labels") in data["columns"]:
            errors.append(
                f"'data.labels' = {data['labels']!r} is also in data.columns; the label "
                "column is compared with the clusters, not fitted: remove it from columns"
            )
        if data.get("weights") in data["columns"]:
            errors.append(
                f"'data.weights' = {data['weights']!r} is also in data.columns; the weight "
                "column weights the rows, it is not fitted: remove it from columns"
            )
    for table in TABLES:
        value = d.get(table, {})
        if not isinstance(value, Mapping):
            continue
        for req in REQUIRED.get(table, ()):
            if req not in value:
                errors.append(f"missing required key '{table}.{req}'")
        if table == "priors":
            errors.extend(_prior_errors(value))
        elif table == "sampler":
            errors.extend(_sampler_errors(value))
        else:
            schema = SCHEMA[table]
            for key, v in value.items():
                if key not in schema:
                    errors.append(
                        f"unknown key '{table}.{key}'; valid keys in [{table}]: {sorted(schema)}"
                    )
                    continue
                c = schema[key]
                if not c(v):
                    errors.append(f"'{table}.{key}' = {v!r} is not allowed; expected {c.allowed}")
    return errors


def _prior_errors(priors: Mapping[str, Any]) -> list[str]:
    errors = []
    valid = sorted(default_priors())
    for slot, value in priors.items():
        if slot not in valid:
            errors.append(f"unknown key 'priors.{slot}'; valid prior names: {valid}")
        elif not isinstance(value, Mapping):
            errors.append(
                f"'priors.{slot}' must be a table ([priors.{slot}]), e.g. "
                f"{default_priors()[slot].to_dict()}; got {value!r}"
            )
    return errors


def _sampler_errors(sampler: Mapping[str, Any]) -> list[str]:
    try:
        SamplerConfig.from_dict(sampler)
    except ConfigError as exc:
        return [f"[sampler]: {' '.join(str(exc).split())}"]
    return []


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a TOML model spec.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    ModelSpec

    Raises
    ------
    FileNotFoundError
        No such file.
    ConfigError
        Not valid TOML, or not valid against the schema (every problem listed, each
        naming its key and what is allowed).

    Examples
    --------
    >>> from pathlib import Path
    >>> spec = load_spec(Path(__file__).parents[2] / "models" / "faithful.toml")  # doctest: +SKIP
    >>> spec.components, spec.covariance  # doctest: +SKIP
    ([2], 'full')
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model spec at {path}")
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not a UTF-8 text file: {exc}") from None
    return ModelSpec.from_dict(raw, base_dir=path.resolve().parent, source=str(path))


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


def read_data(spec: DataSpec) -> LoadedData:
    """Read the CSV, select the columns and apply the missing-value policy.

    Error messages name the file's columns only when it holds numeric data (a data
    table), so pointing ``data.path`` at some other file never echoes what it holds.

    Raises
    ------
    FileNotFoundError
        The CSV does not exist.
    DataError
        A directory or an unreadable or empty file; unknown or non-numeric columns; rows
        with missing values with ``missing = "error"`` (the message names the rows and
        columns, and how to drop them), or none left after dropping them.
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
    if spec.columns is None:
        columns = [c for c in df.columns if c not in (spec.labels, spec.weights)]
    else:
        columns = list(spec.columns)
        unknown = [c for c in columns if c not in df.columns]
        if unknown:
            raise DataError(f"column(s) {unknown} not in {spec.source}; {available}")
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
    bad = ~np.isfinite(X.to_numpy()).all(axis=1)
    dropped = [int(i) for i in X.index[bad]]
    notes = [f"data: {spec.source}, {n_rows} rows, columns {columns}."]
    if dropped:
        cols = [spec.weights if c == _WEIGHT_COLUMN else c for c in X.columns
                if not np.isfinite(X.loc[bad, c]).all()]  # fmt: skip
        shown = ", ".join(map(str, dropped[:20])) + (" ..." if len(dropped) > 20 else "")
        if spec.missing == "error":
            raise DataError(
                f"{len(dropped)} of {n_rows} rows of {spec.source} have missing or non-finite "
                f'values in {cols} (rows {shown}, 0-based); set missing = "drop" in [data] '
                "(--missing drop) to drop them, or clean the file"
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
    return LoadedData(
        X=X, n_rows=n_rows, dropped=dropped, notes=notes, labels=labels, weights=weights
    )
