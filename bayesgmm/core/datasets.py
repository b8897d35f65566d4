"""Bundled example data sets."""

from __future__ import annotations

from importlib import resources

import pandas as pd

__all__ = ["load_faithful", "load_penguins"]


def _read(name: str) -> pd.DataFrame:
    with resources.files("bayesgmm").joinpath("data", name).open("r") as fh:
        return pd.read_csv(fh)


def load_faithful() -> pd.DataFrame:
    """Old Faithful geyser data (Azzalini & Bowman 1990; R ``datasets::faithful``).

    Returns
    -------
    DataFrame of shape (272, 2)
        ``eruptions`` (eruption time, minutes) and ``waiting`` (time to the next
        eruption, minutes). Public domain.

    Examples
    --------
    >>> df = load_faithful()
    >>> df.shape, list(df.columns)
    ((272, 2), ['eruptions', 'waiting'])
    """
    return _read("faithful.csv")


def load_penguins() -> pd.DataFrame:
    """Palmer Archipelago penguins (Gorman, Williams & Fraser 2014), CC0.

    Returns
    -------
    DataFrame of shape (344, 8)
        Includes ``species``, ``island``, four numeric measurements and ``sex``;
        11 rows have missing values, which are kept: drop or impute them explicitly.

    Examples
    --------
    >>> df = load_penguins()
    >>> df.shape
    (344, 8)
    """
    return _read("penguins.csv")
