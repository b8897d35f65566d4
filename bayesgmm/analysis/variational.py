"""Diagnostics of an approximate (minibatch ADVI) fit: the ELBO's convergence.

Independent draws from a fitted approximation have no R-hat, ESS or MCSE to speak of;
:func:`diagnose_variational` (called by :func:`bayesgmm.diagnose` for such a fit) checks
the optimisation's loss instead, with the thresholds in :mod:`bayesgmm.analysis.diagnostics`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from bayesgmm.analysis.advice import ADVICE, OK_ADVICE
from bayesgmm.analysis.diagnostics import DiagnosticsReport, grade
from bayesgmm.core.approx import describe

__all__ = ["diagnose_variational"]


def diagnose_variational(
    idata: xr.DataTree, flat: xr.DataArray, relabelled: bool
) -> DiagnosticsReport:
    """The report of an approximate (ADVI) fit: ELBO convergence, no MCMC checks."""
    rows = []

    def add(check, value, threshold, verdict, detail):
        advice = ADVICE[check] if verdict != "ok" else OK_ADVICE
        rows.append((check, value, threshold, verdict, detail, advice))

    loss = (
        idata["variational"]["loss"].to_numpy()
        if "variational" in idata.children and "loss" in idata["variational"]
        else np.array([])
    )
    w = loss.size // 10
    if w < 2:
        add("elbo_trend", np.nan, "-", "warn", f"{loss.size} steps recorded: too few to judge")
        rows[-1] = (*rows[-1][:5], ADVICE["elbo_trend"])
    else:
        first, prev, last = loss[:w], loss[-2 * w : -w], loss[-w:]
        # (check, earlier tenth, what the threshold bounds, value graded, detail)
        checks = (
            ("elbo_trend", prev, "|change|", abs,
             f"-ELBO {last.mean():,.1f} over the last tenth of {loss.size:,} steps, "
             f"{float(last.mean() - prev.mean()):+,.1f} nats from the tenth before"),
            ("elbo_progress", first, "rise", float,
             f"-ELBO {first.mean():,.1f} (first tenth) -> {last.mean():,.1f} (last tenth)"),
        )  # fmt: skip
        for check, earlier, bound, graded, detail in checks:
            value = float(last.mean() - earlier.mean())
            se = np.sqrt(earlier.var(ddof=1) / earlier.size + last.var(ddof=1) / last.size)
            tol = max(3 * float(se), 1.0)
            threshold = f"{bound} <= {tol:,.1f} nats (warn <= {5 * tol:,.1f})"
            add(check, value, threshold, grade(graded(value), tol, 5 * tol, False), detail)
    table = pd.DataFrame(
        rows, columns=["check", "value", "threshold", "verdict", "detail", "advice"]
    ).set_index("check")
    params = pd.DataFrame(
        {
            "mean": flat.mean(("chain", "draw")).to_numpy(),
            "sd": flat.std(("chain", "draw")).to_numpy(),
        },
        index=pd.Index(flat["param"].to_numpy(), name="param"),
    )
    notes = [
        f"{describe(idata)}. R-hat, ESS and MCSE do not apply to independent draws from a "
        "variational approximation; mean-field ADVI typically underestimates posterior "
        "variances (use NUTS for calibrated intervals when it is affordable)."
    ]
    return DiagnosticsReport(
        table=table,
        parameters=params,
        n_chains=flat.sizes["chain"],
        n_draws=flat.sizes["draw"],
        relabelled=relabelled,
        notes=notes,
        inference="advi",
    )
