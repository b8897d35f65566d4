"""Data validation: turn user input into a clean float64 matrix with feature names.

Training data are checked once (:func:`check_data`: shape, finiteness, scale, constant
columns, enough distinct points); new data at predict time against what the model was
fitted on (:func:`check_new_data`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np

from bayesgmm.core.checks import is_int
from bayesgmm.exceptions import ConfigError, DataError, ExtraColumnsWarning

__all__ = [
    "ExtraColumnsWarning", "check_data", "check_n_components", "check_new_data", "row_index",
    "rows_of",
]  # fmt: skip


def _feature_names_of(X, n_features: int, feature_names: Sequence[str] | None) -> list[str]:
    if isinstance(feature_names, str | bytes):
        raise ConfigError(
            f"feature_names must be a sequence of names, one per column; got the string "
            f"{feature_names!r}."
        )
    if feature_names is not None:
        names = [str(f) for f in feature_names]
        if len(names) != n_features:
            raise DataError(
                f"feature_names has {len(names)} entries but the data has {n_features} columns."
            )
    elif hasattr(X, "columns"):
        names = [str(c) for c in X.columns]
    else:
        names = [f"feature_{j}" for j in range(n_features)]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"feature names must be unique; repeated: {dupes}.")
    return names


def _is_sparse(X) -> bool:
    """A scipy.sparse matrix or array (or anything shaped like one), without importing it."""
    return hasattr(X, "toarray") and hasattr(X, "nnz") and hasattr(X, "format")


def _has_numpy_dtypes(X) -> bool:
    try:
        return all(hasattr(dt, "kind") for dt in X.dtypes)
    except TypeError:
        return False


def _as_float_matrix(X, name: str) -> np.ndarray:
    if _is_sparse(X):
        raise DataError(
            f"{name} is a sparse {type(X).__name__} ({X.shape[0]} x {X.shape[1]}); Gaussian "
            f"mixtures need dense data. Convert it with {name}.toarray() (mind the memory: "
            "every zero becomes a stored float)."
        )
    if X is None:
        raise DataError(
            f"{name} is None; pass the data as an array of shape "
            "(n_samples, n_features) or a DataFrame."
        )
    if np.ma.isMaskedArray(X) and np.ma.getmaskarray(X).any():
        raise DataError(
            f"{name} is a masked array with {int(np.ma.getmaskarray(X).sum())} masked values; "
            "their underlying numbers would be used as data. Drop those rows (or fill them, "
            f"e.g. {name}.filled(np.nan), and drop the NaN rows) first."
        )
    if hasattr(X, "dtypes") and hasattr(X, "columns") and _has_numpy_dtypes(X):  # pandas
        complex_cols = [str(c) for c, dt in zip(X.columns, X.dtypes, strict=True) if dt.kind == "c"]
        if complex_cols:
            raise DataError(
                f"{name} has complex-valued columns {complex_cols}; a Gaussian mixture needs "
                "real numbers. Split them into real and imaginary parts (np.real / np.imag) "
                "or take their modulus first."
            )
        bad = [str(c) for c, dt in zip(X.columns, X.dtypes, strict=True) if dt.kind not in "biuf"]
        if bad:
            raise DataError(
                f"{name} has non-numeric columns {bad}; select numeric columns "
                "(e.g. df.select_dtypes('number')) or encode them first."
            )
        X = X.to_numpy(dtype=float)
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # Series, xarray
        X = X.to_numpy()
    try:
        arr = np.asarray(X)
    except ValueError:  # ragged nested lists
        raise DataError(
            f"{name} could not be read as a matrix: its rows have different lengths (or it "
            "nests sequences unevenly). Every row needs one value per feature."
        ) from None
    if arr.dtype.kind in "USa" or (
        arr.dtype.kind == "O" and any(isinstance(v, str | bytes) for v in arr.flat)
    ):
        raise DataError(
            f"{name} holds text (dtype {arr.dtype}), not numbers. Convert it first (e.g. "
            f"np.asarray({name}, dtype=float) if the texts are numbers), or drop or encode "
            "text columns."
        )
    if arr.dtype.kind == "O" and any(isinstance(v, complex | np.complexfloating) for v in arr.flat):
        arr = arr.astype(complex)
    if arr.dtype.kind == "c":
        raise DataError(
            f"{name} must be real-valued; got complex numbers (dtype {arr.dtype}). Split them "
            "into real and imaginary parts (np.real / np.imag) or take their modulus first; "
            "bayesgmm never drops imaginary parts silently."
        )
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise DataError(
                f"{name} must be numeric; got values of dtype {arr.dtype} that are not numbers. "
                "Drop or encode non-numeric columns first."
            ) from None
    return arr.astype(np.float64, copy=False)


def _check_matrix(
    arr: np.ndarray, name: str, when: str = "fitting", row_offset: int = 0, missing: str = "error"
) -> None:
    if arr.ndim != 2:
        hint = (
            "reshape a single feature with X.reshape(-1, 1), or a single point with "
            "X.reshape(1, -1)"
            if arr.ndim == 1
            else "flatten it to (n_samples, n_features), e.g. pixels with img.reshape(-1, 3)"
        )
        raise DataError(
            f"{name} must be 2-D, of shape (n_samples, n_features); got {arr.ndim}-D "
            f"shape {arr.shape}. To fix: {hint}."
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise DataError(
            f"{name} is empty (shape {arr.shape}); it needs at least one row and column."
        )
    finite = np.isfinite(arr)
    if finite.all():
        return
    nan = np.isnan(arr)
    if missing == "marginalize":
        _check_missing_entries(arr, nan, name, row_offset, when)
        return
    rows, cols = np.nonzero(~finite)
    n_nan = int(nan.sum())
    n_inf = int((~finite).sum()) - n_nan
    marginal = (
        ", or fit with missing='marginalize' to predict points with missing values (a refit)."
        if when == "predicting"
        else ", or treat NaN as missing at random with missing='marginalize'."
    )
    hint = f"Drop or impute those rows before {when}" + (marginal if n_nan else ".")
    raise DataError(
        f"{name} contains {n_nan} NaN and {n_inf} infinite values (first at row "
        f"{rows[0] + row_offset}, column {cols[0]}). {hint}"
    )


def _check_missing_entries(
    arr: np.ndarray, nan: np.ndarray, name: str, row_offset: int, when: str
) -> None:
    """With ``missing="marginalize"``: NaN is missing, but infinities are not; every row
    needs an observed value, and so does every column of training data (new points may
    all lack a coordinate)."""
    inf = np.isinf(arr)
    if inf.any():
        rows, cols = np.nonzero(inf)
        raise DataError(
            f"{name} contains {int(inf.sum())} infinite values (first at row "
            f"{rows[0] + row_offset}, column {cols[0]}); missing='marginalize' treats only "
            "NaN as missing. Replace infinities by NaN if they mean 'not measured', or drop them."
        )
    empty_rows = np.flatnonzero(nan.all(axis=1))
    if empty_rows.size:
        raise DataError(
            f"{name} has {empty_rows.size} row(s) with every value missing (first: row "
            f"{empty_rows[0] + row_offset}); they carry no information. Drop them first."
        )
    empty_cols = np.flatnonzero(nan.all(axis=0))
    if empty_cols.size and when == "fitting":
        raise DataError(
            f"{name} has column(s) {empty_cols.tolist()} with every value missing; drop them."
        )


#: Columns whose values spread over less than this (but are not constant) are refused:
#: their squares, in variances and densities, would fall below float64's normal numbers.
_TINY_SPREAD = 1e-140


def _check_scale(arr: np.ndarray, name: str) -> np.ndarray:
    """Refuse data whose spread overflows float64 (the variance of values past ~1e154) or
    underflows it (values that differ by less than 1e-140); returns the columns' spreads
    (largest less smallest value)."""
    with np.errstate(over="ignore", invalid="ignore"):
        var = np.nanvar(arr, axis=0)
        spread = np.nanmax(arr, axis=0) - np.nanmin(arr, axis=0)
    tiny = (spread > 0) & (spread < _TINY_SPREAD)
    if tiny.any():
        small = float(spread[tiny].min())
        raise DataError(
            f"{name}'s scale underflows float64: the values of column(s) "
            f"{np.flatnonzero(tiny).tolist()} differ by at most {small:.3g}, so their variance "
            f"is below the smallest normal double. Rescale the data first, e.g. {name} * "
            f"1e{-math.floor(math.log10(small))} (or standardise each column); the fit is "
            "scale-equivariant, so only the units change."
        )
    if not np.isfinite(var).all():
        big = float(np.nanmax(np.abs(arr)))
        raise DataError(
            f"{name}'s scale overflows float64: values reach {big:.3g}, so their variance "
            f"(about {big:.1g} squared) is beyond the largest double, 1.8e308. Rescale the data "
            f"first, e.g. {name} / 1e{math.floor(math.log10(big))} (or standardise "
            "each column); the fit is scale-equivariant, so only the units change."
        )
    return spread


def check_data(
    X,
    *,
    n_components: int | None = None,
    feature_names: Sequence[str] | None = None,
    name: str = "X",
    missing: str = "error",
) -> tuple[np.ndarray, list[str]]:
    """Validate training data.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric data; a pandas DataFrame keeps its column names.
    n_components : int, optional
        When given, check there are enough distinct points for this many components.
    feature_names : sequence of str, optional
        Names overriding the DataFrame's columns (or ``feature_0, ...``).
    name : str
        What to call the data in error messages.
    missing : {"error", "marginalize"}
        ``"marginalize"`` lets NaN through as a value missing at random (still refusing
        infinities, rows and columns without an observed value).

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float64
    feature_names : list of str

    Raises
    ------
    DataError
        NaN/inf, wrong dimensionality, empty input, non-numeric or constant columns,
        or fewer (distinct) points than components.

    Examples
    --------
    >>> import numpy as np
    >>> X, names = check_data(np.array([[1.0, 2.0], [3.0, 5.0]]))
    >>> names
    ['feature_0', 'feature_1']
    """
    arr = _as_float_matrix(X, name)
    _check_matrix(arr, name, missing=missing)
    spread = _check_scale(arr, name)
    names = _feature_names_of(X, arr.shape[1], feature_names)
    n_samples = arr.shape[0]
    if n_components is not None:
        check_n_components(n_components)
        if n_samples < n_components:
            raise DataError(
                f"{name} has {n_samples} points but n_components={n_components}; a mixture "
                "needs at least one point per component. Use fewer components or more data."
            )
    if n_samples < 2:
        raise DataError(f"{name} has a single point; at least 2 are needed to fit a mixture.")
    scale = np.maximum(np.nanmax(np.abs(arr), axis=0), np.finfo(float).tiny)
    constant = [names[j] for j in range(arr.shape[1]) if spread[j] <= 1e-14 * scale[j]]
    if constant:
        if len(constant) == arr.shape[1]:
            raise DataError(
                f"all points in {name} are identical; there is nothing to cluster. Check that the "
                "right data was passed."
            )
        raise DataError(
            f"{name} has constant column(s) {constant}: every value is the same, so they carry no "
            "information and make the covariance singular. Drop them before fitting."
        )
    if n_components is not None:
        n_distinct = len(np.unique(np.nan_to_num(arr, nan=np.inf), axis=0))
        if n_distinct < n_components:
            raise DataError(
                f"{name} has only {n_distinct} distinct points but n_components={n_components}; "
                "use at most as many components as distinct points."
            )
    return arr, names


def _select_columns(X, feature_names: Sequence[str], name: str):
    """The fitted columns of a DataFrame, by name, in the fitted order.

    Column labels are compared as strings (a model fitted on integer labels stores
    ``"0", "1", ...``). Columns the model was not fitted on are left out with an
    :class:`ExtraColumnsWarning` naming them, rather than an error: a DataFrame of new
    points often carries an id or a label column. A missing fitted column is an error.
    """
    labels = list(X.columns)
    by_name: dict[str, object] = {}
    for label in labels:
        by_name.setdefault(str(label), label)
    wanted = [str(f) for f in feature_names]
    missing = [f for f in wanted if f not in by_name]
    if missing or len(by_name) != len(labels):
        generic = wanted == [f"feature_{j}" for j in range(len(wanted))]
        raise DataError(
            f"{name} has columns {[str(c) for c in labels]}, but the model was fitted on "
            f"{wanted}" + (f" (missing: {missing})" if missing else " (repeated names)") + "."
            + (" The model was fitted on an array, whose columns have no names: pass "
               f"{name}.to_numpy() with the columns in the fitted order (or fit on a "
               "DataFrame to match columns by name)." if generic and missing else "")
        )  # fmt: skip
    extra = [str(c) for c in labels if str(c) not in set(wanted)]
    if extra:
        warnings.warn(
            f"{name} has columns the model was not fitted on, left out: {extra}. The model "
            f"uses {wanted}, matched by name; select them yourself to silence this warning.",
            ExtraColumnsWarning,
            stacklevel=4,
        )
    if [str(c) for c in labels] == wanted:
        return X
    return X[[by_name[f] for f in wanted]]


def check_sample_weight(
    sample_weight, X: np.ndarray, n_components: int | None = None
) -> np.ndarray | None:
    """Validate frequency weights of the rows of ``X`` (validated data).

    ``None`` stays ``None`` (every row counts once). Otherwise one finite, non-negative
    number per row, not all zero; a row of weight ``w`` counts as ``w`` copies of itself
    (``sum_i w_i log p(x_i)``), so the rows with positive weight must still hold at least
    ``n_components`` distinct points.

    Examples
    --------
    >>> X = np.array([[0.0], [1.0], [5.0]])
    >>> check_sample_weight([1, 2, 0.5], X).tolist()
    [1.0, 2.0, 0.5]
    >>> check_sample_weight([1, -1, 1], X)
    Traceback (most recent call last):
    ...
    bayesgmm.exceptions.DataError: sample_weight must be >= 0 (frequency weights); row 1 is -1.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, str) or not np.ndim(sample_weight) == 1:
        raise DataError(
            f"sample_weight must be a 1-D sequence of numbers, one per row of X ({X.shape[0]}); "
            f"got {type(sample_weight).__name__} of shape {np.shape(sample_weight)}."
        )
    raw = np.asarray(sample_weight)
    if raw.dtype.kind in "USO" and any(isinstance(v, str | bytes) for v in raw.ravel()):
        raise DataError(
            "sample_weight holds text; give numbers (one per row of X), e.g. "
            "pandas.to_numeric(column) for a column read as text."
        )
    try:
        w = np.asarray(sample_weight, dtype=float)
    except (TypeError, ValueError):
        raise DataError("sample_weight must hold numbers (one per row of X).") from None
    if w.shape != (X.shape[0],):
        raise DataError(
            f"sample_weight has {w.shape[0]} values but X has {X.shape[0]} rows; give one "
            "weight per row."
        )
    bad = np.flatnonzero(~np.isfinite(w))
    if bad.size:
        raise DataError(
            f"sample_weight must be finite; row {bad[0]} is {w[bad[0]]} ({bad.size} such rows)."
        )
    neg = np.flatnonzero(w < 0)
    if neg.size:
        raise DataError(
            f"sample_weight must be >= 0 (frequency weights); row {neg[0]} is {w[neg[0]]:g}."
        )
    if not (w > 0).any():
        raise DataError("sample_weight is zero for every row; nothing would be fitted.")
    if n_components is not None:
        n_distinct = len(np.unique(X[w > 0], axis=0))
        if n_distinct < n_components:
            raise DataError(
                f"the rows with positive sample_weight hold only {n_distinct} distinct points "
                f"but n_components={n_components}; use fewer components."
            )
    return w


