"""Trace and rank plots of the (relabelled) posterior, with ArviZ's arviz-plots.

Both functions plot the ``posterior`` group, which :func:`bayesgmm.relabel`
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
# kind -> the ArviZ function that draws it
_TRACE_KINDS = {"trace_dist": "plot_trace_dist", "trace": "plot_trace"}
_RANK_KINDS = {"ecdf": "plot_rank", "dist": "plot_rank_dist"}


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


def _plot(name: str, kinds: dict, idata, var_names, kind, group, coords, kwargs):
    if kind not in kinds:
        raise ConfigError(f"unknown kind {kind!r} for {name}; valid: {list(kinds)}.")
    chosen = _select(idata, var_names, group)
    return getattr(az, kinds[kind])(idata, var_names=chosen, group=group, coords=coords, **kwargs)


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
    return _plot("plot_trace", _TRACE_KINDS, idata, var_names, kind, group, coords, kwargs)


def plot_rank(
    idata: xr.DataTree,
    var_names: str | Sequence[str] | None = None,
    *,
    kind: str = "ecdf",
    coords: Mapping[str, Any] | None = None,
    group: str = "posterior",
    **kwargs: Any,
):
    """Rank plots for spotting chains that disagree.

    The draws are ranked over all chains; if every chain targets the same posterior each
    chain's ranks are uniform. A chain in another mode (or in another labelling, with
    ``group="posterior_raw"``) shows up as a curve far outside the band. ``kind``:
    ``"ecdf"`` (default), fractional-rank Delta-ECDF with a simultaneous band
    (``arviz.plot_rank``), or ``"dist"``, marginal densities next to the rank plots
    (``arviz.plot_rank_dist``); the other arguments are those of :func:`plot_trace`.
    Returns an ``arviz_plots.PlotCollection``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> draws = np.random.default_rng(0).normal(size=(2, 100))
    >>> tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), draws)})})
    >>> type(plot_rank(tree)).__name__
    'PlotCollection'
    """
    return _plot("plot_rank", _RANK_KINDS, idata, var_names, kind, group, coords, kwargs)
