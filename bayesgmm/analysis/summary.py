"""The posterior summary table (ArviZ) of a fit, in the data's units."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayesgmm.core.approx import describe, is_approximate, label

__all__ = ["SUMMARY_VARS", "posterior_summary"]

SUMMARY_VARS = ("weights", "means", "sds", "correlation")


def posterior_summary(
    idata: xr.DataTree, var_names: Sequence[str] | None = None, **kwargs: Any
) -> pd.DataFrame:
    """ArviZ summary (mean, sd, HDI, MCSE, ESS, R-hat) of a fit's posterior.

    Defaults to the weights, means, sds and (full/tied) correlations in the data's units;
    correlations are given once per pair of features (``"a:b"``), the strictly lower
    triangle. For an approximate (ADVI) fit the MCMC columns (MCSE, ESS, R-hat),
    meaningless for independent variational draws, are left out (``kind="stats"`` unless
    ``kind`` is given), the column header reads e.g. "approximate (minibatch ADVI)" and
    ``attrs["approximate"]`` is True.

    Examples
    --------
    >>> import xarray as xr
    >>> from bayesgmm.core.draws import example_posterior
    >>> t = posterior_summary(xr.DataTree.from_dict({"posterior": example_posterior()}))
    >>> t.index[0], "r_hat" in t.columns
    ('weights[0]', True)
    """
    approximate = is_approximate(idata)
    if approximate:
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
    table = az.summary(post, **kwargs)
    if approximate and isinstance(table, pd.DataFrame):
        table.columns.name = f"approximate ({label(idata)})"
        table.attrs.update(approximate=True, inference="advi", note=describe(idata))
    return table