def check_new_data(
    X,
    n_features: int,
    feature_names: Sequence[str],
    name: str = "X",
    *,
    row_offset: int = 0,
    missing: str = "error",
) -> np.ndarray:
    """Validate data passed to a fitted model (predict, score, ...).

    Checks shape and finiteness. A DataFrame's columns are matched to the fitted ones by
    name (reordered if needed); columns the model was not fitted on are left out with an
    :class:`ExtraColumnsWarning` naming them, and a missing one is a ``DataError``.
    ``row_offset`` is added to row numbers in messages (for blocks of a larger array);
    ``missing="marginalize"`` lets NaN through (partially observed points).

    Examples
    --------
    >>> import numpy as np
    >>> check_new_data(np.zeros((3, 2)), 2, ["a", "b"]).shape
    (3, 2)
    >>> import pandas as pd
    >>> check_new_data(pd.DataFrame({"b": [2.0], "a": [1.0]}), 2, ["a", "b"])
    array([[1., 2.]])
    """
    if hasattr(X, "columns") and hasattr(X, "dtypes"):
        X = _select_columns(X, feature_names, name)
    arr = _as_float_matrix(X, name)
    if arr.ndim == 1 and n_features == 1:
        arr = arr.reshape(-1, 1)
    _check_matrix(arr, name, when="predicting", row_offset=row_offset, missing=missing)
    if arr.shape[1] != n_features:
        raise DataError(
            f"{name} has {arr.shape[1]} features, but the model was fitted on {n_features} "
            f"({list(feature_names)})."
        )
    return arr


