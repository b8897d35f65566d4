"""Predictions from posterior draws (bayesgmm.core.predict).

Synthetic posteriors (hand-made draws of weights, means and covariances) let every
number be checked against a direct per-draw computation with scipy.stats; one small
real fit checks the estimator wiring.
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy import stats
from scipy.special import logsumexp

from bayesgmm.core import engine
from bayesgmm.core.draws import Draws
from bayesgmm.core.predict import (
    assignments_table,
    co_clustering,
    count_nonempty,
    flag_anomalies,
    membership_draws,
    predict,
    predict_proba,
    replicate,
    sample,
    score_samples,
)
from bayesgmm.exceptions import ConfigError, DataError, DegenerateFitError, NotFittedError


def make_posterior(
    seed: int,
    n_chain: int = 2,
    n_draw: int = 15,
    K: int = 3,
    D: int = 3,
    family: str = "full",
    centres: np.ndarray | None = None,
    spread: float = 0.3,
) -> xr.Dataset:
    """Random posterior draws: means near ``centres``, random SPD covariances."""
    rng = np.random.default_rng(seed)
    shape = (n_chain, n_draw)
    if centres is None:
        centres = rng.normal(scale=4.0, size=(K, D))
    K, D = centres.shape
    w = rng.dirichlet(np.full(K, 20.0), size=shape)
    mu = centres + spread * rng.normal(size=(*shape, K, D))
    if family == "full":
        a = rng.normal(size=(*shape, K, D, D)) / np.sqrt(D)
        cov = a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(D)
    elif family == "tied":
        a = rng.normal(size=(*shape, 1, D, D)) / np.sqrt(D)
        cov = np.broadcast_to(a @ np.swapaxes(a, -1, -2) + 0.5 * np.eye(D), (*shape, K, D, D))
    elif family == "diag":
        cov = np.eye(D) * rng.uniform(0.3, 2.0, size=(*shape, K, D))[..., None]
    else:
        cov = np.eye(D) * rng.uniform(0.3, 2.0, size=(*shape, K, 1, 1))
    names = [f"f{d}" for d in range(D)]
    return xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov.copy()),
        },
        coords={
            "chain": np.arange(n_chain),
            "draw": np.arange(n_draw),
            "component": np.arange(K),
            "feature": names,
            "feature_bis": names,
        },
    )


def scipy_log_terms(post: xr.Dataset, X: np.ndarray) -> np.ndarray:
    """``log w_k + log N(x | mu_k, Sigma_k)`` per draw, shape (chain, draw, obs, K)."""
    w, mu, cov = (post[v].to_numpy() for v in ("weights", "means", "covariance"))
    C, R, K, _ = mu.shape
    out = np.empty((C, R, X.shape[0], K))
    for c in range(C):
        for r in range(R):
            for k in range(K):
                mvn = stats.multivariate_normal(mu[c, r, k], cov[c, r, k])
                out[c, r, :, k] = np.log(w[c, r, k]) + mvn.logpdf(X)
    return out


@pytest.fixture(scope="module")
def post() -> xr.Dataset:
    return make_posterior(seed=11)


@pytest.fixture(scope="module")
def X_new(post) -> np.ndarray:
    rng = np.random.default_rng(12)
    centres = post["means"].mean(("chain", "draw")).to_numpy()
    return centres[rng.integers(3, size=60)] + rng.normal(scale=1.5, size=(60, 3))


@pytest.fixture(scope="module")
def reference(post, X_new) -> dict[str, np.ndarray]:
    terms = scipy_log_terms(post, X_new)
    log_dens = logsumexp(terms, axis=-1)
    gamma = np.exp(terms - log_dens[..., None])
    return {"gamma": gamma, "log_dens": log_dens}


# --------------------------------------------------------------------------- #
# memberships
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("family", ["full", "tied", "diag", "spherical"])
def test_membership_draws_match_scipy_per_draw(family):
    p = make_posterior(seed=3, family=family, n_draw=6)
    X = np.random.default_rng(4).normal(scale=4.0, size=(40, 3))
    g = membership_draws(p, X)
    assert g.dims == ("chain", "draw", "obs", "component")
    assert g.shape == (2, 6, 40, 3)
    terms = scipy_log_terms(p, X)
    expected = np.exp(terms - logsumexp(terms, axis=-1, keepdims=True))
    np.testing.assert_allclose(g.to_numpy(), expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(g.sum("component").to_numpy(), 1.0, rtol=0, atol=1e-12)


def test_predict_proba_is_mean_of_draws_and_intervals_match_arviz(post, X_new, reference):
    gamma = reference["gamma"]
    mean, lo, hi = predict_proba(post, X_new, return_intervals=True, prob=0.8, kind="hdi")
    np.testing.assert_allclose(mean, gamma.mean(axis=(0, 1)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, atol=1e-12)
    da = xr.DataArray(gamma, dims=("chain", "draw", "obs", "component"))
    hdi = az.hdi(da, prob=0.8)
    np.testing.assert_allclose(lo, hdi.sel(ci_bound="lower").to_numpy(), atol=1e-10)
    np.testing.assert_allclose(hi, hdi.sel(ci_bound="upper").to_numpy(), atol=1e-10)
    _, elo, ehi = predict_proba(post, X_new, return_intervals=True, prob=0.8, kind="eti")
    flat = gamma.reshape(-1, *gamma.shape[2:])
    np.testing.assert_allclose(elo, np.quantile(flat, 0.1, axis=0), atol=1e-12)
    np.testing.assert_allclose(ehi, np.quantile(flat, 0.9, axis=0), atol=1e-12)
    assert np.all(elo <= ehi) and np.all(lo <= hi)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_streaming_chunks_give_identical_results(post, X_new, chunk_size):
    base = predict_proba(post, X_new, return_intervals=True)
    chunked = predict_proba(post, X_new, return_intervals=True, chunk_size=chunk_size)
    for a, b in zip(base, chunked, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-13)
    np.testing.assert_allclose(
        score_samples(post, X_new), score_samples(post, X_new, chunk_size=chunk_size), atol=1e-12
    )


def test_many_draws_stream_through_several_blocks(X_new, monkeypatch):
    p = make_posterior(seed=5, n_chain=2, n_draw=40, K=2, D=3)
    direct_g = membership_draws(p, X_new)
    direct_ld = score_samples(p, X_new, return_intervals=True)
    # a tiny work buffer: each point chunk spans many draw blocks (kernels cached)
    monkeypatch.setattr(engine, "_WORK_ELEMS", 6 * 16 * 3)
    stream = engine.Stream(Draws.from_dataset(p), X_new, 16)
    assert len(stream.blocks) == 27 and stream._cache is not None
    np.testing.assert_allclose(
        predict_proba(p, X_new, chunk_size=16), direct_g.mean(("chain", "draw")), atol=1e-12
    )
    for a, b in zip(
        score_samples(p, X_new, return_intervals=True, chunk_size=16), direct_ld, strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_allclose(membership_draws(p, X_new), direct_g, atol=1e-14)
    X = X_new[:10]
    np.testing.assert_allclose(co_clustering(p, X), co_clustering(p, X, max_draws=None))


def test_the_product_in_column_tiles_gives_the_same_densities(X_new, monkeypatch):
    p = make_posterior(seed=6, n_chain=2, n_draw=30, K=3, D=3)
    direct_g = membership_draws(p, X_new)
    direct_ld = score_samples(p, X_new)
    # a work tile of 90 numbers: 180 rows of the product (60 draws x 3 components x 3
    # features) take one column at a time, so every chunk is many tiles
    monkeypatch.setattr(engine, "_CHUNK_ELEMS", 90)
    np.testing.assert_allclose(membership_draws(p, X_new), direct_g, rtol=0, atol=1e-14)
    np.testing.assert_allclose(score_samples(p, X_new), direct_ld, rtol=1e-13)
    draws = Draws.from_dataset(p)
    kernel = engine.Kernel(engine.FAMILIES["full"], draws.means, draws.prec_chol(0, 60),
                           draws.log_weights)  # fmt: skip
    ZT = engine.design(X_new, engine.FAMILIES["full"])
    tiled = np.empty((kernel.M, ZT.shape[1]))
    kernel.fill(ZT, 0, ZT.shape[1], tiled)  # without a work buffer: its own
    monkeypatch.setattr(engine, "_CHUNK_ELEMS", 1 << 30)
    whole = np.empty_like(tiled)
    kernel.fill(ZT, 0, ZT.shape[1], whole)
    np.testing.assert_allclose(tiled, whole, rtol=1e-14)


def test_max_draws_thins_evenly(post, X_new):
    thinned = membership_draws(post, X_new, max_draws=10)
    assert thinned.sizes["chain"] == 2 and thinned.sizes["draw"] == 5
    np.testing.assert_array_equal(thinned["draw"].to_numpy(), np.arange(0, 15, 3))
    full = membership_draws(post, X_new)
    np.testing.assert_allclose(thinned.to_numpy(), full.isel(draw=slice(None, None, 3)))


def two_cluster_posterior(seed: int = 0) -> xr.Dataset:
    centres = np.array([[0.0, 0.0], [6.0, 0.0]])
    p = make_posterior(seed, n_draw=20, centres=centres, spread=0.05, family="spherical")
    p["weights"][:] = 0.5
    p["covariance"][:] = np.eye(2)
    return p


def test_uncertainty_high_between_clusters_low_at_centres():
    p = two_cluster_posterior()
    X = np.array([[0.0, 0.0], [6.0, 0.0], [3.0, 0.0], [3.0, 1.0]])
    table = assignments_table(p, X)
    unc = table["uncertainty"].to_numpy()
    assert unc[0] < 1e-3 and unc[1] < 1e-3
    assert unc[2] > 0.35 and unc[3] > 0.35
    assert table["entropy"].iloc[2] > 0.6 > 0.01 > table["entropy"].iloc[0]
    assert np.all(table["entropy"] <= np.log(2) + 1e-12)
    assert np.all(table["mean_draw_entropy"] <= table["entropy"] + 1e-12)  # concavity
    assert table["cluster"].iloc[0] != table["cluster"].iloc[1]
    np.testing.assert_allclose(table["max_prob"] + table["uncertainty"], 1.0)
    probs = table[["prob_0", "prob_1"]].to_numpy()
    np.testing.assert_allclose(probs, predict_proba(p, X), atol=1e-12)
    np.testing.assert_array_equal(predict(p, X), table["cluster"].to_numpy())
    # midway points have wide intervals; centre points have narrow ones
    width = table["prob_0_hdi94_upper"] - table["prob_0_hdi94_lower"]
    assert width.iloc[2] > 0.05 and width.iloc[0] < 1e-3


def test_far_outlier_gives_finite_probabilities():
    p = two_cluster_posterior()
    X = np.array([[1e4, -1e4], [-500.0, 3.0]])
    proba = predict_proba(p, X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(score_samples(p, X)).all()


def test_co_clustering_matches_direct_computation(post, X_new, reference):
    X = X_new[:25]
    cc = co_clustering(post, X, max_draws=None)
    g = reference["gamma"][:, :, :25].reshape(-1, 25, 3)
    direct = np.einsum("sik,sjk->ij", g, g) / g.shape[0]
    np.fill_diagonal(direct, 1.0)
    np.testing.assert_allclose(cc, direct, atol=1e-12)
    np.testing.assert_allclose(cc, cc.T)
    assert cc.min() >= 0 and cc.max() <= 1 + 1e-12


def test_co_clustering_is_label_invariant():
    p = two_cluster_posterior()
    X = np.array([[0.0, 0.0], [0.3, 0.0], [6.0, 0.0]])
    # swap the labels in half of the draws: memberships change, co-clustering does not
    swapped = p.copy(deep=True)
    for v in ("weights", "means", "covariance"):
        arr = swapped[v].to_numpy().copy()
        arr[:, ::2] = arr[:, ::2, ::-1]
        swapped[v][:] = arr
    np.testing.assert_allclose(co_clustering(p, X), co_clustering(swapped, X), atol=1e-12)
    cc = co_clustering(p, X)
    assert cc[0, 1] > 0.99 and cc[0, 2] < 0.01


def test_co_clustering_refuses_large_n(post):
    X = np.random.default_rng(0).normal(size=(30, 3))
    with pytest.raises(DataError, match="max_points=20"):
        co_clustering(post, X, max_points=20)


# --------------------------------------------------------------------------- #
# densities and anomalies
# --------------------------------------------------------------------------- #


def test_score_samples_matches_scipy_monte_carlo(post, X_new, reference):
    log_dens = reference["log_dens"].reshape(-1, X_new.shape[0])
    expected = logsumexp(log_dens, axis=0) - np.log(log_dens.shape[0])
    ld, lo, hi = score_samples(post, X_new, return_intervals=True, prob=0.9, kind="eti")
    np.testing.assert_allclose(ld, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(lo, np.quantile(log_dens, 0.05, axis=0), atol=1e-10)
    np.testing.assert_allclose(hi, np.quantile(log_dens, 0.95, axis=0), atol=1e-10)
    # log of the mean density lies between the extreme per-draw log densities
    assert np.all(ld <= log_dens.max(axis=0) + 1e-12)
    assert np.all(ld >= log_dens.min(axis=0) - 1e-12)


def test_injected_outlier_is_flagged():
    p = two_cluster_posterior(seed=1)
    X_train, _ = sample(p, 2000, random_seed=2)
    X_test, _ = sample(p, 300, random_seed=3)
    outlier = np.array([[3.0, 12.0]])
    X_test = np.vstack([X_test, outlier])
    train_scores = score_samples(p, X_train)
    table = flag_anomalies(score_samples(p, X_test), quantile=0.01, train_scores=train_scores)
    assert table["is_anomaly"].iloc[-1]
    assert table["is_anomaly"].iloc[:-1].mean() < 0.04
    assert table.attrs["threshold"] == pytest.approx(np.quantile(train_scores, 0.01))
    # self-referenced quantile and a user threshold
    own = flag_anomalies(train_scores, quantile=0.05)
    assert own["is_anomaly"].mean() == pytest.approx(0.05, abs=0.002)
    user = flag_anomalies(table["score"], threshold=-20.0)
    assert user["is_anomaly"].tolist() == (table["score"] < -20.0).tolist()
    assert user["is_anomaly"].iloc[-1]


def test_flag_anomalies_rejects_bad_settings():
    with pytest.raises(ConfigError, match="quantile"):
        flag_anomalies([1.0, 2.0], quantile=1.5)
    with pytest.raises(ConfigError, match="threshold"):
        flag_anomalies([1.0, 2.0], threshold=float("nan"))
    with pytest.raises(DataError, match="NaN"):
        flag_anomalies([1.0, np.nan])
    with pytest.raises(DataError, match="1-D"):
        flag_anomalies(np.zeros((2, 2)))


# --------------------------------------------------------------------------- #
# generative side
# --------------------------------------------------------------------------- #


def test_sample_reproduces_the_mixture():
    # a single draw: the predictive is exactly that mixture; compare in distribution
    centres = np.array([[-3.0, 0.0], [2.0, 1.0]])
    p = make_posterior(8, n_chain=1, n_draw=1, centres=centres, spread=0.0)
    w = p["weights"].to_numpy()[0, 0]
    cov = p["covariance"].to_numpy()[0, 0]
    X, comp = sample(p, 20000, random_seed=9)
    assert X.shape == (20000, 2) and comp.shape == (20000,)
    freq = np.bincount(comp, minlength=2) / comp.size
    np.testing.assert_allclose(freq, w, atol=4 * np.sqrt(0.25 / comp.size))
    for k in range(2):
        Xk = X[comp == k]
        np.testing.assert_allclose(Xk.mean(axis=0), centres[k], atol=0.08)
        np.testing.assert_allclose(np.cov(Xk.T), cov[k], atol=0.12)

    # KS test of the first feature against the exact mixture marginal CDF
    def cdf(x):
        return sum(w[k] * stats.norm.cdf(x, centres[k, 0], np.sqrt(cov[k, 0, 0])) for k in range(2))

    assert stats.kstest(X[:, 0], cdf).pvalue > 1e-3
    X2, _ = sample(p, 5, random_seed=9)
    np.testing.assert_array_equal(X2, sample(p, 5, random_seed=9)[0])


def test_replicate_shapes_and_moments():
    p = two_cluster_posterior()
    rep = replicate(p, 500, random_seed=0)
    assert rep.shape == (2, 20, 500, 2)
    # each replicated dataset is a draw from its own mixture: feature-0 mean near 3
    assert abs(rep[..., 0].mean() - 3.0) < 0.1
    assert np.all(np.abs(rep[..., 0].mean(axis=-1) - 3.0) < 0.6)


def test_sample_rejects_bad_n(post):
    with pytest.raises(ConfigError, match="n_samples"):
        sample(post, 0)


# --------------------------------------------------------------------------- #
# errors
# --------------------------------------------------------------------------- #


def test_wrong_number_of_features(post):
    with pytest.raises(DataError, match="2 features, but the model was fitted on 3"):
        predict_proba(post, np.zeros((4, 2)))


def test_nan_in_new_data(post):
    X = np.zeros((4, 3))
    X[2, 1] = np.nan
    with pytest.raises(DataError, match=r"NaN.*fit with missing='marginalize' .*\(a refit\)"):
        score_samples(post, X)


def test_dataframe_columns_are_checked(post):
    import pandas as pd

    df = pd.DataFrame(np.zeros((3, 3)), columns=["f2", "f0", "f1"])
    # reordered columns are put back in the fitted order
    np.testing.assert_allclose(predict_proba(post, df), predict_proba(post, df[["f0", "f1", "f2"]]))
    with pytest.raises(DataError, match="columns") as refused:
        predict_proba(post, pd.DataFrame(np.zeros((3, 3)), columns=["a", "b", "c"]))
    assert "to_numpy" not in str(refused.value)  # fitted on named columns
    unnamed = post.assign_coords(feature=["feature_0", "feature_1", "feature_2"])
    with pytest.raises(DataError, match=r"fitted on an array.*X\.to_numpy\(\)"):
        predict_proba(unnamed, pd.DataFrame(np.zeros((3, 3)), columns=["a", "b", "c"]))


def test_missing_posterior_or_data(post):
    with pytest.raises(DataError, match="fit the model first"):
        predict_proba(None, np.zeros((2, 3)))
    with pytest.raises(DataError, match="lacks variable"):
        predict_proba(post.drop_vars("covariance"), np.zeros((2, 3)))
    with pytest.raises(DataError, match="X is required"):
        predict_proba(post)
    with pytest.raises(DataError, match="'posterior' group"):
        predict_proba(xr.DataTree(), np.zeros((2, 3)))


def test_bad_settings(post):
    X = np.zeros((2, 3))
    with pytest.raises(ConfigError, match="kind"):
        predict_proba(post, X, return_intervals=True, kind="central")
    with pytest.raises(ConfigError, match="prob"):
        score_samples(post, X, prob=1.5)
    with pytest.raises(ConfigError, match="chunk_size"):
        predict_proba(post, X, chunk_size=0)
    with pytest.raises(ConfigError, match="max_draws"):
        predict_proba(post, X, max_draws=-1)


def test_corrupt_covariance_draw_is_named(post):
    bad = post.copy(deep=True)
    bad["covariance"][1, 4, 2] = -np.eye(3)
    with pytest.raises(DegenerateFitError, match="component 2 at chain 1, draw 4"):
        predict_proba(bad, np.zeros((2, 3)))


def test_datatree_uses_training_data(post, X_new):
    obs = xr.Dataset({"x": (("obs", "feature"), X_new)}, coords={"feature": ["f0", "f1", "f2"]})
    dt = xr.DataTree.from_dict({"posterior": post, "observed_data": obs})
    np.testing.assert_allclose(predict_proba(dt), predict_proba(post, X_new))
    assert membership_draws(dt).sizes["obs"] == X_new.shape[0]


# --------------------------------------------------------------------------- #
# estimator wiring (runs once the estimator delegates to bayesgmm.core.predict)
# --------------------------------------------------------------------------- #


def _estimator_has_predict() -> bool:
    from bayesgmm.estimator.estimator import BayesianGMM

    return hasattr(BayesianGMM, "predict_proba") and hasattr(BayesianGMM, "score_samples")


@pytest.mark.skipif(not _estimator_has_predict(), reason="estimator methods not wired yet")
def test_estimator_methods_before_fit_raise():
    from bayesgmm.estimator.estimator import BayesianGMM

    gmm = BayesianGMM(2)
    X = np.zeros((3, 2))
    for call in (
        lambda: gmm.predict_proba(X),
        lambda: gmm.predict(X),
        lambda: gmm.score_samples(X),
        lambda: gmm.score(X),
        lambda: gmm.sample(3),
        lambda: gmm.assignments(),
        lambda: gmm.co_clustering(),
        lambda: gmm.flag_anomalies(X),
    ):
        with pytest.raises(NotFittedError, match="call fit"):
            call()


@pytest.mark.slow
@pytest.mark.skipif(not _estimator_has_predict(), reason="estimator methods not wired yet")
def test_estimator_methods_on_a_small_fit():
    from bayesgmm.estimator.estimator import BayesianGMM

    rng = np.random.default_rng(21)
    X = np.vstack([rng.normal(0, 1, (60, 2)), rng.normal(6, 1, (60, 2))])
    gmm = BayesianGMM(
        2, sampler={"draws": 200, "tune": 200, "chains": 2, "random_seed": 1, "progressbar": False}
    ).fit(X)
    proba = gmm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    labels = gmm.predict(X)
    assert len(set(labels[:60])) == 1 and len(set(labels[60:])) == 1 and labels[0] != labels[-1]
    scores = gmm.score_samples(X)
    assert gmm.score(X) == pytest.approx(scores.mean())
    Xs, ys = gmm.sample(50)
    assert Xs.shape == (50, 2) and ys.shape == (50,)
    assert gmm.assignments().shape[0] == 120
    assert gmm.co_clustering().shape == (120, 120)
    flagged = gmm.flag_anomalies(np.array([[3.0, 30.0], [0.0, 0.0]]))
    assert flagged["is_anomaly"].tolist() == [True, False]
    with pytest.raises(DataError, match="features"):
        gmm.predict(np.zeros((3, 3)))


def three_clusters(seed: int = 0, n_per: int = 70) -> np.ndarray:
    """Three well-separated unit-variance clusters in 2-D (6 sds apart)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [3.0, 5.5]])
    return np.concatenate([rng.normal(c, 1.0, size=(n_per, 2)) for c in centers])


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


