"""Simulation-based calibration: the pieces (fast) and the full check (slow, issue 9)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayesgmm import ConfigError, Prior
from bayesgmm.workflows.sbc import (
    SBC_PRIORS,
    draw_prior,
    invariant_quantities,
    rank_uniformity,
    run_sbc,
    simulate,
)
from bayesgmm.workflows.sbc_prior import _lkj


@pytest.mark.parametrize(("D", "eta"), [(2, 2.0), (3, 2.0), (4, 0.7)])
def test_lkj_draws_have_the_lkj_marginal(D, eta):
    # any off-diagonal r of an LKJ(eta) D x D correlation: (r + 1) / 2 ~ Beta(b, b),
    # b = eta - 1 + D / 2 (Lewandowski et al. 2009)
    rng = np.random.default_rng(0)
    mats = np.stack([_lkj(D, eta, rng) for _ in range(4000)])
    np.testing.assert_allclose(np.diagonal(mats, axis1=1, axis2=2), 1.0, atol=1e-12)
    assert np.all(np.linalg.eigvalsh(mats) > 0)
    b = eta - 1 + D / 2
    for i, j in [(1, 0), (D - 1, 0)]:
        p = stats.kstest((mats[:, i, j] + 1) / 2, stats.beta(b, b).cdf).pvalue
        assert p > 0.001, (i, j, p)


def test_draw_prior_follows_the_priors():
    rng = np.random.default_rng(1)
    draws = [
        draw_prior(2, 2, {"means": Prior("Normal", mu=5.0, sigma=0.5)}, rng) for _ in range(3000)
    ]
    means = np.stack([d["means"] for d in draws])
    sds = np.stack([d["sds"] for d in draws])
    weights = np.stack([d["weights"] for d in draws])
    assert abs(means.mean() - 5.0) < 0.03 and abs(means.std() - 0.5) < 0.03
    # HalfNormal(1): mean sqrt(2/pi)
    assert abs(sds.mean() - np.sqrt(2 / np.pi)) < 0.03
    # Dirichlet(2, 2): first weight ~ Beta(2, 2)
    assert stats.kstest(weights[:, 0], stats.beta(2, 2).cdf).pvalue > 0.001


def test_auto_priors_are_rejected():
    with pytest.raises(ConfigError, match="fixed priors"):
        draw_prior(2, 1, {"means": Prior("Normal", mu="auto", sigma=1.0)})


def test_simulate_matches_the_parameters():
    theta = {
        "weights": np.array([0.3, 0.7]),
        "means": np.array([[-5.0, 0.0], [5.0, 2.0]]),
        "sds": np.array([[1.0, 2.0], [0.5, 0.5]]),
        "correlation": np.array([[[1, 0.8], [0.8, 1]], [[1, -0.5], [-0.5, 1]]]),
    }
    X = simulate(theta, 20000, np.random.default_rng(2))
    left = X[X[:, 0] < 0]
    assert abs(len(left) / len(X) - 0.3) < 0.02
    np.testing.assert_allclose(left.mean(0), [-5, 0], atol=0.1)
    np.testing.assert_allclose(left.std(0), [1, 2], rtol=0.05)
    assert abs(np.corrcoef(left.T)[0, 1] - 0.8) < 0.03


def test_invariant_quantities_do_not_depend_on_labels():
    rng = np.random.default_rng(3)
    w = rng.dirichlet([1, 1, 1], size=5)
    mu = rng.normal(size=(5, 3, 2))
    sd = rng.uniform(0.5, 2, size=(5, 3, 2))
    corr = np.stack([[_lkj(2, 1.0, rng) for _ in range(3)] for _ in range(5)])
    perm = [2, 0, 1]
    a = invariant_quantities(w, mu, sd, corr)
    b = invariant_quantities(w[:, perm], mu[:, perm], sd[:, perm], corr[:, perm])
    assert a.keys() == b.keys() and "corr[2,10]" in a
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])
    assert np.all(np.diff(np.stack([a[f"means[{k},0]"] for k in range(3)], 1), axis=1) > 0)


def test_rank_uniformity_accepts_uniform_and_rejects_skewed_ranks():
    rng = np.random.default_rng(4)
    ranks = pd.DataFrame(
        {
            "uniform": rng.integers(0, 100, 400),
            # an overconfident posterior: the truth too often in the tails
            "tails": np.where(
                rng.random(400) < 0.5, rng.integers(0, 15, 400), rng.integers(85, 100, 400)
            ),
        }
    )
    out = rank_uniformity(ranks, n_ranks=99)
    assert out.loc["uniform", "p_value"] > 0.01
    assert out.loc["tails", "p_adjusted"] < 1e-6
    np.testing.assert_allclose(out["p_adjusted"], np.minimum(out["p_value"] * 2, 1))


def test_sbc_priors_are_proper_and_fixed():
    for p in SBC_PRIORS.values():
        assert "auto" not in p.params.values()


# Issue 9: >= 200 simulations per model; each fit is bayesgmm's whole pipeline (EM start,
# NUTS, relabelling). Same settings and seed as `python bench/run_sbc.py --model both`.
def test_prior_and_data_with_a_background():
    """noise = V: the draws without the background are unchanged (it is drawn last),
    ``noise_weight ~ Beta(mean(a), sum(a))``, and its share of the points is uniform on a
    box of volume V centred on the means' prior mean."""
    plain = draw_prior(2, 2, rng=np.random.default_rng(3))
    theta = draw_prior(2, 2, rng=np.random.default_rng(3), noise=400.0)
    for name, value in plain.items():
        np.testing.assert_array_equal(theta[name], value)
    np.testing.assert_allclose(theta["box"], [[-10.0, -10.0], [10.0, 10.0]])
    rng = np.random.default_rng(4)
    w0 = np.array([draw_prior(2, 1, rng=rng, noise=30.0)["noise_weight"] for _ in range(3000)])
    assert stats.kstest(w0, stats.beta(2.0, 4.0).cdf).pvalue > 0.001  # a = (2, 2)
    far = {**theta, "means": np.array([[100.0, 100.0], [200.0, 200.0]]), "noise_weight": 0.25}
    X = simulate(far, 20000, np.random.default_rng(5))
    noise = X[:, 0] < 50  # the Gaussians are far from the box
    assert abs(noise.mean() - 0.25) < 0.015
    assert X[noise].min() >= -10.0 and X[noise].max() <= 10.0
    assert stats.kstest(X[noise, 1], stats.uniform(-10, 20).cdf).pvalue > 0.001
    with pytest.raises(ConfigError, match="positive volume"):
        run_sbc(1, noise=True)
    with pytest.raises(ConfigError, match="positive volume"):
        run_sbc(1, noise="yes")
    with pytest.raises(ConfigError, match="must be positive"):
        run_sbc(1, noise=float("inf"))


