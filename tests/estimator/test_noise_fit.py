"""A Bayesian fit with known measurement errors (noise_cov) end to end: the deconvolved
covariances recover the truth where the naive fit overestimates them, predictions for
points with their own errors (against scipy), save / load, and what is refused."""

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import BayesianGMM, load
from bayesgmm.exceptions import ConfigError, DataError

SAMPLER = {"draws": 200, "tune": 200, "chains": 2, "random_seed": 1, "progressbar": False}
TRUE_COV = np.array([[[1.0, 0.5], [0.5, 0.8]], [[0.6, -0.2], [-0.2, 0.5]]])


@pytest.fixture(scope="module")
def noisy():
    rng = np.random.default_rng(3)
    means = np.array([[0.0, 0.0], [6.0, 3.0]])
    z = rng.choice(2, size=300, p=[0.45, 0.55])
    true = np.stack([rng.multivariate_normal(means[k], TRUE_COV[k]) for k in z])
    a = rng.normal(size=(300, 2, 2)) * rng.uniform(0.3, 1.2, size=(300, 1, 1))
    S = a @ a.transpose(0, 2, 1) + 0.05 * np.eye(2)
    X = true + np.stack([rng.multivariate_normal(np.zeros(2), s) for s in S])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = BayesianGMM(2, sampler=SAMPLER).fit(X, noise_cov=S)
    return X, S, fit


def test_the_posterior_is_of_the_true_values(noisy):
    X, S, fit = noisy
    assert fit.diagnostics_.verdict != "fail"
    cov = fit.posterior["covariance"].mean(("chain", "draw")).to_numpy()
    naive = np.cov(X[X[:, 0] > 3].T)  # the noisy data's spread of the second cluster
    np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2),
                               np.diagonal(TRUE_COV, axis1=1, axis2=2), rtol=0.35)  # fmt: skip
    assert np.all(np.diag(naive) > 1.5 * np.diag(TRUE_COV[1]))
    np.testing.assert_array_equal(fit.idata_["constant_data"]["noise_cov"].to_numpy(), S)
    # sample() draws true values: the second cluster's spread is the deconvolved one
    drawn, comp = fit.sample(4000, random_seed=0)
    second = np.argmax(fit.posterior["means"].mean(("chain", "draw")).to_numpy()[:, 0])
    spread = np.var(drawn[comp == second], axis=0)
    np.testing.assert_allclose(spread, np.diag(TRUE_COV[1]), rtol=0.35)
    assert np.all(spread < np.diag(naive) / 1.3)


def test_points_with_their_own_errors_are_scored_against_the_widened_mixture(noisy):
    _, _, fit = noisy
    new, errors = np.array([[3.0, 1.5], [0.0, 0.0]]), np.array([[4.0, 4.0], [0.1, 0.1]])
    post = fit.posterior
    w = post["weights"].to_numpy().reshape(-1, 2)
    mu = post["means"].to_numpy().reshape(-1, 2, 2)
    cov = post["covariance"].to_numpy().reshape(-1, 2, 2, 2)

    def density(x, e):  # log of the mean over draws of the widened mixture's density
        per_draw = [logsumexp([np.log(w[s, k]) + multivariate_normal(
            mu[s, k], cov[s, k] + np.diag(e)).logpdf(x) for k in range(2)])
            for s in range(len(w))]  # fmt: skip
        return logsumexp(per_draw) - np.log(len(w))

    expected = [density(x, e) for x, e in zip(new, errors, strict=True)]
    np.testing.assert_allclose(fit.score_samples(new, noise_cov=errors), expected, rtol=1e-9)
    sharp, wide = fit.predict_proba(new), fit.predict_proba(new, noise_cov=errors)
    assert wide[0].max() < sharp[0].max()  # a point measured badly is assigned less surely
    table = fit.assignments(new, noise_cov=errors)
    assert table["uncertainty"].iloc[0] > table["uncertainty"].iloc[1]


def test_the_training_rows_are_predicted_with_their_own_errors(noisy):
    X, S, fit = noisy
    own = fit.predict_proba(X, noise_cov=S)
    np.testing.assert_allclose(fit.assignments()["max_prob"], own.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(fit.predict_proba(), own, rtol=1e-12)  # X=None: training rows
    exact = fit.predict_proba(X, noise_cov=np.full((len(X), 2), 1e-300))  # as if exact
    assert not np.allclose(exact, own)
    # points passed are for their true values, whatever their values, and a row's
    # prediction does not depend on the other rows passed with it
    np.testing.assert_allclose(fit.predict_proba(X), exact, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(fit.score_samples(X[:9]), fit.score_samples(X)[:9], rtol=1e-12)
    gamma = fit.membership_draws().mean(("chain", "draw")).to_numpy()
    np.testing.assert_allclose(gamma, own, rtol=1e-10, atol=1e-14)
    cc = fit.co_clustering(max_draws=100)  # the training rows, with their errors
    np.testing.assert_allclose(cc, fit.co_clustering(X, noise_cov=S, max_draws=100))
    tiny = np.full((len(X), 2), 1e-300)
    assert not np.allclose(cc, fit.co_clustering(X, noise_cov=tiny, max_draws=100))


def test_save_load_keeps_the_errors_and_refusals(noisy, tmp_path):
    X, S, fit = noisy
    fit.save(tmp_path / "m")
    back = load(tmp_path / "m")
    np.testing.assert_array_equal(back.model_["noise_cov"].get_value(), S)
    new = [[3.0, 1.5]]
    np.testing.assert_allclose(back.predict_proba(new, noise_cov=[[1.0, 1.0]]),
                               fit.predict_proba(new, noise_cov=[[1.0, 1.0]]))  # fmt: skip
    with pytest.raises(DataError, match="not available for a fit with measurement errors"):
        fit.plot_ppc()
    with pytest.raises(ConfigError, match="noise_cov is not available with inference='advi'"):
        BayesianGMM(2, inference="advi").fit(X, noise_cov=S)
    with pytest.raises(DataError, match=r"noise_cov must have shape"):
        BayesianGMM(2).fit(X, noise_cov=S[:10])
