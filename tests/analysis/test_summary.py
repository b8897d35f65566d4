"""The posterior summary table: 94% HDIs, and no MCMC columns for a pooled posterior."""

from __future__ import annotations

import numpy as np
import xarray as xr

from bayesgmm.analysis.summary import is_pooled, posterior_summary
from bayesgmm.core.draws import example_posterior


def _pooled_tree() -> xr.DataTree:
    chains = example_posterior()
    assert chains.sizes["chain"] > 1
    flat = chains.stack(sample=("chain", "draw")).transpose("sample", ...)
    flat = flat.drop_vars(["sample", "chain", "draw"]).rename({"sample": "draw"})
    pooled = flat.expand_dims(chain=[0]).assign_coords(draw=np.arange(flat.sizes["draw"]))
    modes = xr.Dataset({"weight": ("mode_index", [0.7, 0.3])}, attrs={"action": "stacked"})
    return xr.DataTree.from_dict({"posterior": pooled, "posterior_chains": chains, "modes": modes})


def test_a_pooled_posterior_has_statistics_but_no_ess_or_rhat():
    tree = _pooled_tree()
    assert is_pooled(tree)
    table = posterior_summary(tree)
    assert table.attrs["stacked"] is True
    assert {"mean", "sd", "hdi94_lb", "hdi94_ub"} <= set(table.columns)
    assert not {"r_hat", "ess_bulk", "ess_tail", "mcse_mean"} & set(table.columns)


def test_sampled_chains_keep_the_mcmc_columns():
    tree = xr.DataTree.from_dict({"posterior": example_posterior()})
    assert not is_pooled(tree)
    table = posterior_summary(tree)
    assert {"r_hat", "ess_bulk", "hdi94_lb"} <= set(table.columns)
    assert "stacked" not in table.attrs


def test_a_narrow_interval_of_a_large_value_shows_distinct_bounds():
    # ArviZ's automatic rounding (two significant figures) would print 190 and 190
    draws = np.random.default_rng(0).normal(190.0, 0.5, size=(2, 500))
    tree = xr.DataTree.from_dict({"posterior": xr.Dataset({"means": (("chain", "draw"), draws)})})
    table = posterior_summary(tree)
    shown = table.to_string().splitlines()[1].split()
    lower, upper = float(shown[3]), float(shown[4])
    assert 188.5 < lower < 189.4 < 190.6 < upper < 191.5
    assert table["hdi94_lb"].iloc[0] == posterior_summary(tree, round_to="none")["hdi94_lb"].iloc[0]
