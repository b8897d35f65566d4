"""Missing values (missing="marginalize") in EM, the data checks and imputation: the
observed-data log-likelihood against scipy, a non-decreasing objective, the complete-data
fit unchanged bit for bit, clear errors, and imputations against the Gaussian's exact
conditionals."""

import numpy as np
import pytest
from conftest import check_objective_trace
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import fit_em, impute, impute_draws, load_faithful, make_spec
from bayesgmm.core.draws import example_posterior
from bayesgmm.core.families import MCLUST_MODELS
from bayesgmm.core.missing import Patterns, conditional
from bayesgmm.exceptions import ConfigError, DataError

FAMILIES = ["full", "tied", "diag", "spherical", *[m for m in MCLUST_MODELS if m not in
            ("VVV", "EEE", "VVI", "VII")]]  # fmt: skip


def _with_missing(X, frac=0.2, seed=0):
    """``X`` with ``frac`` of its entries missing completely at random (no empty rows)."""
    rng = np.random.default_rng(seed)
    X = np.array(X, dtype=float)
    X[rng.random(X.shape) < frac] = np.nan
    return X[~np.isnan(X).all(axis=1)]


def _observed_loglik(X, w, mu, cov):
    """Σ_i log Σ_k w_k N(x_i[o] | mu_k[o], Σ_k[o, o]) with scipy, point by point."""
    total = 0.0
    for x in X:
        o = ~np.isnan(x)
        total += logsumexp([np.log(w[k]) + multivariate_normal(mu[k][o], cov[k][np.ix_(o, o)])
                            .logpdf(x[o]) for k in range(len(w))])  # fmt: skip
    return total


@pytest.fixture(scope="module")
def three_d():
    """Three features (so patterns miss one or two coordinates), three clusters."""
    rng = np.random.default_rng(5)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-1.0, 5.0, 3.0]])
    A = rng.normal(size=(3, 3, 3)) * 0.5
    X = np.concatenate([c + rng.normal(size=(60, 3)) @ a + 0.3 * rng.normal(size=(60, 3))
                        for c, a in zip(centres, A, strict=True)])  # fmt: skip
    return _with_missing(X, 0.2, seed=1)


@pytest.mark.parametrize("prior", ["default", None], ids=["map", "ml"])
@pytest.mark.parametrize("covariance_type", FAMILIES)
def test_em_reports_the_observed_data_log_likelihood(three_d, covariance_type, prior):
    fit = fit_em(three_d, 3, covariance_type=covariance_type, prior=prior,
                 missing="marginalize", random_seed=0, n_init=2)  # fmt: skip
    assert np.isnan(three_d).mean() > 0.15
    direct = _observed_loglik(three_d, fit.weights, fit.means, fit.covariance_matrices())
    np.testing.assert_allclose(fit.log_likelihood, direct, rtol=0, atol=1e-8)
    check_objective_trace(fit)
    assert fit.n_iter > 2


def test_without_missing_values_the_fit_is_unchanged_bit_for_bit():
    X = load_faithful()
    a = fit_em(X, 3, covariance_type="VEV", random_seed=4, n_init=2)
    b = fit_em(X, 3, covariance_type="VEV", random_seed=4, n_init=2, missing="marginalize")
    for name in ("weights", "means", "covariances", "objective_trace"):
        np.testing.assert_array_equal(getattr(b, name), getattr(a, name))
    assert b.log_posterior == a.log_posterior


def test_missing_coordinates_leave_the_fit_close_to_the_complete_one():
    X = load_faithful().to_numpy()
    full = fit_em(X, 2, random_seed=0)
    part = fit_em(_with_missing(X, 0.1, seed=3), 2, random_seed=0, missing="marginalize")
    order = np.argsort(part.means[:, 0])
    np.testing.assert_allclose(part.means[order], full.means[np.argsort(full.means[:, 0])],
                               rtol=0.03)  # fmt: skip


def test_the_spec_scales_with_the_observed_entries():
    X = _with_missing(load_faithful().to_numpy(), 0.2, seed=2)
    _, spec = make_spec(X, 2, missing="marginalize")
    np.testing.assert_allclose(spec.loc, np.nanmean(X, axis=0), rtol=1e-12)


@pytest.mark.parametrize(
    ("X", "kwargs", "error", "match"),
    [
        ([[1.0, np.nan], [2.0, 3.0], [4.0, 1.0]], {}, DataError, "missing='marginalize'"),
        ([[1.0, np.inf], [2.0, 3.0], [4.0, 1.0]], {"missing": "marginalize"}, DataError,
         "infinite values .*treats only NaN as missing"),
        ([[np.nan, np.nan], [2.0, 3.0], [4.0, 1.0]], {"missing": "marginalize"}, DataError,
         r"1 row\(s\) with every value missing \(first: row 0\)"),
        ([[1.0, np.nan], [2.0, np.nan], [4.0, np.nan]], {"missing": "marginalize"},
         DataError, r"column\(s\) \[1\] with every value missing"),
        ([[1.0, 2.0], [2.0, 3.0], [4.0, 1.0]], {"missing": "impute"}, ConfigError,
         "missing must be one of"),
    ],
)  # fmt: skip
def test_bad_missing_values_are_clear_errors(X, kwargs, error, match):
    with pytest.raises(error, match=match):
        fit_em(np.array(X), 1, **kwargs)


