"""The BIC plot of a :func:`bayesgmm.core.bic.bic_table`, as mclust draws it.

One line per covariance family over the number of components K, in mclust's sign
convention (``BIC = 2 logL - df ln n``, higher is better, whatever the table's
convention), labelled with mclust's model names (EII ... VVV); degenerate or failed fits
are gaps in their line (mclust's ``NA``), and the best fit is ringed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bayesgmm.exceptions import ConfigError

__all__ = ["family_style", "mclust_sign", "plot_bic"]

_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "p", "h", "d", "8")
# matplotlib's tab10, then four more: 14 distinct colours, one per mclust model
_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
    "#7f7f7f", "#bcbd22", "#17becf", "#000000", "#b8860b", "#000080", "#9acd32",
)  # fmt: skip
_NEEDED = ("covariance_type", "K", "status")


def family_style(i: int) -> dict[str, str]:
    """Marker and colour of the ``i``-th family's line: 14 distinct pairs (mclust's
    models), shared by every plot that draws one line per family."""
    return {"marker": _MARKERS[i % len(_MARKERS)], "color": _COLOURS[i % len(_COLOURS)]}


def mclust_sign(table: pd.DataFrame) -> float:
    """1 when ``table`` (from :func:`~bayesgmm.core.bic.bic_table`) is in mclust's sign
    convention (higher is better; also when unmarked), -1 in scikit-learn's."""
    convention = table.attrs.get("convention", "mclust")
    if convention not in ("mclust", "sklearn"):
        raise ConfigError(
            f"table.attrs['convention'] must be 'mclust' or 'sklearn'; got {convention!r}."
        )
    return 1.0 if convention == "mclust" else -1.0


def plot_bic(
    table: pd.DataFrame,
    criterion: str = "bic",
    *,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Plot BIC (or ICL) over K, one line per family, like mclust's ``plot(mclustBIC(X))``.

    Parameters
    ----------
    table : DataFrame from :func:`bayesgmm.core.bic.bic_table`
    criterion : {'bic', 'icl'}, default='bic'
    ax : matplotlib Axes, optional
        Draw into it (default: a new figure).
    title : str, optional
        Default: the criterion and the best (model, K).

    Returns
    -------
    matplotlib.figure.Figure
        Its axes carry one line per family (``line.get_label()`` is mclust's name, or the
        table's name when it has no ``mclust`` column) and a legend.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from bayesgmm.core.bic import bic_table
    >>> from bayesgmm.core.datasets import load_faithful
    >>> fig = plot_bic(bic_table(load_faithful(), range(1, 4), ["tied", "VVV"], n_init=5))
    >>> [line.get_label() for line in fig.axes[0].get_lines()[:2]]
    ['EEE', 'VVV']
    """
    import matplotlib.pyplot as plt

    if criterion not in ("bic", "icl"):
        raise ConfigError(f"criterion must be 'bic' or 'icl'; got {criterion!r}.")
    missing = [c for c in (*_NEEDED, criterion) if c not in getattr(table, "columns", ())]
    if missing:
        raise ConfigError(f"plot_bic needs a bic_table; the table has no column(s) {missing}.")
    if table.empty:
        raise ConfigError("plot_bic: the table is empty.")
    sign = mclust_sign(table)
    name_col = "mclust" if "mclust" in table.columns else "covariance_type"
    if ax is None:
        fig, ax = plt.subplots(figsize=(7.5, 5.0))
    else:
        fig = ax.figure
    ok = table["status"].eq("ok") & table[criterion].notna()
    best = None
    for i, (_, rows) in enumerate(table.groupby("covariance_type", sort=False)):
        rows = rows.sort_values("K")
        value = np.where(ok[rows.index], sign * rows[criterion].to_numpy(float), np.nan)
        label = str(rows[name_col].iloc[0])
        ax.plot(rows["K"], value, label=label, linewidth=1.3, markersize=5, **family_style(i))
        j = np.nanargmax(value) if np.isfinite(value).any() else None
        if j is not None and (best is None or value[j] > best[0]):
            best = (value[j], int(rows["K"].iloc[j]), label)
    if best is not None:
        ax.plot(
            best[1], best[0], marker="o", markersize=14, markerfacecolor="none",
            markeredgecolor="black", linestyle="none", label="_best",
        )  # fmt: skip
    n_gaps = int((~ok).sum())
    ax.set_xlabel("number of components K")
    ax.set_ylabel(f"{criterion.upper()} (2 logL - df log n; higher is better)")
    ax.set_xticks(sorted(table["K"].unique()))
    ax.grid(alpha=0.3)
    ax.legend(title="model", ncol=2, fontsize="small", loc="lower right")
    if title is None:
        title = criterion.upper() + (f": best {best[2]}, K = {best[1]}" if best else "")
        if table.attrs.get("noise"):
            title += ", each K with a background-noise component"
        if n_gaps:
            title += f" ({n_gaps} degenerate or failed fits not shown)"
    ax.set_title(title, fontsize="medium")
    return fig
