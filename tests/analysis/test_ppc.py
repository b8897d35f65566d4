"""Posterior predictive draws, PPC plots and cluster plots (bayesgmm.analysis.ppc).

A synthetic DataTree (posterior draws around the truth, data simulated from the truth,
pointwise log-likelihood computed with scipy) keeps these tests fast; plots render with
the Agg backend and are checked as PNG files.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

from bayesgmm.analysis.clusters import plot_clusters
from bayesgmm.analysis.ppc import (
    check_fit,
    loo_pit,
    plot_loo_pit,
    plot_ppc,
    posterior_predictive,
)
from bayesgmm.core.predict import predict_proba
from bayesgmm.exceptions import ConfigError, DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CENTRES = np.array([[0.0, 0.0], [5.0, 2.0]])
COV = np.array([[[1.0, 0.4], [0.4, 0.8]], [[0.6, -0.2], [-0.2, 1.2]]])
WEIGHTS = np.array([0.4, 0.6])
FEATURES = ["height", "width"]


def make_tree(
    seed: int = 0, n_obs: int = 120, n_chain: int = 2, n_draw: int = 60, cov_scale: float = 1.0
):
    """Data from a known mixture and posterior-like draws around the truth.

    ``cov_scale`` scales the posterior's covariances (1: well specified).
    """
    rng = np.random.default_rng(seed)
    comp = rng.choice(2, size=n_obs, p=WEIGHTS)
    X = CENTRES[comp] + np.einsum(
        "nij,nj->ni", np.linalg.cholesky(COV)[comp], rng.normal(size=(n_obs, 2))
    )
    shape = (n_chain, n_draw)
    w = rng.dirichlet(100 * WEIGHTS, size=shape)
    mu = CENTRES + 0.1 * rng.normal(size=(*shape, 2, 2))
    cov = cov_scale * COV * np.exp(0.05 * rng.normal(size=(*shape, 2, 1, 1)))
    ll = np.empty((*shape, n_obs))
    for c in range(n_chain):
        for d in range(n_draw):
            terms = [
                np.log(w[c, d, k]) + stats.multivariate_normal(mu[c, d, k], cov[c, d, k]).logpdf(X)
                for k in range(2)
            ]
            ll[c, d] = logsumexp(terms, axis=0)
    coords = {"chain": np.arange(n_chain), "draw": np.arange(n_draw)}
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        },
        coords={**coords, "component": [0, 1], "feature": FEATURES, "feature_bis": FEATURES},
    )
    return xr.DataTree.from_dict(
        {
            "posterior": post,
            "log_likelihood": xr.Dataset({"x": (("chain", "draw", "obs"), ll)}, coords=coords),
            "observed_data": xr.Dataset(
                {"x": (("obs", "feature"), X)},
                coords={"obs": np.arange(n_obs), "feature": FEATURES},
            ),
        }
    )


def assert_png(path, min_bytes: int = 5_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_posterior_predictive_group_dims_and_moments():
    dt = make_tree()
    out = posterior_predictive(dt, random_seed=1, max_draws=None)
    assert out is dt
    x = dt["posterior_predictive"]["x"]
    assert x.dims == ("chain", "draw", "obs", "feature")
    assert x.shape == (2, 60, 120, 2)
    assert list(x["feature"].to_numpy()) == FEATURES
    np.testing.assert_array_equal(x["draw"], dt["posterior"]["draw"])
    # replicated data come from the mixture: pooled mean and covariance match the truth
    pooled = x.to_numpy().reshape(-1, 2)
    mix_mean = WEIGHTS @ CENTRES
    diff = CENTRES - mix_mean
    mix_cov = np.einsum("k,kij->ij", WEIGHTS, COV + np.einsum("ki,kj->kij", diff, diff))
    np.testing.assert_allclose(pooled.mean(axis=0), mix_mean, atol=0.05)
    np.testing.assert_allclose(np.cov(pooled.T), mix_cov, atol=0.15)
    # seeded: same seed, same replicated data
    again = posterior_predictive(make_tree(), random_seed=1, max_draws=None)
    np.testing.assert_array_equal(again["posterior_predictive"]["x"], x)


def test_posterior_predictive_thins_draws():
    dt = posterior_predictive(make_tree(), random_seed=1, max_draws=20)
    x = dt["posterior_predictive"]["x"]
    assert x.sizes["chain"] == 2 and x.sizes["draw"] == 10
    np.testing.assert_array_equal(x["draw"], np.arange(0, 60, 6))


def test_posterior_predictive_needs_groups():
    dt = make_tree()
    with pytest.raises(DataError, match="observed_data"):
        posterior_predictive(xr.DataTree.from_dict({"posterior": dt["posterior"].to_dataset()}))
    with pytest.raises(DataError, match="DataTree"):
        posterior_predictive(dt["posterior"].to_dataset())


def test_loo_pit_is_roughly_uniform_for_a_well_specified_model():
    dt = make_tree(seed=3)
    pit = loo_pit(dt, random_seed=4, max_draws=None)
    assert set(pit.data_vars) == set(FEATURES)
    for f in FEATURES:
        values = pit[f].to_numpy()
        assert values.shape == (120,)
        assert np.all((values > -1e-9) & (values < 1 + 1e-9))  # ArviZ rounding
        assert stats.kstest(values, "uniform").pvalue > 1e-3


def test_loo_pit_detects_a_misspecified_model():
    # posterior covariances far too small: observations fall in the predictive tails
    dt = make_tree(seed=3, n_obs=300, cov_scale=0.15)
    pit = loo_pit(dt, random_seed=4, max_draws=None)
    for f in FEATURES:
        values = pit[f].to_numpy()
        assert stats.kstest(values, "uniform").pvalue < 1e-3
        assert np.mean((values < 0.1) | (values > 0.9)) > 0.35  # U-shaped


def test_plot_ppc_and_loo_pit_render(tmp_path):
    dt = make_tree()
    pc = plot_ppc(dt, random_seed=0, num_samples=20)
    pc.savefig(tmp_path / "ppc.png")
    assert_png(tmp_path / "ppc.png")
    pc2 = plot_loo_pit(dt)
    pc2.savefig(tmp_path / "loo.png")
    assert_png(tmp_path / "loo.png")


def test_check_fit_one_call(tmp_path):
    dt = make_tree()
    out = check_fit(dt, random_seed=0, save_dir=tmp_path / "figs")
    assert set(out) == {"ppc", "loo_pit", "loo_pit_values"}
    assert "posterior_predictive" in dt.children
    assert_png(tmp_path / "figs" / "ppc.png")
    assert_png(tmp_path / "figs" / "loo_pit.png")
    assert set(out["loo_pit_values"].data_vars) == set(FEATURES)


@pytest.mark.parametrize("uncertainty", ["alpha", "size"])
def test_plot_clusters_renders(tmp_path, uncertainty):
    dt = make_tree()
    fig = plot_clusters(dt, uncertainty=uncertainty, n_ellipse_draws=10)
    ax = fig.axes[0]
    # 10 draws x 2 components faint ellipses + 2 posterior-mean ellipses
    assert len(ax.patches) == 22
    assert ax.get_xlabel() == "height" and ax.get_ylabel() == "width"
    fig.savefig(tmp_path / "clusters.png")
    assert_png(tmp_path / "clusters.png")


def test_plot_clusters_opacity_tracks_certainty():
    dt = make_tree()
    # points along the segment between the two centres: certain at the ends, not between
    t = np.linspace(0.0, 1.0, 41)[:, None]
    X = (1 - t) * CENTRES[0] + t * CENTRES[1]
    fig = plot_clusters(dt, X, n_ellipse_draws=0)
    alpha = fig.axes[0].collections[0].get_facecolors()[:, 3]
    certainty = predict_proba(dt, X).max(axis=1)
    assert certainty.min() < 0.6 and certainty[0] > 0.99 and certainty[-1] > 0.99
    np.testing.assert_allclose(alpha, 0.1 + 0.9 * (certainty - 0.5) / 0.5)
    assert alpha.min() < 0.3 and alpha[0] > 0.95 and alpha[-1] > 0.95


def test_plot_clusters_feature_pair_by_name_and_errors(tmp_path):
    dt = make_tree()
    fig = plot_clusters(dt, features=("width", "height"), n_ellipse_draws=2)
    assert fig.axes[0].get_xlabel() == "width"
    with pytest.raises(ConfigError, match="unknown feature"):
        plot_clusters(dt, features=("height", "depth"))
    with pytest.raises(ConfigError, match="different"):
        plot_clusters(dt, features=(0, 0))
    with pytest.raises(ConfigError, match="uncertainty"):
        plot_clusters(dt, uncertainty="colour")
    with pytest.raises(DataError, match="features"):
        plot_clusters(dt, np.zeros((3, 3)))


@pytest.mark.slow
def test_check_fit_on_a_real_fit(tmp_path):
    from bayesgmm.estimator.estimator import BayesianGMM

    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal(0, 1, (80, 2)), rng.normal(5, 1, (80, 2))])
    gmm = BayesianGMM(
        2, sampler={"draws": 300, "tune": 300, "chains": 2, "random_seed": 2, "progressbar": False}
    ).fit(X)
    out = check_fit(gmm.idata_, random_seed=0, max_draws=200, save_dir=tmp_path)
    assert_png(tmp_path / "ppc.png")
    for f in gmm.feature_names_in_:
        assert stats.kstest(out["loo_pit_values"][f].to_numpy(), "uniform").pvalue > 1e-3
    fig = plot_clusters(gmm.idata_)
    fig.savefig(tmp_path / "clusters.png")
    assert_png(tmp_path / "clusters.png")
