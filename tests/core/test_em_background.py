"""EM with a background-noise component (mclust's Vinv): the reported log-likelihood is
the mixture's with the uniform term (against scipy), the objective never decreases, and on
Old Faithful with scattered outliers the background takes them while the Gaussian
components stay where the clean data put them."""

import numpy as np
import pytest
from conftest import faithful_with_outliers
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import fit_em
from bayesgmm.core.background import bounding_volume
from bayesgmm.core.datasets import load_faithful
from bayesgmm.core.families import MCLUST_MODELS
from bayesgmm.exceptions import ConfigError


def _direct_loglik(fit, X):
    cov = fit.covariance_matrices()
    terms = [np.log(fit.weights[k]) + multivariate_normal(fit.means[k], cov[k]).logpdf(X)
             for k in range(fit.n_components)]  # fmt: skip
    terms.append(np.full(len(X), np.log(fit.noise_weight) + fit.background))
    return float(logsumexp(np.stack(terms), axis=0).sum())


@pytest.mark.parametrize(
    ("covariance_type", "prior"),
    [*((name, "default") for name in MCLUST_MODELS), ("full", None), ("VEV", None)],
)
def test_log_likelihood_includes_the_background(covariance_type, prior):
    X, out, _ = faithful_with_outliers(20, seed=1)
    data = np.vstack([X, out])
    fit = fit_em(data, 2, covariance_type=covariance_type, prior=prior, noise=True,
                 random_seed=0, n_init=2)  # fmt: skip
    assert fit.background == pytest.approx(-np.log(bounding_volume(data)))
    assert fit.log_likelihood == pytest.approx(_direct_loglik(fit, data), abs=1e-8)
    assert fit.weights.sum() + fit.noise_weight == pytest.approx(1.0)
    trace = fit.objective_trace
    assert np.all(np.diff(trace) >= -1e-8 * np.abs(trace[:-1]).max())


def test_outliers_go_to_the_background_and_the_clusters_stay():
    X, out, clean = faithful_with_outliers()
    data = np.vstack([X, out])
    fit = fit_em(data, 2, noise=True, random_seed=0)
    labels = fit.predict(data)
    assert np.mean(labels[len(X) :] == -1) >= 0.9
    assert np.mean(labels[: len(X)] == -1) < 0.1  # a few of the clusters' far tails
    proba = fit.predict_proba(data)
    assert proba.shape == (len(data), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # the means within 2 standard errors of the clean fit's (the "2 posterior sd")
    sd = np.sqrt(np.diagonal(clean.covariance_matrices(), axis1=1, axis2=2))
    se = sd / np.sqrt(clean.weights * len(X))[:, None]
    assert np.all(np.abs(fit.means - clean.means) < 2 * se)
    # without the background the outliers widen the components
    plain = fit_em(data, 2, random_seed=0)
    clean_det = np.linalg.det(clean.covariance_matrices())
    assert np.max(np.linalg.det(plain.covariance_matrices()) / clean_det) > 2
    assert np.all(np.linalg.det(fit.covariance_matrices()) < 1.1 * clean_det)
    # the background's weight and volume, as mclust's nMclustParams(..., noise = TRUE)
    assert fit.n_parameters() == plain.n_parameters() + 2


def test_a_given_volume_and_the_fit_without_noise_is_unchanged():
    X = load_faithful().to_numpy()
    fit = fit_em(X, 2, noise=1000.0, random_seed=0)
    assert fit.background == pytest.approx(-np.log(1000.0))
    a, b = fit_em(X, 2, random_seed=0), fit_em(X, 2, random_seed=0, noise=False)
    np.testing.assert_array_equal(a.means, b.means)
    assert a.noise_weight is None and a.predict_proba(X).shape == (len(X), 2)
    # labelled points never go to the background
    labels = np.full(len(X), -1)
    labels[:5] = fit.predict(X[:5])
    semi = fit_em(X, 2, noise=True, labels=labels, random_seed=0)
    assert np.all(semi.predict(X[:5]) >= 0)


def test_bad_noise_settings_are_refused():
    X = load_faithful().to_numpy()
    for bad in (-1.0, 0.0, "yes", np.inf):
        with pytest.raises(ConfigError, match="noise"):
            fit_em(X, 2, noise=bad)
    with pytest.raises(ConfigError, match="missing values or measurement errors"):
        fit_em(X, 2, noise=True, noise_cov=np.full(X.shape, 0.1))