def test_weighted_quantile_is_the_quantile_of_the_repeated_values():
    from bayesgmm.core.anomalies import weighted_quantile

    rng = np.random.default_rng(3)
    for trial in range(50):
        v = rng.normal(size=rng.integers(1, 30))
        w = rng.integers(0, 5, v.size).astype(float)
        w[rng.integers(v.size)] = 1.0  # at least one value kept
        for q in (0.0, 0.01, 0.05, 0.5, 0.93, 1.0):
            expected = np.quantile(np.repeat(v, w.astype(int)), q)
            assert weighted_quantile(v, w, q) == pytest.approx(expected, abs=1e-12), (trial, q)
    # fractional weights: within the kept values, and rising with q
    v, w = rng.normal(size=20), rng.uniform(0.1, 3.0, 20)
    qs = [weighted_quantile(v, w, q) for q in np.linspace(0, 1, 11)]
    assert np.all(np.diff(qs) >= 0) and v.min() <= qs[0] and qs[-1] <= v.max()
    table = flag_anomalies(v, train_scores=v, train_weights=np.ones(20), quantile=0.1)
    assert table.attrs["threshold"] == pytest.approx(np.quantile(v, 0.1), abs=1e-12)
    with pytest.raises(DataError, match="train_weights has shape"):
        flag_anomalies(v, train_scores=v, train_weights=np.ones(3))
    for bad, match in (
        (np.r_[np.nan, np.ones(19)], "must be finite"),
        (np.r_[-1.0, np.ones(19)], "must be >= 0"),
        (["1"] * 20, "holds text"),
        (np.zeros(20), "zero for every row"),
    ):
        with pytest.raises(DataError, match=match):
            flag_anomalies(v, train_scores=v, train_weights=bad)
