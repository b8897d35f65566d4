"""Tests for bayesgmm.selection: BIC/ICL table, PSIS-LOO sweep, sparse mixtures, plot."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

import bayesgmm.estimator
from bayesgmm.datasets import load_faithful
from bayesgmm.em import fit_em
from bayesgmm.exceptions import ConfigError, DataError, DegenerateFitError
from bayesgmm.selection import (
    _fallback_diagnose,
    best_bic,
    bic_table,
    count_nonempty,
    degeneracy_reason,
    loo_compare,
    plot_selection,
    sparse_mixture,
)

FAST_SAMPLER = {"draws": 300, "tune": 300, "chains": 2, "nuts_sampler": "numpyro"}


def three_clusters(seed: int = 0, n_per: int = 70) -> np.ndarray:
    """Three well-separated unit-variance clusters in 2-D (6 sds apart)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [3.0, 5.5]])
    return np.concatenate([rng.normal(c, 1.0, size=(n_per, 2)) for c in centers])


# --------------------------------------------------------------------------- #
# BIC / ICL
# --------------------------------------------------------------------------- #


def test_bic_prefers_three_on_three_clusters():
    table = bic_table(three_clusters(), range(1, 6), ["full"], random_seed=0)
    bic = table.set_index("K")["bic"]
    assert (table["status"] == "ok").all()
    assert bic[3] > bic[2] and bic[3] > bic[4]
    assert int(best_bic(table)["K"]) == 3


@pytest.fixture(scope="module")
def faithful_table() -> pd.DataFrame:
    return bic_table(load_faithful(), range(1, 6), random_seed=0)


def test_faithful_bic_matches_mclust(faithful_table):
    best = best_bic(faithful_table)
    # mclust 6: Mclust(faithful) -> "EEE,3", BIC -2314.316, logL -1126.326 (MLE, no prior)
    assert (best["covariance_type"], int(best["K"])) == ("tied", 3)
    assert best["bic"] == pytest.approx(-2314.316, abs=0.1)
    assert best["log_likelihood"] == pytest.approx(-1126.326, abs=0.05)
    assert best["n_parameters"] == 11
    assert len(faithful_table) == 20
    assert set(faithful_table["status"]) <= {"ok", "degenerate", "failed"}


def test_bic_sign_convention_against_sklearn():
    from sklearn.mixture import GaussianMixture

    X = load_faithful().to_numpy()
    row = bic_table(X, [2], ["full"]).iloc[0]
    gm = GaussianMixture(2, covariance_type="full", n_init=10, reg_covar=0.0, random_state=0)
    gm.fit(X)
    # scikit-learn's BIC is the negative of mclust's (lower is better there)
    assert gm.bic(X) == pytest.approx(-row["bic"], abs=0.05)


def test_bic_table_is_reproducible_and_per_fit_seeded(capsys):
    X = three_clusters(seed=3)
    a = bic_table(X, [2, 3], ["full", "diag"], random_seed=7, progress=True)
    b = bic_table(X, [2, 3], ["full", "diag"], random_seed=7)
    pd.testing.assert_frame_equal(a, b)
    # a fit's seed depends only on (master seed, family, K), not on the rest of the sweep
    c = bic_table(X, [3], ["diag"], random_seed=7)
    assert (
        c.iloc[0]["log_likelihood"]
        == a.set_index(["covariance_type", "K"]).loc[("diag", 3), "log_likelihood"]
    )
    out = capsys.readouterr().out
    assert out.count("bic_table:") == 4 and "K=3" in out


def test_degenerate_fits_are_reported_not_ranked():
    rng = np.random.default_rng(0)
    # 100 points in a blob + 30 on the line x2 = 4 (with 1e-4 jitter): the likelihood is
    # unbounded as a component's x2-variance shrinks onto the line
    line = np.column_stack([rng.normal(3, 1, 30), 4.0 + 1e-4 * rng.normal(size=30)])
    X = np.vstack([rng.normal(size=(100, 2)), line])
    table = bic_table(X, [1, 2], ["full"], n_init=5).set_index("K")
    assert table.loc[1, "status"] == "ok"
    assert table.loc[2, "status"] == "degenerate"
    assert "collapsed" in table.loc[2, "reason"]
    # its likelihood is far higher, but its BIC is not reported and it is not picked
    assert table.loc[2, "log_likelihood"] > table.loc[1, "log_likelihood"] + 50
    assert np.isnan(table.loc[2, "bic"]) and np.isnan(table.loc[2, "icl"])
    assert int(best_bic(table.reset_index())["K"]) == 1


def test_em_failures_are_degenerate_rows():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(100, 2)), np.column_stack([rng.normal(3, 1, 30), [4.0] * 30])])
    table = bic_table(X, [1, 3], ["diag"], n_init=3).set_index("K")
    assert table.loc[3, "status"] == "degenerate"
    assert "EM failed" in table.loc[3, "reason"]
    all_bad = table.assign(status="degenerate").reset_index()
    with pytest.raises(DegenerateFitError, match="every one is degenerate"):
        best_bic(all_bad)


