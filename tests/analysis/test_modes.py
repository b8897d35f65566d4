"""Chains in different posterior modes: found label-invariantly, described and stacked."""

import numpy as np
import pytest
import xarray as xr

from bayesgmm.analysis.diagnostics import diagnose
from bayesgmm.analysis.modes import find_modes, stack_modes
from bayesgmm.core.config import SamplerConfig
from bayesgmm.core.predict import draw_log_densities
from bayesgmm.estimator.posterior import finish_posterior

CENTRES = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 8.0]])


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([c + rng.normal(scale=0.6, size=(50, 2)) for c in CENTRES])


MODE_A = {
    "weights": np.full(3, 1 / 3),
    "means": CENTRES,
    "covariance": np.broadcast_to(0.36 * np.eye(2), (3, 2, 2)),
}
MODE_B = {  # clusters 0 and 1 merged; component 2 nearly empty
    "weights": np.array([0.65, 0.33, 0.02]),
    "means": np.array([[2.0, 0.0], [0.0, 8.0], [0.3, 8.3]]),
    "covariance": np.array([np.diag([4.4, 0.36]), 0.36 * np.eye(2), 0.05 * np.eye(2)]),
}


def _two_modes(X, seed=1, chains_b=(3,), swap_labels_in=None, a=MODE_A, b=MODE_B, moves_at=0):
    """4 chains x 200 draws: chains in ``chains_b`` in a mode where clusters 0 and 1 are
    merged into one broad component and component 2 holds 2% of the points near
    cluster 2; the others near the three true clusters."""
    rng = np.random.default_rng(seed)
    C, S, K = 4, 200, 3
    w = np.empty((C, S, K))
    mu = np.empty((C, S, K, 2))
    cov = np.empty((C, S, K, 2, 2))
    for c in range(C):
        for lo, hi in ((0, moves_at), (moves_at, S)):
            mode = b if c in chains_b and lo == moves_at else a
            n = hi - lo
            noise = rng.dirichlet(np.full(K, 2000.0), size=n)
            p = noise * mode["weights"]
            w[c, lo:hi] = p / p.sum(-1, keepdims=True)
            mu[c, lo:hi] = mode["means"] + rng.normal(scale=0.05, size=(n, K, 2))
            cov[c, lo:hi] = mode["covariance"] * np.exp(rng.normal(scale=0.05, size=(n, K, 1, 1)))
    if swap_labels_in is not None:  # the same mode with permuted labels
        for arr in (w, mu, cov):
            arr[swap_labels_in] = arr[swap_labels_in][:, [2, 0, 1]]
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        },
        coords={"component": [0, 1, 2], "feature": ["a", "b"], "feature_bis": ["a", "b"]},
    )
    ll = xr.Dataset({"x": (("chain", "draw", "obs"), draw_log_densities(post, X))})
    observed = xr.Dataset({"x": (("obs", "feature"), X)}, coords={"feature": ["a", "b"]})
    return xr.DataTree.from_dict(
        {"posterior": post, "log_likelihood": ll, "observed_data": observed}
    )


def test_chains_in_different_modes_are_found_and_described():
    report = find_modes(_two_modes(_data()))
    assert [m.where(200) for m in report.modes] == ["chains 0, 1, 2", "chain 3"]
    assert report.separation > 10
    text = report.describe()
    assert "mode 2: chain 3 (25% of the draws)" in text
    assert "component 2 holds 2% of the points (mode 1: 33%)" in text


def test_permuted_labels_are_not_a_mode():
    report = find_modes(_two_modes(_data(), chains_b=(), swap_labels_in=1))
    assert not report.multimodal
    assert [m.where(200) for m in report.modes] == ["chains 0, 1, 2, 3"]


def test_stacking_weights_the_better_mode_and_keeps_every_chain():
    tree = _two_modes(_data())
    report = find_modes(tree)
    stacked = stack_modes(tree, report)
    weights = [m.weight for m in report.modes]
    assert weights[0] > 0.99 and np.isclose(sum(weights), 1.0)
    assert stacked["posterior"].sizes["chain"] == 3  # mode 1's chains
    assert stacked["posterior_chains"].sizes["chain"] == 4  # nothing dropped
    assert stacked["log_likelihood"].sizes["chain"] == 3
    np.testing.assert_array_equal(stacked["modes"]["block_mode"].values[:, 0], [1, 1, 1, 2])
    assert "stacking weight" in stacked["modes"].attrs["description"]


def test_stacking_pools_modes_that_both_get_weight():
    # mode 1 too wide for cluster 2, mode 2 too wide for clusters 0 and 1: each predicts
    # part of the data better, so their mixture beats either and both get weight
    wide = np.diag([9.0, 9.0])
    a = {**MODE_A, "covariance": np.array([0.36 * np.eye(2), 0.36 * np.eye(2), wide])}
    b = {**MODE_A, "covariance": np.array([wide, wide, 0.36 * np.eye(2)])}
    tree = _two_modes(_data(), chains_b=(2, 3), a=a, b=b)
    report = find_modes(tree)
    assert [m.where(200) for m in report.modes] == ["chains 0, 1", "chains 2, 3"]
    stacked = stack_modes(tree, report)
    w = np.array([m.weight for m in report.modes])
    assert np.all(w > 0.1), w
    post = stacked["posterior"]
    assert post.sizes["chain"] == 1  # the pooled draws of both modes
    # the draws of each mode in proportion to its weight (the heavier keeps all of its)
    big = int(np.argmax(w))
    n_a = int((post["covariance"].values[0, :, 2, 0, 0] > 3).sum())  # wide: mode 1
    n_b = post.sizes["draw"] - n_a
    np.testing.assert_allclose(n_b / (n_a + n_b), w[1], atol=0.01)
    assert max(n_a, n_b) == 400 and [n_a, n_b][big] == 400
    assert stacked["posterior_chains"].sizes["chain"] == 4


