"""Choosing K with Bayesian fits (bayesgmm.workflows): the PSIS-LOO sweep, sparse mixtures
and the selection plot."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import bayesgmm.estimator.estimator
from bayesgmm.exceptions import ConfigError, DataError
from bayesgmm.workflows.selection import loo_compare, plot_selection
from bayesgmm.workflows.sparse import sparse_mixture

FAST_SAMPLER = {"draws": 300, "tune": 300, "chains": 2, "nuts_sampler": "numpyro"}


def three_clusters(seed: int = 0, n_per: int = 70) -> np.ndarray:
    """Three well-separated unit-variance clusters in 2-D (6 sds apart)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [3.0, 5.5]])
    return np.concatenate([rng.normal(c, 1.0, size=(n_per, 2)) for c in centers])


def test_sparse_mixture_bad_input():
    X = three_clusters()
    with pytest.raises(ConfigError, match="concentration"):
        sparse_mixture(X, 8, concentration=0.0)
    with pytest.raises(ConfigError, match="concentration"):
        sparse_mixture(X, 8, concentration="small")
    with pytest.raises(ConfigError, match="concentration"):
        sparse_mixture(X, 8, priors={"weights": {"a": 0.1}})


# --------------------------------------------------------------------------- #
# LOO sweep: plumbing with a stand-in estimator (fast), then real fits (slow)
# --------------------------------------------------------------------------- #


class _FakeGMM:
    """Stands in for BayesianGMM: a normal-location posterior per K, seeded, no NUTS.

    The elpd is highest at K=3 and at K=5; K=5's chains sit in different modes, so its
    diagnostics fail and it must not be ranked.
    """

    def __init__(
        self, n_components, covariance_type, priors, sampler, em, missing="error", noise=False
    ):
        self.K, self.seed, self.noise = n_components, sampler["random_seed"], noise
        self.em_ = None

    def fit(self, X, feature_names=None, noise_init=None):
        self.noise_init = noise_init
        rng = np.random.default_rng(self.seed)
        x = X[:, 0]
        n_chain, n_draw = 2, 250
        mu = x.mean() + rng.normal(0, x.std() / np.sqrt(len(x)), size=(n_chain, n_draw))
        if self.K == 5:
            mu += np.array([[-0.3], [0.3]])  # chains disagree
        ll = stats.norm.logpdf(x[None, None, :], mu[..., None], x.std())
        ll += 0.5 if self.K == 5 else -0.05 * abs(self.K - 3)
        self.idata_ = xr.DataTree.from_dict(
            {
                "posterior": xr.Dataset({"mu": (("chain", "draw"), mu)}),
                "sample_stats": xr.Dataset(
                    {"diverging": (("chain", "draw"), np.zeros((n_chain, n_draw), bool))}
                ),
                "log_likelihood": xr.Dataset({"x": (("chain", "draw", "obs"), ll)}),
            }
        )
        return self


def test_loo_compare_ranks_only_fits_that_pass(monkeypatch, capsys):
    monkeypatch.setattr(bayesgmm.estimator.estimator, "BayesianGMM", _FakeGMM)
    X = three_clusters(seed=8)
    res = loo_compare(X, [1, 2, 3, 4, 5], random_seed=3)
    t = res.table
    assert list(t.index) == [1, 2, 3, 4, 5]
    assert t.loc[5, "diagnostics"] == "fail" and t.loc[5, "diagnostics_reason"]
    assert not t.loc[5, "ranked"] and np.isnan(t.loc[5, "rank"])
    assert t.loc[5, "elpd"] > t.loc[3, "elpd"]  # best elpd, yet not ranked
    assert res.best == 3
    assert t.loc[3, "rank"] == 0 and t.loc[3, "elpd_diff"] == 0
    assert (t.loc[[1, 2, 4], "elpd_diff"] < 0).all()
    assert set(res.fits) == set(res.loo) == {1, 2, 3, 4, 5}
    assert capsys.readouterr().out.count("loo_compare [") == 5
    # same seed -> same table; another seed -> other draws
    again = loo_compare(X, [1, 2, 3, 4, 5], random_seed=3, progress=False)
    pd.testing.assert_frame_equal(t.drop(columns="seconds"), again.table.drop(columns="seconds"))
    other = loo_compare(X, [1, 2, 3, 4, 5], random_seed=4, progress=False)
    assert not np.allclose(other.table["elpd"], t["elpd"])
    assert capsys.readouterr().out == ""


def test_loo_compare_gives_every_fit_the_background(monkeypatch):
    monkeypatch.setattr(bayesgmm.estimator.estimator, "BayesianGMM", _FakeGMM)
    X = three_clusters(seed=8)
    res = loo_compare(X, [1, 2, 3], random_seed=3, noise=True, progress=False)
    assert [fit.noise for fit in res.fits.values()] == [True, True, True]
    assert res.table.attrs["noise"] is True
    plain = loo_compare(X, [2], random_seed=3, progress=False)
    assert plain.fits[2].noise is False and plain.table.attrs["noise"] is False
    assert plain.fits[2].noise_init is None
    guess = np.zeros(len(X), dtype=bool)
    guess[:5] = True
    guessed = loo_compare(X, [1, 2], random_seed=3, noise=True, noise_init=guess.astype(int),
                          progress=False)  # fmt: skip
    assert all((fit.noise_init == guess).all() for fit in guessed.fits.values())
    with pytest.raises(ConfigError, match="needs one"):  # refused before any fit
        loo_compare(X, [1, 2], noise_init=guess, progress=False)


