"""The posterior summary table (ArviZ) of a fit, in the data's units, with 94% HDIs.

bayesgmm states every interval one way: 94% highest-density intervals (HDI), the same
as the assignment probabilities' (:func:`bayesgmm.core.predict.assignments_table`), in
columns that say so (``hdi94_lb``/``hdi94_ub`` here, ``prob_<k>_hdi94_lower``/``_upper``
there); ArviZ 1's own default would be 89% equal-tailed intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import arviz_stats as azs
import numpy as np
import pandas as pd
import xarray as xr

from bayesgmm.core.approx import describe, is_approximate, label

__all__ = [
    "CI_KIND",
    "CI_PROB",
    "POOLED_NOTE",
    "SUMMARY_VARS",
    "interval_text",
    "is_pooled",
    "posterior_summary",
]

SUMMARY_VARS = ("weights", "noise_weight", "means", "sds", "correlation")
#: The interval of every bayesgmm summary: a 94% highest-density interval.
CI_KIND, CI_PROB = "hdi", 0.94


def interval_text(prob: float = CI_PROB, kind: str = CI_KIND) -> str:
    """How an interval is named in text.

    Examples
    --------
    >>> interval_text(), interval_text(0.89, "eti")
    ('94% HDI', '89% ETI')
    """
    return f"{round(100 * prob, 4):g}% {kind.upper()}"


def posterior_summary(
    idata: xr.DataTree, var_names: Sequence[str] | None = None, **kwargs: Any
) -> pd.DataFrame:
    """ArviZ summary (mean, sd, 94% HDI, MCSE, ESS, R-hat) of a fit's posterior.

    The interval is the 94% HDI (columns ``hdi94_lb``, ``hdi94_ub``) unless ``ci_prob`` or
    ``ci_kind`` is given (they, and every other keyword, go to ``arviz.summary``).
    Defaults to the weights (and a background's noise_weight), means, sds and (full/tied)
    correlations in the data's units;
    correlations are given once per pair of features (``"a:b"``), the strictly lower
    triangle. For an approximate (ADVI) fit the MCMC columns (MCSE, ESS, R-hat),
    meaningless for independent variational draws, are left out (``kind="stats"`` unless
    ``kind`` is given), the column header reads e.g. "approximate (minibatch ADVI)" and
    ``attrs["approximate"]`` is True. Likewise for a posterior stacked from draws of
    several modes (:mod:`bayesgmm.analysis.modes`): one pooled sequence has no chains to
    compare and no autocorrelation of one run, so its ESS and R-hat would mislead; the
    table has the statistics only and ``attrs["stacked"]`` is True (the diagnostics
    check each mode on its own chains).

    Examples
    --------
    >>> import xarray as xr
    >>> from bayesgmm.core.draws import example_posterior
    >>> t = posterior_summary(xr.DataTree.from_dict({"posterior": example_posterior()}))
    >>> t.index[0], "r_hat" in t.columns
    ('weights[0]', True)
    >>> list(t.columns[2:4])
    ['hdi94_lb', 'hdi94_ub']
    """
    kwargs.setdefault("ci_kind", CI_KIND)
    kwargs.setdefault("ci_prob", CI_PROB)
    approximate = is_approximate(idata)
    pooled = is_pooled(idata)
    if approximate or pooled:
        kwargs.setdefault("kind", "stats")
    post = idata["posterior"].to_dataset()
    if var_names is None:
        var_names = [v for v in SUMMARY_VARS if v in post]
    post = post[list(var_names)]
    if "correlation" in post:  # keep the strictly lower triangle only
        corr = post["correlation"]
        names = np.asarray([str(f) for f in post["feature"].to_numpy()])
        i, j = np.tril_indices(len(names), k=-1)
        pair = [f"{a}:{b}" for a, b in zip(names[i], names[j], strict=True)]
        stacked = xr.concat(
            [corr.isel(feature=a, feature_bis=b, drop=True) for a, b in zip(i, j, strict=True)],
            dim=pd.Index(pair, name="pair"),
        )
        post = post.drop_vars("correlation", errors="ignore").drop_dims(
            "feature_bis", errors="ignore"
        )
        post["correlation"] = stacked
    table = azs.summary(post, **kwargs)
    if kwargs.get("round_to", "auto") == "auto" and isinstance(table, pd.DataFrame):
        _round_intervals(table)
    if approximate and isinstance(table, pd.DataFrame):
        table.columns.name = f"approximate ({label(idata)})"
        table.attrs.update(approximate=True, inference="advi", note=describe(idata))
    if pooled and isinstance(table, pd.DataFrame):
        table.attrs.update(stacked=True, note=POOLED_NOTE)
    return table


def _round_intervals(table: pd.DataFrame) -> None:
    """Show interval bounds to the first significant digit of each row's sd (in place;
    the values stay exact: ``round_to="auto"`` rounds only the display strings).

    ArviZ's automatic rounding shows them to two significant figures, which prints a
    narrow interval of a large value as "190 to 190"; one significant digit of the sd
    keeps the bounds apart without claiming more precision than the mean has.
    """
    shown = getattr(table, "_fmt_map", None)  # arviz-stats' SummaryDataFrame display strings
    bounds = [c for c in table.columns if str(c).endswith(("_lb", "_ub"))]
    if not shown or not bounds or "sd" not in table.columns:
        return
    sd = table["sd"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        digits = np.where(np.isfinite(sd) & (sd > 0), -np.floor(np.log10(sd)), 4)
    for col in bounds:
        shown[col] = {
            idx: f"{round(float(v), int(d)):.{max(int(d), 0)}f}"
            for idx, v, d in zip(table.index, table[col].to_numpy(dtype=float), digits, strict=True)
        }


#: Why a stacked posterior's summary has no MCMC columns.
POOLED_NOTE = (
    "the posterior pools draws of several modes (stacking) into one sequence, so the "
    "summary gives no ESS, MCSE or R-hat; the diagnostics check each mode on its own chains"
)


def is_pooled(idata: xr.DataTree) -> bool:
    """Whether ``idata``'s posterior is draws of several modes pooled into one sequence.

    Examples
    --------
    >>> import xarray as xr
    >>> from bayesgmm.core.draws import example_posterior
    >>> is_pooled(xr.DataTree.from_dict({"posterior": example_posterior()}))
    False
    """
    return (
        isinstance(idata, xr.DataTree)
        and "posterior_chains" in idata.children
        and "modes" in idata.children
        and idata["posterior"].sizes.get("chain") == 1
        and idata["posterior_chains"].sizes.get("chain", 1) > 1
    )