def check_n_components(n_components) -> int:
    """Check that ``n_components`` is a positive integer and return it as ``int``."""
    if not is_int(n_components):
        raise ConfigError(f"n_components must be a positive integer; got {n_components!r}.")
    if n_components < 1:
        raise ConfigError(f"n_components must be >= 1; got {n_components}.")
    return int(n_components)


def row_index(X):
    """``X``'s row index when ``X`` is a pandas DataFrame or Series (``X`` itself when it
    is a pandas Index), else None (arrays and lists have none).

    Examples
    --------
    >>> import pandas as pd
    >>> row_index(pd.DataFrame({"a": [0.0, 1.0]}, index=[7, 3])).tolist(), row_index([[0.0]])
    ([7, 3], None)
    """
    import pandas as pd

    if isinstance(X, pd.Index):
        return X
    return X.index if isinstance(X, pd.DataFrame | pd.Series) else None


def rows_of(table, X):
    """``table`` (one row per point of ``X``, index ``obs``) with ``X``'s own index when
    ``X`` has one (:func:`row_index`), so that it lines up with ``X`` when pandas aligns
    them (``df["cluster"] = table["cluster"]``); unchanged otherwise.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"a": [0.0, 1.0]}, index=[7, 3])
    >>> rows_of(pd.DataFrame({"p": [0.5, 0.25]}), df).index.tolist()
    [7, 3]
    """
    index = row_index(X)
    if index is None or len(index) != len(table):
        return table
    out = table.copy()
    out.index = index if index.name is not None else index.rename(table.index.name)
    return out
