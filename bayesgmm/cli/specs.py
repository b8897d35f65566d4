"""Declarative model specs (TOML files in ``models/``), validated against a schema.

A spec names the data, the model and the sampler settings::

    name = "faithful"                      # optional, default: the file's stem
    description = "Old Faithful, K=2"      # optional

    [data]
    path = "bundled:faithful"              # a CSV path (relative to the spec file) or
                                           # "bundled:faithful" / "bundled:penguins"
    columns = ["eruptions", "waiting"]     # optional, default: every column
    missing = "error"                      # "error" (default), "drop" (reported) or
                                           # "marginalize" (missing at random: each row
                                           # fitted with its observed values)
    labels = "species"                     # optional: a column of known groups, not
                                           # fitted; the report compares the clusters
                                           # with it (confusion table, adjusted Rand index)
    weights = "count"                      # optional: a column of frequency weights (row
                                           # i counts as w_i copies), not fitted
    errors = ["sd_e", "sd_w"]              # optional: columns of the fitted columns'
                                           # standard errors (measurement errors, deconvolved)
    noise_init = "outlier"                 # optional, with noise: a column of true/false
                                           # (1/0) guessing the noise points EM starts from

    [model]
    components = 2                         # one K, or a list of K to compare by PSIS-LOO
    covariance = "full"                    # scikit-learn's four or any of mclust's names
    noise = true                           # optional: a background-noise component,
                                           # uniform on the data's bounding box (true) or
                                           # on a region of this volume (a number)

    [priors.weights]                       # optional; merged over the defaults
    a = 2.0                                # (see bayesgmm.core.priors)

    [sampler]                              # optional; bayesgmm.SamplerConfig settings
    draws = 1000

    [em]                                   # optional; n_init, init, max_iter, tol
    n_init = 10

A classifier's spec (``bayesgmm run`` then does what ``bayesgmm classify`` does) has a
``[classifier]`` table instead of ``[model]``::

    [classifier]
    class = "species"                      # the column of class labels (not fitted)
    model = "EDDA"                         # optional: "EDDA" (default) or "MclustDA"
    covariance = "auto"                    # optional: "auto" (EDDA: by BIC) or a family
    components = 2                         # optional, MclustDA: per class (default by BIC)
    folds = 10                             # optional: cross-validation folds (0: none)
    predict = "new.csv"                    # optional: rows to classify

Unknown keys, wrong types and bad values raise :class:`~bayesgmm.ConfigError` naming
the key and what is allowed; all problems of a file are reported together.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bayesgmm.core.checks import Constraint, choice, integer, is_int
from bayesgmm.core.config import EM_SETTINGS, SamplerConfig
from bayesgmm.core.families import EM_COVARIANCE_TYPES
from bayesgmm.core.priors import default_priors
from bayesgmm.exceptions import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from bayesgmm.cli.tables import LoadedData

__all__ = ["BUNDLED", "DataSpec", "ModelSpec", "load_spec"]

MISSING_POLICIES = ("error", "drop", "marginalize")
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
        "known": _TEXT.says(
            "the name of a column of known components (0..K-1, empty or -1 where unknown)"
        ),
        "errors": Constraint(
            lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(c, str) for c in v),
            "a list of columns of standard errors, one per fitted column",
        ),
        "noise_init": _TEXT.says("the name of a column of true/false noise guesses (a string)"),
    },
    "model": {
        "components": Constraint(
            _is_components, "an integer >= 1, or a list of distinct integers >= 1 (Ks to compare)"
        ),
        "covariance": choice(EM_COVARIANCE_TYPES),
        "noise": Constraint(
            lambda v: (
                isinstance(v, bool) or (isinstance(v, int | float) and math.isfinite(v) and v > 0)
            ),
            "true/false (a background on the data's bounding box) or a positive volume",
        ),
    },
    "em": EM_SETTINGS,
    "classifier": {  # instead of [model]: Bayesian discriminant analysis (bayesgmm classify)
        "class": _TEXT.says("the name of the column of class labels (a string)"),
        "model": choice(("EDDA", "MclustDA")),
        "covariance": choice(("auto", *EM_COVARIANCE_TYPES)),
        "components": integer(1),
        "folds": Constraint(
            lambda v: is_int(v) and (v == 0 or v >= 2), "0 (no cross-validation) or an integer >= 2"
        ),
        "predict": _TEXT.says("a CSV path (relative to the spec file) of rows to classify"),
    },
}
TABLES = ("data", "model", "classifier", "priors", "sampler", "em")
REQUIRED = {"data": ("path",), "model": ("components",), "classifier": ("class",)}


@dataclass(frozen=True)
class DataSpec:
    """Where the data come from and how missing values are handled."""

    path: str
    columns: list[str] | None = None
    missing: str = "error"
    labels: str | None = None
    weights: str | None = None
    known: str | None = None  # a column of known components (semi-supervised fit)
    errors: list[str] | None = None  # columns of the fitted columns' standard errors
    noise_init: str | None = None  # a column guessing the background's points (EM's start)
    base_dir: Path = field(default_factory=Path.cwd)
    origin: str = "spec"  # "spec" (a TOML file) or "cli" (fit, classify): how hints are put
    #: The missing-value policies the command takes: the only ones its messages suggest.
    policies: tuple[str, ...] = MISSING_POLICIES

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
class ModelSpec:
    """A validated model spec (see the module docstring for the file format)."""

    name: str
    data: DataSpec
    components: list[int]
    covariance: str = "full"
    noise: bool | float = False  # a background-noise component (BayesianGMM's noise)
    priors: dict[str, dict[str, Any]] = field(default_factory=dict)
    sampler: dict[str, Any] = field(default_factory=dict)
    em: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: str = "<dict>"
    #: A classifier's spec ([classifier] instead of [model]; ``components`` is then empty).
    classifier: dict[str, Any] | None = None

    @classmethod
    def from_dict(
        cls, d: Mapping[str, Any], *, base_dir: Path | None = None, source: str = "<dict>"
    ) -> ModelSpec:
        """Validate a parsed spec (e.g. from TOML) and build the :class:`ModelSpec`."""
        errors = _schema_errors(d)
        if errors:
            raise ConfigError(f"invalid model spec {source}: " + "; ".join(errors))
        data = d["data"]
        model = d.get("model", {})
        components = model.get("components", [])
        return cls(
            name=d.get("name", Path(source).stem if source != "<dict>" else "model"),
            description=d.get("description", ""),
            data=DataSpec(
                path=data["path"],
                columns=list(data["columns"]) if "columns" in data else None,
                missing=data.get("missing", "error"),
                labels=data.get("labels"),
                weights=data.get("weights"),
                known=data.get("known"),
                errors=list(data["errors"]) if "errors" in data else None,
                noise_init=data.get("noise_init"),
                base_dir=base_dir if base_dir is not None else Path.cwd(),
            ),
            components=[components] if is_int(components) else list(components),
            covariance=model.get("covariance", "full"),
            noise=model.get("noise", False),
            priors={k: dict(v) for k, v in d.get("priors", {}).items()},
            sampler=dict(d.get("sampler", {})),
            em=dict(d.get("em", {})),
            source=source,
            classifier=dict(d["classifier"]) if "classifier" in d else None,
        )

    def sampler_config(self, overrides: Mapping[str, Any] | None = None) -> SamplerConfig:
        """The sampler settings, with ``overrides`` (e.g. from the command line) on top."""
        try:
            return SamplerConfig.from_dict({**self.sampler, **dict(overrides or {})})
        except ConfigError as exc:
            raise ConfigError(f"{self.source} [sampler]: {exc}") from None

    def load_data(self) -> LoadedData:
        """Read the data this spec names; see :func:`~bayesgmm.cli.tables.read_data`."""
        from bayesgmm.cli.tables import read_data

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
        both = [c for c in data.get("errors") or [] if c in data["columns"]]
        if both:
            errors.append(f"'data.errors' {both} are also in data.columns: remove them there")
        if data.get("known") in data["columns"]:
            errors.append(
                f"'data.known' = {data['known']!r} is also in data.columns; the column of "
                "known components is not fitted: remove it from columns"
            )
        if data.get("noise_init") in data["columns"]:
            errors.append(
                f"'data.noise_init' = {data['noise_init']!r} is also in data.columns; the "
                "column of noise guesses is not fitted: remove it from columns"
            )
        if data.get("weights") in data["columns"]:
            errors.append(
                f"'data.weights' = {data['weights']!r} is also in data.columns; the weight "
                "column weights the rows, it is not fitted: remove it from columns"
            )
    model = d.get("model", {})
    if isinstance(data, Mapping) and data.get("noise_init") is not None:
        if not (isinstance(model, Mapping) and model.get("noise", False) is not False):
            errors.append(
                "'data.noise_init' guesses the points a background-noise component starts "
                "from; it needs one: set noise = true (or its volume) in [model] (--noise)"
            )
    if "classifier" in d and "model" in d:
        errors.append("a spec has [model] (a clustering) or [classifier] (a classifier of a "
                      "class column), not both")  # fmt: skip
    for table in TABLES:
        if table not in d and (table == "classifier" or (table == "model" and "classifier" in d)):
            continue  # a classifier's spec has no [model], a clustering's no [classifier]
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
