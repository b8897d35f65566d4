"""EM with known labels: labelled points keep their components, the reported
log-likelihood is the semi-supervised one (against scipy), with every label given the fit
is the per-class closed form, and a few labels help on overlapping clusters."""

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import fit_em
from bayesgmm.core.datasets import load_faithful
from bayesgmm.core.families import MCLUST_MODELS
from bayesgmm.exceptions import DataError


def _overlapping(n=300, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[0.0, 0.0], [2.0, 0.5], [0.5, 2.0]])
    X = centres[y] + rng.normal(size=(n, 2)) @ np.array([[1.0, 0.3], [0.0, 0.8]])
    return X, y


def _semi_supervised_loglik(fit, X, labels):
    K = len(fit.weights)
    cov = _full_covariances(fit, K)
    terms = np.stack([np.log(fit.weights[k]) + multivariate_normal(fit.means[k], cov[k]).logpdf(X)
                      for k in range(K)], axis=1)  # fmt: skip
    own = terms[np.arange(len(X)), np.maximum(labels, 0)]
    return float(np.where(labels >= 0, own, logsumexp(terms, axis=1)).sum())


def _full_covariances(fit, K):
    L = fit.chol_cov
    cov = L @ np.swapaxes(L, -1, -2)
    return cov if cov.ndim == 3 else np.broadcast_to(cov, (K, *cov.shape[-2:]))


def test_with_every_label_given_the_fit_is_the_per_class_closed_form():
    X, y = _overlapping()
    fit = fit_em(X, 3, prior=None, labels=y, reg_covar=0.0)
    for k in range(3):
        np.testing.assert_allclose(fit.means[k], X[y == k].mean(axis=0), atol=1e-12)
        np.testing.assert_allclose(fit.covariances[k], np.cov(X[y == k].T, bias=True), atol=1e-12)
        assert fit.weights[k] == pytest.approx(np.mean(y == k), abs=1e-12)
    # a shared covariance (EEE): the pooled within-class scatter, as in linear discriminants
    tied = fit_em(X, 3, covariance_type="EEE", prior=None, labels=y, reg_covar=0.0)
    pooled = sum(np.cov(X[y == k].T, bias=True) * np.sum(y == k) for k in range(3)) / len(X)
    np.testing.assert_allclose(_full_covariances(tied, 3)[0], pooled, atol=1e-12)
    assert fit.n_iter <= 3  # nothing to infer


@pytest.mark.parametrize("prior", [None, "default"])
@pytest.mark.parametrize("covariance_type", MCLUST_MODELS)
def test_log_likelihood_is_the_semi_supervised_one(covariance_type, prior):
    X, y = _overlapping(200, seed=1)
    labels = np.where(np.random.default_rng(2).random(len(X)) < 0.3, y, -1)
    fit = fit_em(X, 3, covariance_type=covariance_type, prior=prior, labels=labels,
                 random_seed=0, n_init=2)  # fmt: skip
    assert fit.log_likelihood == pytest.approx(_semi_supervised_loglik(fit, X, labels), abs=1e-8)
    trace = fit.objective_trace
    assert np.all(np.diff(trace) >= -1e-8 * np.abs(trace[:-1]).max())


def test_labelled_points_stay_in_their_components():
    X, y = _overlapping(200, seed=3)
    labels = np.where(np.random.default_rng(4).random(len(X)) < 0.2, y, -1)
    fit = fit_em(X, 3, labels=labels, random_seed=0)
    # the components keep the labels' numbering: each labelled class's mean is its own
    for k in range(3):
        d = np.linalg.norm(fit.means - X[labels == k].mean(axis=0), axis=1)
        assert np.argmin(d) == k


def test_ten_percent_of_labels_do_not_lose_accuracy_on_overlapping_clusters():
    X, y = _overlapping(600, seed=5)
    labels = np.where(np.random.default_rng(6).random(len(X)) < 0.1, y, -1)
    unknown = labels < 0
    semi = fit_em(X, 3, labels=labels, random_seed=0).predict(X)[unknown]
    plain = fit_em(X, 3, random_seed=0).predict(X)[unknown]
    # the unsupervised clusters' best matching to the classes
    from itertools import permutations

    plain_acc = max(np.mean(np.array(p)[plain] == y[unknown]) for p in permutations(range(3)))
    assert np.mean(semi == y[unknown]) >= plain_acc


def test_without_labels_the_fit_is_unchanged_bit_for_bit():
    X = load_faithful().to_numpy()
    a = fit_em(X, 2, random_seed=0)
    b = fit_em(X, 2, random_seed=0, labels=np.full(len(X), -1))
    np.testing.assert_array_equal(a.means, b.means)
    assert a.log_posterior == b.log_posterior


@pytest.mark.parametrize("extra", ["missing", "errors", "weights"])
def test_labels_with_other_row_terms(extra):
    X, y = _overlapping(150, seed=7)
    labels = np.where(np.random.default_rng(8).random(len(X)) < 0.3, y, -1)
    kwargs = {}
    if extra == "missing":
        X[np.random.default_rng(9).random(X.shape) < 0.1] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 0.0
        kwargs["missing"] = "marginalize"
    elif extra == "errors":
        kwargs["noise_cov"] = np.full(X.shape, 0.1)
    else:
        kwargs["sample_weight"] = np.random.default_rng(10).integers(1, 3, len(X))
    fit = fit_em(X, 3, labels=labels, random_seed=0, prior=None, **kwargs)
    resp = fit.predict_proba(X, noise_cov=kwargs.get("noise_cov"))
    K = 3
    if extra == "errors":
        cov = _full_covariances(fit, K)
        terms = np.stack([np.log(fit.weights[k]) + np.array([
            multivariate_normal(fit.means[k], cov[k] + 0.1 * np.eye(2)).logpdf(x) for x in X])
            for k in range(K)], axis=1)  # fmt: skip
        own = terms[np.arange(len(X)), np.maximum(labels, 0)]
        direct = np.where(labels >= 0, own, logsumexp(terms, axis=1)).sum()
        assert fit.log_likelihood == pytest.approx(direct, abs=1e-8)
    assert np.isfinite(resp).all()
    assert fit.log_likelihood < 0


def test_bad_labels_get_clear_errors():
    X, y = _overlapping(60)
    with pytest.raises(DataError, match=r"component numbers 0\.\.2 or -1"):
        fit_em(X, 3, labels=y + 1)
    with pytest.raises(DataError, match="59 values but X has 60 rows"):
        fit_em(X, 3, labels=y[:-1])
    with pytest.raises(DataError, match=r"row 0 is 0\.5"):
        fit_em(X, 3, labels=np.r_[0.5, y[1:]])
