"""Simulation-based calibration: the pieces (fast) and the full check (slow, issue 9)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bayesgmm import ConfigError, Prior
from bayesgmm.workflows.sbc import (
    SBC_PRIORS,
    _lkj,
    draw_prior,
    invariant_quantities,
    rank_uniformity,
    run_sbc,
    simulate,
)


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
@pytest.mark.slow
@pytest.mark.parametrize("n_features", [1, 2], ids=["1d_K2", "2d_K2_full"])
def test_sbc_ranks_are_uniform(n_features, tmp_path):
    res = run_sbc(200, n_features=n_features, draws=1000, tune=500, chains=2, random_seed=2026)
    assert (res.fits["status"] == "ok").all(), res.fits[res.fits["status"] != "ok"]
    assert len(res.ranks) == 200
    uni = res.uniformity(bins=10)
    res.plot().savefig(tmp_path / "ranks.png")
    assert uni["p_adjusted"].min() >= 0.01, uni.sort_values("p_value")


def test_prior_draws_of_an_eigen_family_are_in_the_family_and_follow_the_priors():
    """VEV: a volume and a uniform rotation per component, one log shape."""
    rng = np.random.default_rng(0)
    draws = [draw_prior(2, 2, {"sds": Prior("HalfNormal", sigma=2.0)}, rng, "VEV")
             for _ in range(4000)]  # fmt: skip
    theta = {name: np.stack([d[name] for d in draws]) for name in draws[0]}
    cov = theta["covariance"]
    assert cov.shape == (4000, 2, 2, 2) and np.all(np.linalg.eigvalsh(cov) > 0)
    vals = np.linalg.eigvalsh(cov)  # (n, K, 2), ascending
    # the shape (eigenvalues over their geometric mean) is shared by both components
    shape = vals / np.sqrt(vals.prod(-1, keepdims=True))
    np.testing.assert_allclose(shape[:, 0], shape[:, 1], rtol=1e-8)
    # volume: the geometric-mean sd ~ HalfNormal(2) (sds.sigma), in the data's units
    g = np.prod(vals, axis=-1) ** 0.25
    assert stats.kstest(g.ravel(), stats.halfnorm(scale=2.0).cdf).pvalue > 1e-3
    # orientation: the major axis's angle uniform on [0, pi)
    _, vecs = np.linalg.eigh(cov)
    angle = np.mod(np.arctan2(vecs[..., 1, 1], vecs[..., 0, 1]), np.pi)
    assert stats.kstest(angle.ravel(), stats.uniform(0, np.pi).cdf).pvalue > 1e-3
    # log shape ~ zero-sum Normal(0, 1): the log ratio of the eigenvalues is N(0, 2)
    log_ratio = np.log(vals[:, 0, 1] / vals[:, 0, 0])
    half = stats.halfnorm(scale=np.sqrt(2.0))  # ordered eigenvalues: its absolute value
    assert stats.kstest(log_ratio, half.cdf).pvalue > 1e-3
    np.testing.assert_allclose(theta["sds"] ** 2, np.diagonal(cov, axis1=-2, axis2=-1))
    # Dirichlet(2, 2) weights, Normal(0, 3) means as for the full family
    assert stats.kstest(theta["weights"][:, 0], stats.beta(2, 2).cdf).pvalue > 1e-3
    assert stats.kstest(theta["means"].ravel(), stats.norm(0, 3).cdf).pvalue > 1e-3


# Issue 18: calibration of three families with a non-trivial orientation (a rotation per
# component, VEV; one shared by components of their own shapes, EVE and VVE). The truth
# comes from draw_prior (numpy, independent of the model); 100 simulations each, N=100
# (150 passed too, 14 min for the three on 2 busy cores; bench/run_sbc.py runs 200).
@pytest.mark.slow
@pytest.mark.parametrize("covariance_type", ["VEV", "EVE", "VVE"])
def test_sbc_ranks_are_uniform_for_mclust_families(covariance_type, tmp_path):
    res = run_sbc(100, n_features=2, covariance_type=covariance_type, draws=500, tune=500,
                  chains=2, random_seed=2026)  # fmt: skip
    assert (res.fits["status"] == "ok").all(), res.fits[res.fits["status"] != "ok"]
    assert len(res.ranks) == 100 and "corr[1,10]" in res.ranks
    uni = res.uniformity(bins=10)
    res.plot().savefig(tmp_path / "ranks.png")
    assert uni["p_adjusted"].min() >= 0.01, uni.sort_values("p_value")


@pytest.mark.parametrize("covariance_type", ["tied", "diag", "spherical", "EEI", "VEE", "EVV"])
def test_prior_draws_of_every_kind_of_family_are_in_the_family(covariance_type):
    from bayesgmm.core.eigen_families import constrained_covariances
    from bayesgmm.core.families import family

    rng = np.random.default_rng(1)
    fam = family(covariance_type)
    for _ in range(20):
        cov = draw_prior(3, 3, None, rng, covariance_type)["covariance"]
        assert np.all(np.linalg.eigvalsh(cov) > 0)
        m = np.array([10.0, 20.0, 30.0])
        if fam.per_component:
            again = constrained_covariances(fam.mclust, cov * m[:, None, None], m, cov)
            np.testing.assert_allclose(again, cov, rtol=1e-6, atol=1e-10)
        else:
            np.testing.assert_allclose(cov, cov[:1].repeat(3, 0), rtol=1e-12)
