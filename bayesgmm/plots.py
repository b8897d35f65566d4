"""Trace and rank plots of the (relabelled) posterior, with ArviZ's arviz-plots.

Both functions plot the ``posterior`` group, which :func:`bayesgmm.relabel.relabel`
(and :class:`~bayesgmm.BayesianGMM` by default) fills with relabelled draws; pass
``group="posterior_raw"`` to see the sampler's raw labels. They return the
arviz-plots ``PlotCollection``; save it with ``pc.savefig("trace.png")`` and reach the
matplotlib figure as ``pc.viz["figure"].item()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import xarray as xr

from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["DEFAULT_PLOT_VARS", "plot_rank", "plot_trace"]

DEFAULT_PLOT_VARS = ("weights", "means", "sds")
_TRACE_KINDS = ("trace_dist", "trace")
_RANK_KINDS = ("ecdf", "dist")


def _select(idata: xr.DataTree, var_names: str | Sequence[str] | None, group: str) -> list[str]:
    if not isinstance(idata, xr.DataTree) or group not in idata.children:
        have = list(idata.children) if isinstance(idata, xr.DataTree) else []
        raise DataError(f"need an xarray.DataTree with a {group!r} group; groups present: {have}.")
    available = list(idata[group].data_vars)
    if var_names is None:
        chosen = [v for v in DEFAULT_PLOT_VARS if v in available]
        return chosen or available
    chosen = [var_names] if isinstance(var_names, str) else list(var_names)
    missing = [v for v in chosen if v not in available]
    if missing:
        raise ConfigError(f"var_names {missing} are not in {group!r}; available: {available}.")
    return chosen


def plot_trace(
    idata: xr.DataTree,
    var_names: str | Sequence[str] | None = None,
    *,
    kind: str = "trace_dist",
    group: str = "posterior",
    coords: Mapping[str, Any] | None = None,
    **kwargs: Any,
):
    """Trace plots (draw vs value, and per-chain densities) of the posterior.

    Parameters
    ----------
    idata : xarray.DataTree
        Sampler output, relabelled so that component-indexed traces are meaningful.
    var_names : str or sequence of str, optional
        Variables to plot; default ``weights``, ``means`` and ``sds``.
    kind : {"trace_dist", "trace"}, default="trace_dist"
        ``"trace_dist"``: per-chain marginal densities next to the traces
        (``arviz.plot_trace_dist``); ``"trace"``: traces only (``arviz.plot_trace``).
    group : str, default="posterior"
        ``"posterior_raw"`` shows the sampler's labels before relabelling.
    coords : dict, optional
        Subset, e.g. ``{"component": [0, 1]}``.
    **kwargs
        Passed to the ArviZ function (e.g. ``compact=False``, ``backend="bokeh"``).

    Returns
    -------
    arviz_plots.PlotCollection

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> post = xr.Dataset({"weights": (("chain", "draw", "component"),
    ...                                rng.dirichlet([5, 5], size=(2, 50)))})
    >>> pc = plot_trace(xr.DataTree.from_dict({"posterior": post}))
    >>> type(pc).__name__
    'PlotCollection'
    """
    if kind not in _TRACE_KINDS:
        raise ConfigError(f"unknown kind {kind!r} for plot_trace; valid: {list(_TRACE_KINDS)}.")
    chosen = _select(idata, var_names, group)
    func = az.plot_trace_dist if kind == "trace_dist" else az.plot_trace
    return func(idata, var_names=chosen, group=group, coords=coords, **kwargs)


def plot_rank(
    idata: xr.DataTree,
    var_names: str | Sequence[str] | None = None,
    *,
    kind: str = "ecdf",
    group: str = "posterior",
    coords: Mapping[str, Any] | None = None,
    **kwargs: Any,
):
    """Rank plots for spotting chains that disagree.

    The draws are ranked over all chains; if every chain targets the same posterior each
    chain's ranks are uniform. A chain in another mode (or in another labelling, with
    ``group="posterior_raw"``) shows up as a curve far outside the band.

    Parameters
    ----------
    idata : xarray.DataTree
    var_names : str or sequence of str, optional
        Default ``weights``, ``means`` and ``sds``.
    kind : {"ecdf", "dist"}, default="ecdf"
        ``"ecdf"``: fractional-rank Delta-ECDF with a simultaneous band
        (``arviz.plot_rank``); ``"dist"``: marginal densities next to the rank plots
        (``arviz.plot_rank_dist``).
    group : str, default="posterior"
    coords : dict, optional
    **kwargs
        Passed to the ArviZ function.

    Returns
    -------
    arviz_plots.PlotCollection

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> post = xr.Dataset({"means": (("chain", "draw"), rng.normal(size=(2, 100)))})
    >>> type(plot_rank(xr.DataTree.from_dict({"posterior": post}))).__name__
    'PlotCollection'
    """
    if kind not in _RANK_KINDS:
        raise ConfigError(f"unknown kind {kind!r} for plot_rank; valid: {list(_RANK_KINDS)}.")
    chosen = _select(idata, var_names, group)
    func = az.plot_rank if kind == "ecdf" else az.plot_rank_dist
    return func(idata, var_names=chosen, group=group, coords=coords, **kwargs)
