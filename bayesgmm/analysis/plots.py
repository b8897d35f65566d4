"""Rank plots of the (relabelled) posterior with arviz-plots; the trace plot, re-exported.

:func:`plot_rank` plots the ``posterior`` group, which :func:`bayesgmm.relabel` (and
:class:`~bayesgmm.BayesianGMM` by default) fills with relabelled draws; pass
``group="posterior_raw"`` to see the sampler's raw labels. It returns the arviz-plots
``PlotCollection``; save it with ``pc.savefig("rank.png")`` and reach the matplotlib
figure as ``pc.viz["figure"].item()``.

:func:`plot_trace` lives in :mod:`bayesgmm.analysis.trace` (drawn with matplotlib, a row
of panels per quantity and feature, coloured by component) and returns a
:class:`matplotlib.figure.Figure`; it is re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import arviz as az
import xarray as xr

from bayesgmm.analysis.trace import plot_trace, select_vars
from bayesgmm.exceptions import ConfigError

__all__ = ["DEFAULT_PLOT_VARS", "plot_rank", "plot_trace"]

DEFAULT_PLOT_VARS = ("weights", "means", "sds")
# kind -> the ArviZ function that draws it
_RANK_KINDS = {"ecdf": "plot_rank", "dist": "plot_rank_dist"}


def _plot(name: str, kinds: dict, idata, var_names, kind, group, coords, kwargs):
    if kind not in kinds:
        raise ConfigError(f"unknown kind {kind!r} for {name}; valid: {list(kinds)}.")
    chosen = select_vars(idata, var_names, group, DEFAULT_PLOT_VARS)
    return getattr(az, kinds[kind])(idata, var_names=chosen, group=group, coords=coords, **kwargs)


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
    (``arviz.plot_rank_dist``). ``var_names`` defaults to ``weights``, ``means`` and
    ``sds``; ``coords`` subsets (e.g. ``{"component": [0, 1]}``); other keyword arguments
    go to the ArviZ function. Returns an ``arviz_plots.PlotCollection``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> draws = np.random.default_rng(0).normal(size=(2, 100))
    >>> tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"mu": (("chain", "draw"), draws)})})
    >>> type(plot_rank(tree)).__name__
    'PlotCollection'
    """
    return _plot("plot_rank", _RANK_KINDS, idata, var_names, kind, group, coords, kwargs)
