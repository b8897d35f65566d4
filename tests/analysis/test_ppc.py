"""Posterior predictive draws and PPC plots (bayesgmm.analysis.ppc).

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
from matplotlib.collections import PolyCollection
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


@pytest.mark.parametrize(
    ("kind", "ylabel"), [("kde", "density"), ("hist", "count"), ("ecdf", "ECDF")]
)
def test_plot_ppc_panels_labels_and_legend(tmp_path, kind, ylabel):
    dt = posterior_predictive(make_tree(), random_seed=0, max_draws=40)
    fig = plot_ppc(dt, random_seed=0, num_samples=20, kind=kind)
    assert [ax.get_xlabel() for ax in fig.axes] == FEATURES
    assert {ax.get_ylabel() for ax in fig.axes} == {ylabel}
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "observed data",
        "replicated datasets (20 posterior draws)",
    ]
    # 20 replicated curves and the observed one per panel
    for ax in fig.axes:
        drawn = ax.patches if kind == "hist" else ax.lines
        assert len(drawn) == 21
    fig.savefig(tmp_path / "ppc.png")
    assert_png(tmp_path / "ppc.png")
    with pytest.raises(ConfigError, match="kind"):
        plot_ppc(dt, kind="violin")


def test_plot_loo_pit_has_a_band_per_feature(tmp_path):
    dt = make_tree()
    fig = plot_loo_pit(dt, prob=0.99, n_simulations=200, random_seed=0)
    assert [ax.get_title() for ax in fig.axes] == FEATURES
    for ax in fig.axes:
        (band,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
        lo, hi = band.get_paths()[0].vertices[:, 1].min(), band.get_paths()[0].vertices[:, 1].max()
        assert lo < 0 < hi  # around the zero line of the ECDF difference
        assert ax.get_xlabel().startswith("LOO-PIT") and ax.get_ylabel()
        assert not ax.texts  # a well-specified model stays inside the 99% band (seeded)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "99% simultaneous band" in labels
    fig.savefig(tmp_path / "loo.png")
    assert_png(tmp_path / "loo.png")


def test_plot_loo_pit_flags_a_misspecified_model():
    # posterior covariances far too small: the PIT ECDF leaves the band
    dt = make_tree(seed=3, n_obs=300, cov_scale=0.15)
    fig = plot_loo_pit(dt, n_simulations=200, random_seed=0)
    for ax in fig.axes:
        assert any("leaves the band" in t.get_text() for t in ax.texts)


def test_check_fit_one_call(tmp_path):
    dt = make_tree()
    out = check_fit(dt, random_seed=0, save_dir=tmp_path / "figs")
    assert set(out) == {"ppc", "loo_pit", "loo_pit_values"}
    assert "posterior_predictive" in dt.children
    assert_png(tmp_path / "figs" / "ppc.png")
    assert_png(tmp_path / "figs" / "loo_pit.png")
    assert set(out["loo_pit_values"].data_vars) == set(FEATURES)


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