@pytest.mark.parametrize("multimodal", ["stack", "report"])
def test_the_verdict_names_modes_and_what_was_done(multimodal):
    tree = _two_modes(_data())
    config = SamplerConfig(multimodal=multimodal)
    out, _ = finish_posterior(tree, None, _data(), None, 0, config)
    row = diagnose(out).table.loc["modes"]
    assert "chain 3" in row["detail"] and "component 2 holds 2%" in row["detail"]
    if multimodal == "stack":
        assert row["verdict"] == "warn"
        assert "stacking" in row["advice"]
        assert out["posterior"].sizes["chain"] == 3
    else:
        assert row["verdict"] == "fail"
        assert "multimodal='report'" in row["detail"]
        assert out["posterior"].sizes["chain"] == 4


def test_modes_that_stacking_cannot_weigh_are_pooled_and_the_reason_given(monkeypatch):
    # PSIS-LOO can fail on a mode of a few draws ("All tail values are the same", seen on
    # penguins with K = 4): the fit keeps the chains as sampled and says why, not crash
    import bayesgmm.analysis.modes as modes

    def fails(idata, report):
        raise ValueError("Encountered error trying to compute ELPD") from ValueError(
            "All tail values are the same"
        )

    monkeypatch.setattr(modes, "stacking_weights", fails)
    tree = _two_modes(_data())
    out, _ = finish_posterior(tree, None, _data(), None, 0, SamplerConfig())
    assert out["posterior"].sizes["chain"] == 4 and out["modes"].attrs["action"] == "reported"
    row = diagnose(out).table.loc["modes"]
    assert "stacking could not weigh the modes" in row["detail"]
    assert "All tail values are the same" in row["detail"]


def test_one_mode_leaves_the_tree_alone():
    tree = _two_modes(_data(), chains_b=())
    out, _ = finish_posterior(tree, None, _data(), None, 0, SamplerConfig())
    assert "modes" not in out.children and "posterior_chains" not in out.children


def test_a_chain_that_moves_mid_run_is_found_and_left_out_of_the_stack():
    # as seen on iris: chain 3 moves, after 100 draws, into the mode with an empty component
    tree = _two_modes(_data(), moves_at=100)
    report = find_modes(tree)
    assert [m.where(200) for m in report.modes] == [
        "chains 0, 1, 2 and chain 3's draws 0-99",
        "chain 3 from draw 100",
    ]
    stacked = stack_modes(tree, report)
    assert report.modes[0].weight > 0.99
    assert stacked["posterior"].sizes["chain"] == 3  # the chains that stayed in mode 1
    assert "1 chain(s) that left it are kept" in stacked["modes"].attrs["description"]
    np.testing.assert_array_equal(stacked["modes"]["block_mode"].values[3], [1] * 4 + [2] * 4)


def test_pooled_modes_are_diagnosed_mode_by_mode():
    wide = np.diag([9.0, 9.0])
    a = {**MODE_A, "covariance": np.array([0.36 * np.eye(2), 0.36 * np.eye(2), wide])}
    b = {**MODE_A, "covariance": np.array([wide, wide, 0.36 * np.eye(2)])}
    tree = _two_modes(_data(), chains_b=(2, 3), a=a, b=b)
    out, _ = finish_posterior(tree, None, _data(), None, 0, SamplerConfig())
    assert out["posterior"].sizes["chain"] == 1
    report = diagnose(out)
    # each mode's own chains: independent draws agree, so R-hat ~1 and ESS ~ draws
    assert report.table.loc["r_hat", "value"] < 1.05
    assert report.table.loc["ess_bulk", "value"] > 200
    assert any("by its stacking weight" in n for n in report.notes)


def test_slow_drift_and_wandering_empty_components_are_not_modes():
    # what an overfitted (sparse) mixture looks like: every chain drifts slowly (a random
    # walk in the log-likelihood, blocks far apart at the ends but each close to the
    # next), and five nearly empty components wander between 1e-6 and 1e-2 of the points
    rng = np.random.default_rng(3)
    C, S = 2, 300
    walk = np.cumsum(rng.normal(scale=0.6, size=(C, S)), axis=1)
    ll = (-820.0 + walk + rng.normal(scale=2.0, size=(C, S)))[..., None]
    tiny = 10 ** rng.uniform(-6, -2, size=(C, S, 5))
    big = np.array([0.34, 0.33, 0.33]) + rng.normal(scale=0.01, size=(C, S, 3))
    w = np.concatenate([big, tiny], axis=-1)
    w /= w.sum(-1, keepdims=True)
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"weights": (("chain", "draw", "component"), w)}),
            "log_likelihood": xr.Dataset({"x": (("chain", "draw", "obs"), ll)}),
        }
    )
    z_ends = abs(ll[:, :30].mean() - ll[:, -30:].mean()) / ll[:, :30].std()
    report = find_modes(tree)
    assert not report.multimodal, (z_ends, report.describe())


def test_a_move_inside_a_block_does_not_bridge_the_modes():
    # the block holding the move has draws of both modes (a wide sd): it must not join
    # them into one (seen on iris, seed 3)
    tree = _two_modes(_data(), moves_at=110)
    report = find_modes(tree)
    assert report.multimodal
    first = report.modes[0]
    assert first.whole_chains(200) == [0, 1, 2]
    assert all(c == 3 for m in report.modes[1:] for c in m.n_draws)
    assert any(m.where(200) == "chain 3 from draw 125" for m in report.modes[1:])