def test_patterns_group_points_by_their_observed_coordinates():
    X = np.array([[1.0, np.nan, 2.0], [np.nan, 1.0, 1.0], [3.0, np.nan, 0.0], [1.0, 2.0, 3.0]])
    pats = Patterns.of(X)
    seen = sorted(row for rows, _, _ in pats.groups() for row in rows.tolist())
    assert seen == [0, 1, 2, 3]
    for rows, obs, mis in pats.groups():
        assert np.isnan(X[np.ix_(rows, mis)]).all() and not np.isnan(X[np.ix_(rows, obs)]).any()


def _exact_imputation(post, X):
    """Posterior mean of each missing value by the textbook formulas, draw by draw."""
    w = post["weights"].to_numpy().reshape(-1, 2)
    mu = post["means"].to_numpy().reshape(-1, 2, 2)
    cov = post["covariance"].to_numpy().reshape(-1, 2, 2, 2)
    out = np.zeros((len(w), len(X)))
    for s in range(len(w)):
        for i, x in enumerate(X):
            o, m = (0, 1) if np.isnan(x[1]) else (1, 0)
            logr = [np.log(w[s, k]) + multivariate_normal(mu[s, k, o], cov[s, k, o, o])
                    .logpdf(x[o]) for k in range(2)]  # fmt: skip
            r = np.exp(np.array(logr) - logsumexp(logr))
            cond = [mu[s, k, m] + cov[s, k, m, o] / cov[s, k, o, o] * (x[o] - mu[s, k, o])
                    for k in range(2)]  # fmt: skip
            out[s, i] = r @ np.array(cond)
    return out.mean(axis=0)


def test_imputations_are_the_posterior_mean_of_the_conditionals():
    post = example_posterior(n_draw=20)
    post["covariance"] = post["covariance"] + 0.3 * (1 - np.eye(2))  # correlated features
    post.attrs["missing"] = "marginalize"
    X = np.array([[0.2, np.nan], [np.nan, 2.5], [1.5, np.nan], [3.1, 2.9]])
    filled, lo, hi = impute(post, X, return_intervals=True, random_seed=0)
    nan = np.isnan(X)
    np.testing.assert_allclose(filled[nan], _exact_imputation(post, X[:3]), rtol=1e-10)
    np.testing.assert_array_equal(filled[~nan], X[~nan])
    np.testing.assert_array_equal(lo[~nan], X[~nan])
    assert np.all(lo[nan] < filled[nan]) and np.all(filled[nan] < hi[nan])
    # draws of the missing values average to the same means
    draws = impute_draws(post, np.repeat(X[:1], 2000, axis=0), max_draws=None, random_seed=1)
    assert draws.shape == (40, 2000, 2)
    np.testing.assert_allclose(draws[..., 1].mean(), filled[0, 1], atol=0.02)
    # the conditional spread of one component: sd of x_m given x_o
    mu0, cov0 = post["means"].to_numpy()[0, 0], post["covariance"].to_numpy()[0, 0]
    _, _, cc = conditional(X[:1, :1], mu0, cov0, np.array([0]), np.array([1]))
    np.testing.assert_allclose(draws[0, :, 1].std(), np.sqrt(cc[0, 0, 0]), rtol=0.1)


def test_imputation_refuses_a_posterior_that_does_not_marginalize():
    with pytest.raises(DataError, match="missing='marginalize'"):
        impute(example_posterior(), [[0.0, np.nan]])


def test_the_em_fit_predicts_partially_observed_points_from_their_marginals(three_d):
    fit = fit_em(three_d, 3, missing="marginalize", random_seed=0)
    new = np.array([[0.5, np.nan, 0.1], [np.nan, 4.0, np.nan], [1.0, 2.0, 3.0]])
    cov = fit.covariance_matrices()
    for x, ld, p in zip(new, fit.log_density(new), fit.predict_proba(new), strict=True):
        o = ~np.isnan(x)
        joint = [np.log(fit.weights[k]) + multivariate_normal(
            fit.means[k][o], cov[k][np.ix_(o, o)]).logpdf(x[o]) for k in range(3)]  # fmt: skip
        np.testing.assert_allclose(ld, logsumexp(joint), rtol=1e-10)
        np.testing.assert_allclose(p, np.exp(np.array(joint) - logsumexp(joint)), atol=1e-12)
    back = type(fit).from_dict(fit.to_dict())
    np.testing.assert_array_equal(back.predict_proba(new), fit.predict_proba(new))
    with pytest.raises(DataError, match="missing='marginalize'"):
        fit_em(load_faithful(), 2, random_seed=0).predict([[np.nan, 80.0]])
