"""Predictions from a posterior with a background-noise component, against a direct
computation: memberships have the background's column last, ``predict`` says -1 for it,
the predictive density adds ``w_0 / V``, and new draws come from the box."""

import numpy as np
import pytest
import xarray as xr
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm.core.draws import example_posterior
from bayesgmm.core.generate import replicate, sample
from bayesgmm.core.predict import (
    co_clustering,
    count_nonempty,
    predict,
    predict_proba,
    score_samples,
)
from bayesgmm.exceptions import DataError

LOG_BG = -np.log(100.0)  # V = 100


def _posterior(seed=0):
    post = example_posterior(seed=seed)
    rng = np.random.default_rng(seed)
    post["noise_weight"] = (("chain", "draw"), rng.uniform(0.05, 0.2, (2, 10)))
    post.attrs["background"] = LOG_BG
    return post


def _direct(post, X):
    """Per draw: the K + 1 weighted log terms (S, n, K + 1)."""
    w = post["weights"].values.reshape(-1, 2)
    w0 = post["noise_weight"].values.reshape(-1)
    mu = post["means"].values.reshape(-1, 2, 2)
    cov = post["covariance"].values.reshape(-1, 2, 2, 2)
    terms = [[np.log((1 - w0[s]) * w[s, k]) + multivariate_normal(mu[s, k], cov[s, k]).logpdf(X)
              for k in range(2)] + [np.full(len(X), np.log(w0[s]) + LOG_BG)]
             for s in range(len(w0))]  # fmt: skip
    return np.transpose(np.array(terms), (0, 2, 1))


def test_memberships_and_density_add_the_background():
    post = _posterior()
    X = np.array([[0.0, 0.0], [3.0, 3.0], [1.5, 1.5], [9.0, -6.0]])
    lp = _direct(post, X)
    proba = np.exp(lp - logsumexp(lp, axis=2, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(predict_proba(post, X), proba, rtol=1e-10)
    assert predict(post, X).tolist() == [0, 1, proba[2].argmax(), -1]
    dens = logsumexp(logsumexp(lp, axis=2), axis=0) - np.log(lp.shape[0])
    np.testing.assert_allclose(score_samples(post, X), dens, rtol=1e-10)
    # the background is not a cluster: two noise points are never "together" through it
    cc = co_clustering(post, X)
    assert cc[3, 3] == 1.0 and cc[2, 3] < 0.01
    assert count_nonempty(X, post).values.max() <= 2


def test_draws_of_the_background_are_uniform_on_its_box():
    post = _posterior(1)
    data = np.array([[0.0, 0.0], [10.0, 10.0]])  # a box of volume 100 = V
    tree = xr.DataTree.from_dict(
        {"posterior": post, "observed_data": xr.Dataset({"x": (("obs", "feature"), data)})}
    )
    X, comp = sample(tree, 20000, random_seed=0)
    noise = comp == -1
    assert abs(noise.mean() - post["noise_weight"].mean()) < 0.01
    assert (X[noise] >= 0).all() and (X[noise] <= 10).all()
    assert replicate(post, 5, random_seed=0, data=data).shape == (2, 10, 5, 2)
    with pytest.raises(DataError, match="training data give the box"):
        sample(post, 5)
    bad = post.copy()
    bad.attrs = {}
    with pytest.raises(DataError, match="'background' attribute"):
        predict_proba(bad, data)
