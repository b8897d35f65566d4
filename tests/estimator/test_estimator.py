"""BayesianGMM end to end on small settings; recovery checks are marked slow."""

import warnings

import numpy as np
import pytest

from bayesgmm import BayesianGMM, ConfigError, NotFittedError, fit_em, load_faithful

FAST = {"draws": 300, "tune": 300, "chains": 2, "random_seed": 1, "progressbar": False}


@pytest.fixture(scope="module")
def faithful_fit():
    return BayesianGMM(2, sampler=FAST).fit(load_faithful())


def test_datatree_groups_and_dims(faithful_fit):
    idata = faithful_fit.idata_
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in idata.children, group
    post = idata["posterior"]
    assert post["weights"].dims == ("chain", "draw", "component")
    assert post["means"].dims == ("chain", "draw", "component", "feature")
    assert post["covariance"].dims == ("chain", "draw", "component", "feature", "feature_bis")
    assert post["correlation"].dims == ("chain", "draw", "component", "feature", "feature_bis")
    assert post["sds"].dims == ("chain", "draw", "component", "feature")
    assert list(post["feature"].values) == ["eruptions", "waiting"]
    assert idata["log_likelihood"]["x"].dims == ("chain", "draw", "obs")
    assert idata["log_likelihood"]["x"].shape == (2, 300, 272)
    # covariance, sds and correlation agree with each other
    cov = post["covariance"].values
    sds = post["sds"].values
    np.testing.assert_allclose(np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1)), sds, rtol=1e-10)
    corr = post["correlation"].values
    np.testing.assert_allclose(cov, corr * sds[..., :, None] * sds[..., None, :], rtol=1e-8)


def test_pointwise_loglik_matches_em_density(faithful_fit):
    """The stored log-likelihood equals scipy's mixture density at each draw's parameters
    (and test_model checks the model's own logp against scipy)."""
    import scipy.stats as st
    from scipy.special import logsumexp

    post = faithful_fit.idata_["posterior"]
    X = load_faithful().to_numpy()
    for c, d in [(0, 0), (1, 123)]:
        w, mu, cov = (post[v].values[c, d] for v in ("weights", "means", "covariance"))
        ref = logsumexp(
            [np.log(w[k]) + st.multivariate_normal(mu[k], cov[k]).logpdf(X) for k in range(2)],
            axis=0,
        )
        stored = faithful_fit.idata_["log_likelihood"]["x"].values[c, d]
        np.testing.assert_allclose(stored, ref, rtol=0, atol=1e-9)


def test_posterior_near_mle_on_faithful(faithful_fit):
    """Old Faithful K=2: posterior means of weights and means within 2 sd of the MLE."""
    mle = fit_em(load_faithful(), 2, prior=None, n_init=10, random_seed=0)
    post = faithful_fit.idata_["posterior"]
    order = np.argsort(post["means"].mean(("chain", "draw")).values[:, 0])
    mle_order = np.argsort(mle.means[:, 0])
    for name, mle_value in (("weights", mle.weights), ("means", mle.means)):
        draws = post[name].values[:, :, order].reshape(-1, *post[name].shape[2:])
        z = np.abs(draws.mean(0) - mle_value[mle_order]) / draws.std(0)
        assert np.all(z < 2), (name, z)


def test_em_attributes(faithful_fit):
    assert faithful_fit.em_.converged
    assert faithful_fit.n_features_in_ == 2
    assert faithful_fit.feature_names_in_ == ["eruptions", "waiting"]
    table = faithful_fit.summary()
    assert {"mean", "sd", "ess_bulk", "r_hat"} <= set(table.columns)
    assert any(i.startswith("means[") for i in table.index)


def test_params_and_clone():
    from sklearn.base import clone

    est = BayesianGMM(3, "diag", priors={"corr": {"eta": 3.0}}, sampler={"draws": 10})
    params = est.get_params()
    assert params["n_components"] == 3 and params["covariance_type"] == "diag"
    cloned = clone(est)
    assert cloned.get_params() == params and cloned is not est
    est.set_params(n_components=4)
    assert est.n_components == 4
    with pytest.raises(ConfigError, match="unknown parameter 'n_component'"):
        est.set_params(n_component=2)
    assert "n_components=4" in repr(est)


def test_not_fitted_and_bad_settings():
    with pytest.raises(NotFittedError, match="call fit"):
        BayesianGMM(2).summary()
    X = load_faithful()
    with pytest.raises(ConfigError, match="unknown sampler setting"):
        BayesianGMM(2, sampler={"drawz": 5}).fit(X)
    with pytest.raises(ConfigError, match="unknown em setting"):
        BayesianGMM(2, em={"restarts": 5}).fit(X)
    with pytest.raises(ConfigError, match="unknown covariance_type"):
        BayesianGMM(2, "fulll").fit(X)