def test_loo_compare_bad_input():
    X = three_clusters()
    with pytest.raises(ConfigError, match="covariance_type"):
        loo_compare(X, [1, 2], covariance_type="ful")
    with pytest.raises(DataError, match="only 3 points"):
        loo_compare(X[:3], [1, 4])
    with pytest.raises(ConfigError, match="sampler"):
        loo_compare(X, [1], sampler=[("draws", 10)])
    with pytest.raises(ConfigError, match="noise must be"):
        loo_compare(X, [1], noise="yes")
    with pytest.raises(ConfigError, match="must be positive"):
        loo_compare(X, [1], noise=-2.0)


def test_loo_compares_families_and_prefers_the_one_that_describes_the_data(capsys):
    """Elongated clusters with their own orientations: VEV describes them, EII (round,
    equal volumes) does not; the table is indexed by family and K, the plot has a line
    per family."""
    rng = np.random.default_rng(5)
    parts = []
    for k, angle in enumerate([0.3, 1.2, 2.4]):
        Q = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        cov = Q * np.array([3.0, 0.4]) ** 2 @ Q.T
        parts.append(rng.multivariate_normal([12.0 * k, 4.0 * (k % 2)], cov, size=80))
    X = np.concatenate(parts)
    res = loo_compare(X, [3], covariance_type=["VEV", "EII"], sampler=FAST_SAMPLER,
                      random_seed=2)  # fmt: skip
    t = res.table
    assert t.index.names == ["covariance_type", "K"]
    assert list(t.index) == [("VEV", 3), ("EII", 3)]
    assert set(res.fits) == set(res.loo) == {("VEV", 3), ("EII", 3)}
    assert res.fits[("VEV", 3)].covariance_type == "VEV"
    assert res.best == ("VEV", 3)
    assert t.loc[("EII", 3), "elpd_diff"] < -4 * t.loc[("EII", 3), "dse"]
    assert "loo_compare [2/2] EII, K=3" in capsys.readouterr().out
    fig = plot_selection(res)
    labels = [text.get_text() for text in fig.axes[0].get_legend().get_texts()]
    assert labels[:2] == ["VEV", "EII"]
    with pytest.raises(ConfigError, match="same family twice"):
        loo_compare(X, [3], covariance_type=["VVV", "full"])


@pytest.mark.slow
def test_loo_prefers_three_clusters():
    X = three_clusters(seed=0)
    res = loo_compare(X, [1, 2, 3, 4], sampler=FAST_SAMPLER, random_seed=1, progress=False)
    elpd = res.table["elpd"]
    assert elpd.notna().all()  # K = 1 works too
    assert elpd[3] > elpd[2] + 2 * res.table.loc[2, "dse"]
    assert elpd[3] > elpd[4]
    assert res.best == 3
    assert res.table.loc[3, "diagnostics"] in ("ok", "warn")


@pytest.mark.slow
def test_sparse_mixture_finds_three_clusters():
    res = sparse_mixture(three_clusters(seed=0), 8, sampler=FAST_SAMPLER, random_seed=1)
    assert res.mode == 3
    assert res.distribution.sum() == pytest.approx(1.0)
    assert res.distribution[3] > 0.5
    assert res.counts.shape == (2, 300)
    assert res.estimator.idata_["posterior"].sizes["component"] == 8


# --------------------------------------------------------------------------- #
# Plot
# --------------------------------------------------------------------------- #


def test_plot_selection_renders_png():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loo_table = pd.DataFrame(
        {
            "elpd": [-900.0, -850.0, -830.0, -835.0],
            "se": [10.0, 12.0, 13.0, 13.0],
            "ranked": [True, True, True, False],
        },
        index=pd.Index([1, 2, 3, 4], name="K"),
    )
    bic = pd.DataFrame(
        {
            "covariance_type": ["full"] * 3 + ["diag"] * 3,
            "K": [1, 2, 3] * 2,
            "bic": [-10.0, -5.0, -7.0, -12.0, np.nan, -9.0],
            "status": ["ok", "ok", "ok", "ok", "degenerate", "ok"],
        }
    )
    fig = plot_selection(loo_table, bic)
    assert len(fig.axes) == 2
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="needs"):
        plot_selection()


