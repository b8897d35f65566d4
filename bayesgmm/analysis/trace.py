"""Trace plots of the (relabelled) posterior, drawn directly with matplotlib.

:func:`plot_trace` gives every scalar quantity its own row of panels, so features on
different scales never share an axis: one row for the weights, one per feature for the
means and the standard deviations, one per feature pair for the correlations (a shared
row for a tied covariance; none for diag / spherical). Each row has a density panel (per
chain) and a trace panel (draw against value). Colour is the component (legend at the
top); chains are told apart by shade (lighter for later chains) and, in the density
panels, line style (second legend). When there are more rows than ``max_rows``
the figure says "showing N of M rows" and which were left out.

It plots the ``posterior`` group, which :func:`bayesgmm.relabel` (and
:class:`~bayesgmm.BayesianGMM` by default) fills with relabelled draws; pass
``group="posterior_raw"`` to see the sampler's own labels. It returns a
:class:`matplotlib.figure.Figure`. Rank plots are in :mod:`bayesgmm.analysis.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["DEFAULT_TRACE_VARS", "plot_trace"]

DEFAULT_TRACE_VARS = ("weights", "noise_weight", "means", "sds", "correlation")
_TRACE_KINDS = ("trace_dist", "trace")
_SAMPLE_DIMS = ("chain", "draw")
_CHAIN_STYLES = ("-", "--", ":", "-.")
_SHARED_COLOUR = "0.25"  # a quantity shared by all components (tied covariance)


@dataclass
class _Row:
    label: str  # e.g. "means[waiting]"
    var: str
    values: np.ndarray  # (chain, draw, component) or (chain, draw, 1) when shared
    components: list | None  # component labels, None when shared


def select_vars(
    idata: xr.DataTree,
    var_names: str | Sequence[str] | None,
    group: str,
    defaults: Sequence[str] = DEFAULT_TRACE_VARS,
) -> list[str]:
    """The variables of ``idata[group]`` to plot (the ``defaults`` present, or all)."""
    if not isinstance(idata, xr.DataTree) or group not in idata.children:
        have = list(idata.children) if isinstance(idata, xr.DataTree) else []
        raise DataError(f"need an xarray.DataTree with a {group!r} group; groups present: {have}.")
    available = list(idata[group].data_vars)
    if var_names is None:
        chosen = [v for v in defaults if v in available]
        return chosen or available
    chosen = [var_names] if isinstance(var_names, str) else list(var_names)
    missing = [v for v in chosen if v not in available]
    if missing:
        raise ConfigError(f"var_names {missing} are not in {group!r}; available: {available}.")
    return chosen


def _subset(da: xr.DataArray, coords: Mapping[str, Any]) -> xr.DataArray:
    sel = {d: v for d, v in coords.items() if d in da.dims}
    if "feature" in coords and "feature_bis" in da.dims and "feature_bis" not in coords:
        sel["feature_bis"] = coords["feature"]  # pairs among the chosen features
    try:
        return da.sel(sel)
    except KeyError as err:
        raise ConfigError(f"coords {dict(coords)} do not match {da.name!r}: {err}") from None


def _rows_of(name: str, da: xr.DataArray) -> list[_Row]:
    """One row per scalar element (component goes to colour); constant elements dropped."""
    has_comp = "component" in da.dims
    comps = [c.item() for c in da["component"]] if has_comp else None
    order = [*_SAMPLE_DIMS, "component"] if has_comp else list(_SAMPLE_DIMS)
    other = [d for d in da.dims if d not in order]
    da = da.transpose(*order, *other)
    if not other:
        elements = [((), name)]
    else:
        coords = [
            [str(c.item()) for c in da[d]] if d in da.coords else list(map(str, range(da.sizes[d])))
            for d in other
        ]
        elements = [
            (idx, f"{name}[{', '.join(coords[k][i] for k, i in enumerate(idx))}]")
            for idx in np.ndindex(*(da.sizes[d] for d in other))
        ]
    symmetric = other == ["feature", "feature_bis"] and np.allclose(
        da.to_numpy(), np.swapaxes(da.to_numpy(), -1, -2), equal_nan=True
    )
    rows = []
    arr = da.to_numpy()
    for idx, label in elements:
        if symmetric and idx[1] < idx[0]:
            continue  # each pair once
        values = arr[(..., *idx)] if idx else arr
        if not has_comp:
            values = values[..., None]
        if np.nanmax(values) - np.nanmin(values) <= 1e-12 * max(1.0, np.nanmax(np.abs(values))):
            continue  # e.g. a correlation's unit diagonal
        rows.append(_Row(label, name, values, comps))
    return rows


def _split(row: _Row) -> list[_Row]:
    if row.components is None:
        return [row]
    return [
        _Row(f"{row.label}, component {c}", row.var, row.values[..., [k]], [c])
        for k, c in enumerate(row.components)
    ]


def _cap(rows: list[_Row], max_rows: int | None) -> tuple[list[_Row], str]:
    """Keep at most ``max_rows`` rows, shared fairly between the variables."""
    if max_rows is None or len(rows) <= max_rows:
        return rows, ""
    if max_rows < 1:
        raise ConfigError(f"max_rows must be a positive integer or None; got {max_rows}.")
    by_var: dict[str, list[_Row]] = {}
    for r in rows:
        by_var.setdefault(r.var, []).append(r)
    quota = dict.fromkeys(by_var, 0)
    left = max_rows
    while left > 0:  # water-filling: one more row to every variable that has some left
        open_vars = [v for v in by_var if quota[v] < len(by_var[v])]
        for v in open_vars[:left]:
            quota[v] += 1
        left -= min(left, len(open_vars))
    kept = [r for v, rs in by_var.items() for r in rs[: quota[v]]]
    cut = ", ".join(
        f"{v} {quota[v]} of {len(rs)}" for v, rs in by_var.items() if quota[v] < len(rs)
    )
    note = (
        f"showing {len(kept)} of {len(rows)} rows ({cut}); choose others with var_names or "
        "coords, or raise max_rows"
    )
    return kept, note


def _shade(colour, chain: int, n_chain: int) -> tuple[float, float, float]:
    """``colour`` lightened towards white for later chains (chain 0: as is)."""
    from matplotlib.colors import to_rgb

    t = 0.0 if n_chain < 2 else 0.6 * chain / (n_chain - 1)
    return tuple(x + (1 - x) * t for x in to_rgb(colour))


def kde_on_grid(x: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian kernel density (Silverman's bandwidth) of ``x`` on ``grid``."""
    x = x[np.isfinite(x)]
    if x.size < 2:
        return np.zeros_like(grid)
    iqr = np.subtract(*np.percentile(x, [75, 25]))
    spread = min(np.std(x), iqr / 1.349) if iqr > 0 else np.std(x)
    bw = 0.9 * spread * x.size ** (-0.2) if spread > 0 else 1e-3 * max(1.0, abs(x[0]))
    z = (grid[:, None] - x[None, :]) / bw
    return np.exp(-0.5 * z**2).sum(axis=1) / (x.size * bw * np.sqrt(2 * np.pi))