@pytest.mark.slow
def test_recovers_known_parameters():
    """Well separated K=3, D=2: truths inside the posterior intervals, R-hat <= 1.01 on 4 chains.

    There are 18 distinct scalar truths (3 weights, 6 means, 9 covariance entries); even a
    perfectly calibrated posterior puts all 18 inside their 94% intervals only about a third
    of the time (0.94**18). So: every truth inside its 99.8% interval, and at least 80% of
    them inside their 94% intervals (about 94% expected).
    """
    rng = np.random.default_rng(2024)
    weights = np.array([0.5, 0.3, 0.2])
    means = np.array([[0.0, 0.0], [6.0, 1.0], [1.0, 7.0]])
    covs = np.array(
        [[[1.0, 0.5], [0.5, 1.0]], [[0.6, -0.2], [-0.2, 0.4]], [[1.5, 0.0], [0.0, 0.5]]]
    )
    n = 600
    z = rng.choice(3, size=n, p=weights)
    X = np.array([rng.multivariate_normal(means[k], covs[k]) for k in z])
    gmm = BayesianGMM(
        3,
        sampler={"draws": 1000, "tune": 1000, "chains": 4, "random_seed": 5, "progressbar": False},
    ).fit(X)
    post = gmm.idata_["posterior"]
    order = np.argsort(
        post["means"].mean(("chain", "draw")).values[:, 0]
        + 10 * post["means"].mean(("chain", "draw")).values[:, 1]
    )
    true_order = np.argsort(means[:, 0] + 10 * means[:, 1])
    inside94, inside998 = [], []
    for name, truth in (("weights", weights), ("means", means), ("covariance", covs)):
        draws = post[name].values[:, :, order].reshape(-1, *post[name].shape[2:])
        t = truth[true_order]
        if name == "covariance":  # distinct entries only: the lower triangle
            i, j = np.tril_indices(2)
            draws, t = draws[..., i, j], t[..., i, j]
        lo, hi = np.quantile(draws, [0.03, 0.97], axis=0)
        inside94.extend(((lo <= t) & (t <= hi)).ravel())
        lo, hi = np.quantile(draws, [0.001, 0.999], axis=0)
        inside998.extend(((lo <= t) & (t <= hi)).ravel())
    assert len(inside94) == 18
    assert all(inside998), inside998
    assert np.mean(inside94) >= 0.8, inside94
    import arviz as az

    rhat = az.rhat(post.to_dataset()[["weights", "means", "sds"]])
    assert max(float(rhat[v].max()) for v in rhat.data_vars) <= 1.01


@pytest.mark.slow
@pytest.mark.parametrize("factor", [1e6, 1e-6])
def test_fit_is_scale_equivariant(faithful_fit, factor):
    X = load_faithful().to_numpy()
    scaled = BayesianGMM(2, sampler=FAST).fit(X * factor)
    a = faithful_fit.idata_["posterior"]["means"]
    b = scaled.idata_["posterior"]["means"] / factor
    sd = a.std(("chain", "draw")).values
    diff = np.abs(a.mean(("chain", "draw")).values - b.mean(("chain", "draw")).values)
    assert np.all(diff < 0.2 * sd + 1e-12)


def test_score_samples_intervals_are_94_percent_hdis_unless_eti_is_asked(faithful_fit):
    # every bayesgmm interval is a 94% HDI; score_samples' too (ETI on request)
    import arviz as az
    import scipy.stats as st
    import xarray as xr
    from scipy.special import logsumexp

    X = load_faithful().to_numpy()[::40]
    post = faithful_fit.posterior
    w = post["weights"].values
    mu, cov = post["means"].values, post["covariance"].values
    C, S, K = w.shape
    per_draw = np.empty((C, S, len(X)))
    for c in range(C):
        for s in range(S):
            comp = [st.multivariate_normal(mu[c, s, k], cov[c, s, k]).logpdf(X) for k in range(K)]
            per_draw[c, s] = logsumexp(np.log(w[c, s])[:, None] + np.array(comp), axis=0)
    hdi = az.hdi(xr.DataArray(per_draw, dims=("chain", "draw", "obs")), prob=0.94).values
    _, lo, hi = faithful_fit.score_samples(X, return_intervals=True)
    np.testing.assert_allclose(lo, hdi[:, 0], rtol=0, atol=1e-9)
    np.testing.assert_allclose(hi, hdi[:, 1], rtol=0, atol=1e-9)
    _, lo, hi = faithful_fit.score_samples(X, return_intervals=True, kind="eti", prob=0.9)
    flat = per_draw.reshape(C * S, -1)
    np.testing.assert_allclose(lo, np.quantile(flat, 0.05, axis=0), rtol=0, atol=1e-9)
    np.testing.assert_allclose(hi, np.quantile(flat, 0.95, axis=0), rtol=0, atol=1e-9)