@pytest.mark.parametrize("convention", ["mclust", "sklearn"])
def test_plot_selection_rings_the_best_bic_in_the_tables_convention(convention):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # mclust's sign: full K=2 (-5) is the best; in scikit-learn's the values flip sign
    # and the best is still full K=2 (5, the lowest), not diag K=1 (12, the highest).
    sign = 1.0 if convention == "mclust" else -1.0
    bic = pd.DataFrame(
        {
            "covariance_type": ["full"] * 3 + ["diag"] * 3,
            "K": [1, 2, 3] * 2,
            "bic": sign * np.array([-10.0, -5.0, -7.0, -12.0, np.nan, -9.0]),
            "status": ["ok", "ok", "ok", "ok", "degenerate", "ok"],
        }
    )
    bic.attrs["convention"] = convention
    fig = plot_selection(bic=bic)
    ax = fig.axes[0]
    (ring,) = [ln for ln in ax.get_lines() if ln.get_label() == "best"]
    assert ring.get_xdata().tolist() == [2] and ring.get_ydata().tolist() == [sign * -5.0]
    better = "higher" if convention == "mclust" else "lower"
    assert f"{better} is better" in ax.get_ylabel()
    # degenerate fits sit at the worst end of the panel, away from the best
    (bad,) = [ln for ln in ax.get_lines() if ln.get_label() == "degenerate / failed"]
    worst = np.nanmin(bic["bic"]) if convention == "mclust" else np.nanmax(bic["bic"])
    assert bad.get_ydata().tolist() == [worst]
    plt.close(fig)


def test_loo_compare_with_measurement_errors_scores_rows_with_their_own_errors():
    """Two clusters measured with known errors: every fit deconvolves them, and the
    pointwise log-likelihood behind PSIS-LOO is each row's, with its own errors."""
    rng = np.random.default_rng(4)
    true = np.concatenate(
        [rng.normal([0.0, 0.0], 0.6, (60, 2)), rng.normal([5.0, 3.0], 0.6, (60, 2))]
    )
    sd = rng.uniform(0.2, 0.8, size=true.shape)
    X = true + rng.normal(size=true.shape) * sd
    res = loo_compare(X, [1, 2], sampler=FAST_SAMPLER, random_seed=1, noise_cov=sd**2,
                      progress=False)  # fmt: skip
    assert res.best == 2
    fit = res.fits[2]
    np.testing.assert_array_equal(fit.idata_["constant_data"]["noise_cov"].to_numpy()[:, 0, 0],
                                  sd[:, 0] ** 2)  # fmt: skip
    loglik = fit.idata_["log_likelihood"]["x"].mean(("chain", "draw")).to_numpy()
    own = fit.score_samples(X, noise_cov=sd**2)
    assert np.corrcoef(loglik, own)[0, 1] > 0.99  # the same rows' densities, with errors


def two_clusters_and_scatter(seed: int = 5) -> np.ndarray:
    """Two unit-variance clusters (60 points each) and 12 points uniform on a wide box."""
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal([0.0, 0.0], 1.0, (60, 2)), rng.normal([6.0, 6.0], 1.0, (60, 2)),
                      rng.uniform(-12.0, 18.0, (12, 2))])  # fmt: skip


def far_from(X: np.ndarray, centers, sds: float) -> np.ndarray:
    """Rows more than ``sds`` unit sds from every center."""
    dist = np.linalg.norm(X[:, None, :] - np.asarray(centers)[None], axis=-1)
    return (dist > sds).all(axis=1)


@pytest.mark.slow
def test_loo_compare_with_a_background_is_not_led_by_scattered_points():
    """Without a background, 12 scattered points need a third Gaussian and PSIS-LOO
    prefers K = 3 by far; with the same background in every fit, K = 2 is preferred and a
    third Gaussian is no better. A far point's pointwise log-likelihood is the
    background's, log(noise_weight / V)."""
    X = two_clusters_and_scatter()
    plain = loo_compare(X, [2, 3], sampler=FAST_SAMPLER, random_seed=1, progress=False)
    t = plain.table
    assert t.attrs["noise"] is False
    assert t.loc[3, "elpd"] > t.loc[2, "elpd"] + 4 * t.loc[2, "dse"]
    res = loo_compare(X, [1, 2, 3], sampler=FAST_SAMPLER, random_seed=1, noise=True,
                      progress=False)  # fmt: skip
    t = res.table
    assert t.attrs["noise"] is True
    assert res.best == 2 or t.loc[3, "elpd"] - t.loc[2, "elpd"] < 2 * t.loc[3, "dse"]
    assert t.loc[2, "elpd"] > t.loc[1, "elpd"] + 4 * t.loc[1, "dse"]
    for fit in res.fits.values():
        assert fit.noise is True and "noise_weight" in fit.posterior
    fit = res.fits[2]
    far = far_from(X, [[0.0, 0.0], [6.0, 6.0]], 7.0)
    assert far.sum() >= 4
    volume = np.prod(X.max(axis=0) - X.min(axis=0))
    loglik = fit.idata_["log_likelihood"]["x"].to_numpy()[..., far]
    background = np.log(fit.posterior["noise_weight"].to_numpy()) - np.log(volume)
    np.testing.assert_allclose(loglik.mean((0, 1)), background.mean(), atol=0.02)


def test_too_few_draws_for_psis_loo_say_how_many_to_take():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0.0, 1.0, (30, 2)), rng.normal(6.0, 1.0, (30, 2))])
    with pytest.raises(ConfigError, match=r"of 20 posterior draws .* at least 100"):
        loo_compare(X, [2], sampler={"draws": 10, "tune": 50, "chains": 2}, random_seed=0)
