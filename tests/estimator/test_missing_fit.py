"""A Bayesian fit with missing values (missing="marginalize") end to end: predictions for
partially observed points are the draws' marginal mixtures (against scipy), imputations,
save / load, and checks that refuse what does not apply with the reason."""

import pickle
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import BayesianGMM, load, load_faithful
from bayesgmm.exceptions import ConfigError, DataError

SAMPLER = {"draws": 200, "tune": 200, "chains": 2, "random_seed": 4, "progressbar": False}


@pytest.fixture(scope="module")
def partial():
    X = load_faithful().to_numpy().copy()
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.15] = np.nan
    return X[~np.isnan(X).all(axis=1)]


@pytest.fixture(scope="module")
def fit(partial):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianGMM(2, sampler=SAMPLER, missing="marginalize").fit(partial)


def test_the_fit_keeps_its_missing_values(fit, partial):
    assert fit.idata_["posterior"].attrs["missing"] == "marginalize"
    np.testing.assert_array_equal(np.isnan(fit.model_["data"].get_value()), False)
    X = fit.idata_["constant_data"]["missing_mask"].to_numpy().astype(bool)
    np.testing.assert_array_equal(X, np.isnan(partial))
    assert fit.diagnostics_.verdict != "fail"
    # eruptions (min) and waiting (min) of the two clusters, as from the complete data
    means = fit.posterior["means"].mean(("chain", "draw")).to_numpy()
    np.testing.assert_allclose(np.sort(means[:, 0]), [2.04, 4.29], atol=0.15)
    np.testing.assert_allclose(np.sort(means[:, 1]), [54.5, 80.0], atol=2.0)


def test_partially_observed_points_are_scored_by_their_marginals(fit):
    new = np.array([[np.nan, 80.0], [2.0, np.nan], [3.5, 70.0]])
    post = fit.posterior
    w = post["weights"].to_numpy().reshape(-1, 2)
    mu = post["means"].to_numpy().reshape(-1, 2, 2)
    cov = post["covariance"].to_numpy().reshape(-1, 2, 2, 2)
    expected = []
    for x in new:
        o = ~np.isnan(x)
        per_draw = [logsumexp([np.log(w[s, k]) + multivariate_normal(
            mu[s, k][o], cov[s, k][np.ix_(o, o)]).logpdf(x[o]) for k in range(2)])
            for s in range(len(w))]  # fmt: skip
        expected.append(logsumexp(per_draw) - np.log(len(w)))
    np.testing.assert_allclose(fit.score_samples(new), expected, rtol=1e-9)
    proba = fit.predict_proba(new)
    assert proba.shape == (3, 2) and np.allclose(proba.sum(axis=1), 1.0)
    assert fit.predict(new)[0] != fit.predict(new)[1]  # long wait vs short eruption


def test_imputations_and_their_intervals(fit, partial):
    nan = np.isnan(partial)
    filled, lo, hi = fit.impute(return_intervals=True, random_seed=1)
    np.testing.assert_array_equal(filled[~nan], partial[~nan])
    assert not np.isnan(filled).any()
    assert np.all(lo[nan] < filled[nan]) and np.all(filled[nan] < hi[nan])
    # waiting times imputed from a short eruption are short, and from a long one, long
    short = nan[:, 1] & (partial[:, 0] < 2.5)
    long = nan[:, 1] & (partial[:, 0] > 4.0)
    assert filled[short, 1].max() < 65 < filled[long, 1].min()
    new = fit.impute([[np.nan, 50.0]])
    assert 1.5 < new[0, 0] < 2.6


def test_save_load_and_pickle_keep_the_missing_values(fit, tmp_path):
    fit.save(tmp_path / "m")
    back = load(tmp_path / "m")
    np.testing.assert_array_equal(back.impute(), fit.impute())
    new = [[np.nan, 80.0]]
    np.testing.assert_allclose(back.predict_proba(new), fit.predict_proba(new))
    # the rebuilt model holds the same data, missingness patterns included
    names = [n for n in fit.model_.named_vars if n == "data" or n.startswith("missing_")]
    assert len(names) > 2
    for name in names:
        np.testing.assert_array_equal(back.model_[name].get_value(),
                                      fit.model_[name].get_value())  # fmt: skip
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fit)).impute(), fit.impute())


def test_what_does_not_apply_is_refused_with_the_reason(fit, partial):
    with pytest.raises(DataError, match="not available for a fit with missing values"):
        fit.plot_ppc()
    with pytest.raises(ConfigError, match="missing values are not available with inference='advi'"):
        BayesianGMM(2, inference="advi", missing="marginalize").fit(partial)
    with pytest.raises(DataError, match="missing='marginalize'"):
        BayesianGMM(2).fit(partial)
    with pytest.raises(ConfigError, match="missing must be one of"):
        BayesianGMM(2, missing="drop").fit(partial)
    complete = BayesianGMM(1, sampler={**SAMPLER, "draws": 20, "tune": 20})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        complete.fit(load_faithful())
    with pytest.raises(DataError, match="missing='marginalize'"):
        complete.impute([[np.nan, 80.0]])
    with pytest.raises(DataError, match="NaN"):
        complete.predict([[np.nan, 80.0]])


@pytest.mark.slow
def test_parameters_are_recovered_and_imputations_cover_the_held_out_values():
    """20% of the entries missing completely at random from a known 3-D mixture: the
    posterior covers the true parameters, and the 94% intervals of the imputations cover
    about 94% of the values that were held out."""
    rng = np.random.default_rng(12)
    weights = np.array([0.4, 0.6])
    means = np.array([[0.0, 0.0, 0.0], [3.0, -2.0, 4.0]])
    cov = np.array([[[1.0, 0.6, 0.3], [0.6, 1.5, -0.4], [0.3, -0.4, 0.8]],
                    [[0.7, -0.3, 0.2], [-0.3, 1.0, 0.5], [0.2, 0.5, 1.2]]])  # fmt: skip
    z = rng.choice(2, size=600, p=weights)
    X = np.stack([rng.multivariate_normal(means[k], cov[k]) for k in z])
    hide = rng.random(X.shape) < 0.2
    hide[hide.all(axis=1)] = False
    partial = np.where(hide, np.nan, X)
    sampler = {"draws": 500, "tune": 500, "chains": 2, "random_seed": 3, "progressbar": False}
    gmm = BayesianGMM(2, sampler=sampler, missing="marginalize").fit(partial)
    assert gmm.diagnostics_.verdict != "fail"
    post = gmm.posterior
    order = np.argsort(post["means"].mean(("chain", "draw")).to_numpy()[:, 0])
    for name, truth in (("weights", weights), ("means", means), ("covariance", cov)):
        draws = post[name].to_numpy().reshape(-1, *post[name].shape[2:])[:, order]
        z_scores = (draws.mean(axis=0) - truth) / draws.std(axis=0)
        assert np.abs(z_scores).max() < 3.5, (name, z_scores)
    _, lo, hi = gmm.impute(return_intervals=True, prob=0.94, random_seed=0)
    covered = (lo[hide] <= X[hide]) & (X[hide] <= hi[hide])
    assert hide.sum() > 300
    assert 0.90 <= covered.mean() <= 0.975, covered.mean()
