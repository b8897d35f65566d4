"""``target_ess``: the sampler keeps drawing, in rounds, until the targets are met."""

import numpy as np
import pytest

pytest.importorskip("numpyro")

from bayesgmm import BayesianGMM
from bayesgmm.exceptions import ConfigError


def _data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(-3, 1, (40, 1)), rng.normal(3, 1, (40, 1))])


def _fit(**sampler):
    cfg = {"draws": 40, "tune": 100, "chains": 2, "random_seed": 5, "progressbar": False}
    return BayesianGMM(2, sampler={**cfg, **sampler}).fit(_data())


def test_rounds_of_draws_until_the_ess_target_is_met():
    gmm = _fit(target_ess=300)
    attrs = gmm.idata_["posterior"].attrs
    assert attrs["target_met"] is True and attrs["rounds"] > 1
    assert gmm.idata_["posterior"].sizes["draw"] == 40 * attrs["rounds"]
    table = gmm.diagnostics_.table
    assert table.loc["ess_bulk", "value"] >= 300 and table.loc["ess_tail", "value"] >= 300
    assert table.loc["r_hat", "value"] <= 1.01


def test_max_time_stops_the_rounds_and_says_so():
    gmm = _fit(target_ess=10**6, max_time=1e-3)
    attrs = gmm.idata_["posterior"].attrs
    assert attrs["target_met"] is False and attrs["rounds"] == 1


def test_a_target_out_of_reach_stops_after_two_rounds_and_says_why():
    # 40 draws a round cannot give an ESS of a million within MAX_ROUNDS rounds: the rate
    # of the first two rounds says so, and the sampler stops instead of drawing 20 rounds
    from bayesgmm.analysis.report_html import target_text
    from bayesgmm.inference.jaxnuts import MAX_ROUNDS

    gmm = _fit(target_ess=10**6)
    attrs = gmm.idata_["posterior"].attrs
    assert attrs["target_met"] is False and attrs["rounds"] == 2
    assert attrs["projected_rounds"] > MAX_ROUNDS
    text = target_text(attrs, 40, 10**6)
    assert "stopped early" in text and str(attrs["projected_rounds"]) in text


def test_target_ess_needs_the_numpyro_backend():
    with pytest.raises(ConfigError, match="numpyro backend only"):
        _fit(target_ess=100, nuts_sampler="pymc")