def test_degeneracy_rules_one_by_one():
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=300), np.round(rng.normal(0, 3, size=300))])
    fit = fit_em(X, 2, covariance_type="diag", prior=None, random_seed=0)
    assert degeneracy_reason(fit, X) is None
    # rule 1: a component with fewer points than its covariance needs
    tiny = replace(fit, weights=np.array([0.995, 0.005]))
    assert "fewer than the 2" in degeneracy_reason(tiny, X)
    # rule 2: a nearly singular covariance (standardised eigenvalue 1e-8)
    cov = np.array(fit.covariances)
    cov[1, 0] = 1e-8 * X[:, 0].var()
    assert "collapsed" in degeneracy_reason(replace(fit, covariances=cov), X)
    # rule 3: narrower than the integer grid of feature 1 (sd 0.2 < 1/sqrt(12) = 0.289)
    cov = np.array(fit.covariances)
    cov[0, 1] = 0.2**2
    reason = degeneracy_reason(replace(fit, covariances=cov), X)
    assert "resolution" in reason and "collapsed" not in reason
    cov[0, 1] = 0.35**2  # wider than the grid: fine
    assert degeneracy_reason(replace(fit, covariances=cov), X) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_range": []}, "non-empty"),
        ({"k_range": [0, 1]}, "invalid"),
        ({"k_range": [2, 2]}, "repeated"),
        ({"k_range": 3}, "iterable"),
        ({"covariance_types": ["ful"]}, "subset"),
        ({"prior": "mclust"}, "prior must be"),
        ({"random_seed": -1}, "random_seed"),
    ],
)
def test_bic_table_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        bic_table(three_clusters(), **kwargs)
    with pytest.raises(DataError):
        bic_table(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ConfigError, match="criterion"):
        best_bic(pd.DataFrame(), criterion="aic")


# --------------------------------------------------------------------------- #
# Number of non-empty components
# --------------------------------------------------------------------------- #


def handmade_posterior(seed: int, n_chain=2, n_draw=30, K=5, D=2) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.full(K, 0.3), size=(n_chain, n_draw))
    mu = rng.normal(0, 4, size=(n_chain, n_draw, K, D))
    A = rng.normal(size=(n_chain, n_draw, K, D, D))
    cov = A @ np.swapaxes(A, -1, -2) + 0.5 * np.eye(D)
    return xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        }
    )


def test_count_nonempty_is_label_invariant():
    X = three_clusters(seed=4)
    post = handmade_posterior(5)
    counts = count_nonempty(X, post)
    assert counts.dims == ("chain", "draw") and counts.shape == (2, 30)
    assert len(np.unique(counts)) > 1  # the draws really differ
    rng = np.random.default_rng(6)
    perm = np.argsort(rng.random(post["weights"].shape), axis=-1)  # one permutation per draw
    permuted = post.copy()
    for name in ("weights", "means", "covariance"):
        v = post[name].values
        idx = perm.reshape(perm.shape + (1,) * (v.ndim - 3))
        permuted[name] = (post[name].dims, np.take_along_axis(v, idx, axis=2))
    assert not np.allclose(permuted["weights"], post["weights"])
    np.testing.assert_array_equal(count_nonempty(X, permuted), counts)


def test_count_nonempty_exact_values():
    X = three_clusters(seed=0)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [3.0, 5.5]])
    K = 6
    means = np.vstack([centers, [[100.0, 100.0], [3.0, 2.0], [0.0, 0.0]]])
    cov = np.broadcast_to(np.eye(2), (K, 2, 2))
    # draw 0: three real components, one far away, one with zero weight, one duplicate of
    # the first with tiny weight -> 3 non-empty; draw 1: a single broad component -> 1
    w0 = np.array([0.33, 0.33, 0.33, 0.01, 0.0, 1e-12])
    w1 = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), np.stack([w0, w1])[None]),
            "means": (("chain", "draw", "component", "feature"), np.stack([means] * 2)[None]),
            "covariance": (
                ("chain", "draw", "component", "feature", "feature_bis"),
                np.stack([cov, cov * 50])[None],
            ),
        }
    )
    assert count_nonempty(X, post).values.tolist() == [[3, 1]]


def test_count_nonempty_bad_input():
    post = handmade_posterior(0)
    with pytest.raises(DataError, match="lacks"):
        count_nonempty(three_clusters(), post.drop_vars("covariance"))
    with pytest.raises(DataError, match="shape"):
        count_nonempty(np.zeros((4, 3)), post)
    with pytest.raises(DataError, match="DataTree"):
        count_nonempty(three_clusters(), {"weights": 1})


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

    def __init__(self, n_components, covariance_type, priors, sampler, em):
        self.K, self.seed = n_components, sampler["random_seed"]
        self.em_ = None

    def fit(self, X, feature_names=None):
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
    monkeypatch.setattr(bayesgmm.estimator, "BayesianGMM", _FakeGMM)
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


def test_fallback_diagnostics_are_label_invariant():
    rng = np.random.default_rng(0)
    ll = rng.normal(size=(2, 400, 30))
    tree = xr.DataTree.from_dict(
        {
            "posterior": xr.Dataset({"w": (("chain", "draw"), rng.random((2, 400)))}),
            "sample_stats": xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 400)))}),
            "log_likelihood": xr.Dataset({"x": (("chain", "draw", "obs"), ll)}),
        }
    )
    verdict, reason = _fallback_diagnose(tree)
    assert verdict == "ok", reason
    stuck = tree.copy()
    stuck["log_likelihood"] = xr.Dataset(
        {"x": (("chain", "draw", "obs"), ll + np.array([0.0, 1.0])[:, None, None])}
    )
    assert _fallback_diagnose(stuck)[0] == "fail"
    div = tree.copy()
    flags = np.zeros((2, 400))
    flags[0, :20] = 1
    div["sample_stats"] = xr.Dataset({"diverging": (("chain", "draw"), flags)})
    assert _fallback_diagnose(div) == ("fail", "20 divergences")


def test_loo_compare_bad_input():
    X = three_clusters()
    with pytest.raises(ConfigError, match="covariance_type"):
        loo_compare(X, [1, 2], covariance_type="ful")
    with pytest.raises(DataError, match="only 3 points"):
        loo_compare(X[:3], [1, 4])
    with pytest.raises(ConfigError, match="sampler"):
        loo_compare(X, [1], sampler=[("draws", 10)])


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