def plot_trace(
    idata: xr.DataTree,
    var_names: str | Sequence[str] | None = None,
    *,
    kind: str = "trace_dist",
    group: str = "posterior",
    coords: Mapping[str, Any] | None = None,
    compact: bool = True,
    max_rows: int | None = 20,
    figsize: tuple[float, float] | None = None,
):
    """Trace plot: a row of panels per quantity and feature, coloured by component.

    Every scalar quantity gets its own row, so each has its own scale: ``weights``; one
    row per feature for ``means`` and ``sds`` (e.g. "means[waiting]"); one per feature
    pair for ``correlation`` (e.g. "correlation[eruptions, waiting]"; a single shared
    matrix for ``covariance_type="tied"``, none for "diag" and "spherical"). In each row
    the left panel shows per-chain posterior densities, the right one the draws in order
    (trace). Colour = component (top legend); chain = shade, and line style in the
    density panels (second legend).
    Elements that never vary (a correlation's unit diagonal) are left out.

    Parameters
    ----------
    idata : xarray.DataTree
        Sampler output, relabelled so that component-indexed traces are meaningful.
    var_names : str or sequence of str, optional
        Variables of ``group`` to plot; default ``weights``, ``means``, ``sds`` and
        ``correlation`` (those present). Any variable with dims (chain, draw, ...) works.
    kind : {"trace_dist", "trace"}, default="trace_dist"
        ``"trace_dist"``: a density and a trace panel per row; ``"trace"``: traces only.
    group : str, default="posterior"
        ``"posterior_raw"`` shows the sampler's labels before relabelling.
    coords : dict, optional
        Subset, e.g. ``{"component": [0, 1]}`` or ``{"feature": ["waiting"]}`` (which
        also restricts correlations to pairs of the chosen features).
    compact : bool, default=True
        ``False`` gives every component its own row (labelled "..., component k").
    max_rows : int or None, default=20
        At most this many rows, shared fairly between the variables; the figure then says
        "showing N of M rows" and how many of each were drawn. ``None``: all rows.
    figsize : (float, float), optional
        Default: 11 inches wide, 1.7 inches per row.

    Returns
    -------
    matplotlib.figure.Figure
        ``rows x 2`` axes (``rows x 1`` for ``kind="trace"``), in row order. Unlike
        bayesgmm before issue 17 (an arviz-plots ``PlotCollection``), it is a plain
        Figure: ``fig.savefig("trace.png")``. Extra arviz keyword arguments are no longer
        accepted.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> post = xr.Dataset({"weights": (("chain", "draw", "component"),
    ...                                rng.dirichlet([5, 5], size=(2, 50)))})
    >>> fig = plot_trace(xr.DataTree.from_dict({"posterior": post}))
    >>> len(fig.axes), fig.axes[0].get_title()
    (2, 'weights: density')
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if kind not in _TRACE_KINDS:
        raise ConfigError(f"unknown kind {kind!r} for plot_trace; valid: {list(_TRACE_KINDS)}.")
    chosen = select_vars(idata, var_names, group)
    ds = idata[group].to_dataset()
    rows: list[_Row] = []
    for name in chosen:
        da = ds[name]
        if any(d not in da.dims for d in _SAMPLE_DIMS):
            raise DataError(f"{name!r} has dims {da.dims}; need chain and draw.")
        rows.extend(_rows_of(name, _subset(da, coords or {})))
    if not compact:  # a row per component (shared rows stay as they are)
        rows = [s for r in rows for s in _split(r)]
    if not rows:
        raise DataError(f"nothing to plot: {chosen} have no varying elements after coords.")
    rows, note = _cap(rows, max_rows)

    all_comps = list(dict.fromkeys(c for r in rows for c in (r.components or [])))
    every = [c.item() for c in ds["component"]] if "component" in ds.coords else all_comps
    colour = {c: f"C{i % 10}" for i, c in enumerate(every)}  # stable under coords
    n_chain = rows[0].values.shape[0]
    ncols = 2 if kind == "trace_dist" else 1
    # fixed margins in inches (tight_layout on dozens of axes is slow)
    header = 0.95 + (0.2 if note else 0.0)
    width, height = figsize or (11.0 if ncols == 2 else 7.0, header + 1.7 * len(rows) + 0.05)
    fig, axes = plt.subplots(
        len(rows),
        ncols,
        figsize=(width, height),
        squeeze=False,
        gridspec_kw={"width_ratios": [1, 2]} if ncols == 2 else None,
    )
    fig.subplots_adjust(
        left=0.75 / width,
        right=1 - 0.2 / width,
        top=1 - header / height,
        bottom=0.6 / height,
        hspace=0.55 / 1.15,
        wspace=0.8 / ((width - 0.95 - 0.8) / 2),
    )
    draws = np.arange(rows[0].values.shape[1])
    for i, row in enumerate(rows):
        ax_trace = axes[i, -1]
        labels = row.components or [None]
        for k, comp in enumerate(labels):
            col = colour.get(comp, _SHARED_COLOUR)
            for c in range(n_chain):
                shade = _shade(col, c, n_chain)
                ax_trace.plot(draws, row.values[c, :, k], color=shade, lw=0.5, alpha=0.8)
        ax_trace.set_title(f"{row.label}: trace", fontsize=9)
        ax_trace.set_ylabel("value", fontsize=8)
        ax_trace.tick_params(labelsize=7)
        if i == len(rows) - 1:
            ax_trace.set_xlabel("draw (per chain)", fontsize=8)
        if ncols == 2:
            ax_den = axes[i, 0]
            lo, hi = np.nanmin(row.values), np.nanmax(row.values)
            pad = 0.05 * (hi - lo)
            grid = np.linspace(lo - pad, hi + pad, 200)
            for k, comp in enumerate(labels):
                col = colour.get(comp, _SHARED_COLOUR)
                for c in range(n_chain):
                    ls = _CHAIN_STYLES[c % len(_CHAIN_STYLES)]
                    ax_den.plot(
                        grid,
                        kde_on_grid(row.values[c, :, k], grid),
                        color=_shade(col, c, n_chain),
                        ls=ls,
                        lw=1,
                    )
            ax_den.set_title(f"{row.label}: density", fontsize=9)
            ax_den.set_ylabel("density", fontsize=8)
            ax_den.set_yticks([])
            ax_den.tick_params(labelsize=7)
            if i == len(rows) - 1:
                ax_den.set_xlabel("value", fontsize=8)

    handles = [Line2D([], [], color=colour[c], lw=2, label=f"component {c}") for c in all_comps]
    if any(r.components is None for r in rows):
        handles.append(Line2D([], [], color=_SHARED_COLOUR, lw=2, label="shared by all components"))
    chain_handles = [
        Line2D(
            [],
            [],
            color=_shade("0.2", c, n_chain),
            ls=_CHAIN_STYLES[c % len(_CHAIN_STYLES)],
            label=f"chain {c}",
        )
        for c in range(n_chain)
    ]
    what = {"posterior": "relabelled draws", "posterior_raw": "the sampler's raw labels"}.get(
        group, f"group {group!r}"
    )
    title = f"Trace plot ({what}): colour = component; chain = shade (and line style in densities)"
    if note:
        title += f"\n{note}"
    fig.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    anchor = 1 - (0.45 if note else 0.3) / height
    if handles:
        fig.legend(
            handles=handles,
            loc="upper left",
            bbox_to_anchor=(0.5 / width, anchor),
            ncol=min(len(handles), 6),
            fontsize=8,
            frameon=False,
        )
    fig.legend(
        handles=chain_handles,
        loc="upper right",
        bbox_to_anchor=(1 - 0.1 / width, anchor),
        ncol=min(n_chain, 6),
        fontsize=8,
        frameon=False,
    )
    return fig