def test_a_stacked_posterior_passes_the_saved_models_consistency_check(faithful_fit):
    # after stack_modes the posterior is one pooled chain, and the relabelling
    # permutations stay those of the sampled chains (kept in posterior_chains)
    import dataclasses

    import xarray as xr

    from bayesgmm.estimator.state import check_consistent
    from bayesgmm.exceptions import SavedModelError

    state = faithful_fit.__dict__["_state"]
    idata = state.idata.copy()
    ds = idata["posterior"].to_dataset()
    pooled = ds.isel(chain=[0], draw=slice(0, 101)).assign_coords(chain=[0])
    idata["posterior_chains"] = ds
    idata["posterior"] = pooled
    check_consistent("m", dataclasses.replace(state, idata=idata))  # no error
    del idata["posterior_chains"]
    with pytest.raises(SavedModelError, match="permutations"):
        check_consistent("m", dataclasses.replace(state, idata=idata))
    assert isinstance(idata, xr.DataTree)


def test_tables_of_a_dataframe_keep_its_index(faithful_fit):
    """assignments() and flag_anomalies() of a DataFrame line up with it when pandas
    aligns them (a subset, a shuffled frame), as its rows' positions do."""
    df = load_faithful()
    sub = df[df["waiting"] > 60].sample(frac=1.0, random_state=0)
    table = faithful_fit.assignments(sub)
    assert table.index.equals(sub.index)
    positional = faithful_fit.assignments(sub.to_numpy())
    assert positional.index.tolist() == list(range(len(sub)))
    np.testing.assert_array_equal(table["cluster"].to_numpy(), positional["cluster"].to_numpy())
    sub["cluster"] = table["cluster"]  # aligned on the index
    np.testing.assert_array_equal(sub["cluster"].to_numpy(), positional["cluster"].to_numpy())
    flags = faithful_fit.flag_anomalies(sub[["eruptions", "waiting"]], quantile=0.1)
    assert flags.index.equals(sub.index) and flags.index.name == "obs"
    named = sub.rename_axis("row")
    assert faithful_fit.assignments(named[["eruptions", "waiting"]]).index.name == "row"


@pytest.mark.parametrize("index", ["gaps", "names"])
def test_a_dataframes_row_index_names_the_training_rows(index, tmp_path):
    """df.dropna() (gaps in the index) or named rows: assignments() of the training rows
    line up with the DataFrame when pandas aligns them, also after save / load, and the
    checks that pair the groups' rows (PSIS-LOO, LOO-PIT) still run."""
    df = load_faithful().iloc[::2]  # index 0, 2, 4, ...
    if index == "names":
        df = df.set_axis([f"eruption {i}" for i in range(len(df))])
    gmm = BayesianGMM(2, sampler={"draws": 150, "tune": 200, "chains": 2, "random_seed": 1,
                                  "progressbar": False})  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm.fit(df)
    table = gmm.assignments()
    assert table.index.equals(df.index)
    df = df.assign(cluster=table["cluster"])  # aligned on the index: no NaN
    np.testing.assert_array_equal(df["cluster"].to_numpy(), gmm.predict())
    assert gmm.idata_["log_likelihood"]["obs"].to_numpy().tolist() == df.index.tolist()
    gamma = gmm.membership_draws(max_draws=10)
    assert gamma["obs"].to_numpy().tolist() == df.index.tolist()
    sub = df.iloc[::-3]
    assert gmm.membership_draws(sub, max_draws=10)["obs"].to_numpy().tolist() == sub.index.tolist()
    assert gmm.membership_draws(sub.to_numpy()[:, :2], max_draws=10)[
        "obs"
    ].to_numpy().tolist() == list(range(len(sub)))
    gmm.save(tmp_path / "m")
    back = BayesianGMM.load(tmp_path / "m")
    assert back.assignments().index.equals(df.index)
    values = back.check_fit()["loo_pit_values"]
    for name in values.data_vars:
        pit = values[name].to_numpy()
        assert pit.shape == (len(df),) and ((pit >= 0) & (pit <= 1)).all()

    from bayesgmm.workflows.selection import _psis_loo

    assert np.isfinite(float(_psis_loo(back.idata_).elpd))