# A background-noise component of volume 30 (the box [-15, 15]; means ~ Normal(0, 3)):
# the Gaussians' shares, means, sds and the background's weight, 100 simulations of 100
# points, K = 2, one feature (every adjusted p was 1.0; bench/README.md has 600 more).
@pytest.mark.slow
def test_sbc_ranks_are_uniform_with_a_background(tmp_path):
    res = run_sbc(100, noise=30.0, draws=500, tune=500, chains=2, random_seed=7)
    assert (res.fits["status"] == "ok").all(), res.fits[res.fits["status"] != "ok"]
    assert len(res.ranks) == 100 and "noise_weight" in res.ranks
    assert res.settings["noise"] == 30.0
    uni = res.uniformity(bins=10)
    res.plot().savefig(tmp_path / "ranks.png")
    assert uni["p_adjusted"].min() >= 0.01, uni.sort_values("p_value")


@pytest.mark.slow
@pytest.mark.parametrize("n_features", [1, 2], ids=["1d_K2", "2d_K2_full"])
def test_sbc_ranks_are_uniform(n_features, tmp_path):
    res = run_sbc(200, n_features=n_features, draws=1000, tune=500, chains=2, random_seed=2026)
    assert (res.fits["status"] == "ok").all(), res.fits[res.fits["status"] != "ok"]
    assert len(res.ranks) == 200
    uni = res.uniformity(bins=10)
    res.plot().savefig(tmp_path / "ranks.png")
    assert uni["p_adjusted"].min() >= 0.01, uni.sort_values("p_value")
