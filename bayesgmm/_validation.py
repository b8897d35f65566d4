"""Data validation: turn user input into a clean float64 matrix with feature names."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["check_data", "check_n_components", "check_new_data"]


def _feature_names_of(X, n_features: int, feature_names: Sequence[str] | None) -> list[str]:
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


def _as_float_matrix(X, name: str) -> np.ndarray:
    if hasattr(X, "dtypes") and hasattr(X, "columns"):  # pandas DataFrame
        bad = [str(c) for c, dt in zip(X.columns, X.dtypes, strict=True) if dt.kind not in "biuf"]
        if bad:
            raise DataError(
                f"{name} has non-numeric columns {bad}; select numeric columns "
                "(e.g. df.select_dtypes('number')) or encode them first."
            )
        X = X.to_numpy(dtype=float)
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):  # Series, xarray
        X = X.to_numpy()
    arr = np.asarray(X)
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError):
            raise DataError(
                f"{name} must be numeric; got values of dtype {arr.dtype} that are not numbers. "
                "Drop or encode non-numeric columns first."
            ) from None
    if arr.dtype.kind == "c":
        raise DataError(f"{name} must be real-valued; got complex numbers.")
    return arr.astype(np.float64, copy=False)


def _check_matrix(arr: np.ndarray, name: str) -> None:
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
    if not finite.all():
        rows, cols = np.nonzero(~finite)
        n_nan = int(np.isnan(arr).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise DataError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values (first at row {rows[0]}, "
            f"column {cols[0]}). Drop or impute those rows before fitting."
        )


def check_data(
    X,
    *,
    n_components: int | None = None,
    feature_names: Sequence[str] | None = None,
    name: str = "X",
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
    _check_matrix(arr, name)
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
    spread = np.ptp(arr, axis=0)
    scale = np.maximum(np.abs(arr).max(axis=0), np.finfo(float).tiny)
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
        n_distinct = len(np.unique(arr, axis=0))
        if n_distinct < n_components:
            raise DataError(
                f"{name} has only {n_distinct} distinct points but n_components={n_components}; "
                "use at most as many components as distinct points."
            )
    return arr, names


def check_new_data(X, n_features: int, feature_names: Sequence[str], name: str = "X") -> np.ndarray:
    """Validate data passed to a fitted model (predict, score, ...).

    Checks shape, finiteness and, for DataFrames, that the columns match those seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> check_new_data(np.zeros((3, 2)), 2, ["a", "b"]).shape
    (3, 2)
    """
    if hasattr(X, "columns"):
        cols = [str(c) for c in X.columns]
        if set(cols) >= set(feature_names) and cols != list(feature_names):
            X = X[list(feature_names)]
            cols = list(feature_names)
        if cols != list(feature_names):
            raise DataError(
                f"{name} has columns {cols}, but the model was fitted on {list(feature_names)}."
            )
    arr = _as_float_matrix(X, name)
    if arr.ndim == 1 and n_features == 1:
        arr = arr.reshape(-1, 1)
    _check_matrix(arr, name)
    if arr.shape[1] != n_features:
        raise DataError(
            f"{name} has {arr.shape[1]} features, but the model was fitted on {n_features} "
            f"({list(feature_names)})."
        )
    return arr


def check_n_components(n_components) -> int:
    """Check that ``n_components`` is a positive integer and return it as ``int``."""
    if isinstance(n_components, bool) or not isinstance(n_components, int | np.integer):
        raise ConfigError(f"n_components must be a positive integer; got {n_components!r}.")
    if n_components < 1:
        raise ConfigError(f"n_components must be >= 1; got {n_components}.")
    return int(n_components)
