"""Known labels through the estimator: with every label given the posterior is that of
separate per-class fits, a few labels help on overlapping clusters, labelled training
points keep their components in predictions, relabelling and save/load."""

from itertools import permutations

import numpy as np
import pytest

from bayesgmm import BayesianGMM, Prior
from bayesgmm.exceptions import ConfigError, DataError

SAMPLER = {"draws": 400, "tune": 400, "chains": 2, "random_seed": 3, "progressbar": False}
# the same priors for the joint and the per-class fits (data-scaled defaults would differ)
PRIORS = {"means": Prior("Normal", mu=0.0, sigma=5.0), "sds": Prior("HalfNormal", sigma=2.0)}


def _clusters(n=150, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n // 3)
    centres = np.array([[0.0, 0.0], [2.5, 0.5], [0.5, 2.5]])
    X = centres[y] + spread * rng.normal(size=(n, 2)) @ np.array([[1.0, 0.3], [0.0, 0.8]])
    return X, y


@pytest.fixture(scope="module")
def every_label():
    X, y = _clusters()
    gmm = BayesianGMM(3, priors=PRIORS, sampler=SAMPLER).fit(X, y)
    return X, y, gmm


def test_with_every_label_the_posterior_is_that_of_per_class_fits(every_label):
    X, y, gmm = every_label
    post = gmm.idata_["posterior"]
    for k in range(3):
        alone = BayesianGMM(1, priors=PRIORS, sampler=SAMPLER).fit(X[y == k])
        for name in ("means", "sds"):
            joint = post[name].sel(component=k).to_numpy().reshape(-1, 2)
            own = alone.idata_["posterior"][name].isel(component=0).to_numpy().reshape(-1, 2)
            # Monte Carlo error of the difference of two means (ESS > 300 each): 4 of its sds
            sd = np.sqrt(joint.var(axis=0) / 300 + own.var(axis=0) / 300)
            assert np.all(np.abs(joint.mean(axis=0) - own.mean(axis=0)) < 4 * sd), (name, k)
    # the weights' posterior is Dirichlet(1 + n_k): means n_k + 1 over n + 3
    np.testing.assert_allclose(post["weights"].mean(("chain", "draw")), 51 / 153, atol=0.02)


def test_labelled_training_points_keep_their_components(every_label):
    X, y, gmm = every_label
    np.testing.assert_array_equal(gmm.predict_proba(), np.eye(3)[y])  # X=None: training rows
    np.testing.assert_array_equal(gmm.predict(), y)
    table = gmm.assignments()
    np.testing.assert_array_equal(table["cluster"].to_numpy(), y)
    # points passed are new points, predicted from the posterior alone, whatever their
    # values: the training rows' values too, and a row's prediction does not depend on
    # which other rows come with it
    given = gmm.predict_proba(X)
    assert (given.max(axis=1) < 1).any()
    np.testing.assert_allclose(gmm.predict_proba(X[:-1]), given[:-1], rtol=1e-12)
    np.testing.assert_allclose(gmm.score_samples(X[:7]), gmm.score_samples(X)[:7], rtol=1e-12)
    assert gmm.relabel_info_.n_permuted.sum() == 0


def test_save_and_load_keep_the_labels(every_label, tmp_path):
    X, y, gmm = every_label
    gmm.save(tmp_path / "m")
    back = BayesianGMM.load(tmp_path / "m")
    np.testing.assert_array_equal(back.predict_proba(X), gmm.predict_proba(X))
    # the rebuilt model holds the labels (its coordinates' units differ: see test_io)
    np.testing.assert_array_equal(back.model_["labels"].get_value(), y)


def test_ten_percent_of_labels_do_not_lose_accuracy_on_overlapping_clusters():
    X, y = _clusters(300, seed=1, spread=1.3)
    labels = np.where(np.random.default_rng(2).random(len(X)) < 0.1, y, -1)
    unknown = labels < 0
    semi = BayesianGMM(3, sampler=SAMPLER).fit(X, labels).predict(X)[unknown]
    plain = BayesianGMM(3, sampler=SAMPLER).fit(X).predict(X)[unknown]
    plain_acc = max(np.mean(np.array(p)[plain] == y[unknown]) for p in permutations(range(3)))
    assert np.mean(semi == y[unknown]) >= plain_acc


def test_bad_labels_are_refused_before_any_work():
    X, y = _clusters(60)
    gmm = BayesianGMM(3, sampler=SAMPLER)
    with pytest.raises(DataError, match=r"component numbers 0\.\.2"):
        gmm.fit(X, y + 1)
    with pytest.raises(DataError, match="BayesianGMMClassifier"):
        gmm.fit(X, np.array(["a", "b", "c"] * 20, dtype=object))
    with pytest.raises(ConfigError, match="advi"):
        BayesianGMM(3, inference="advi").fit(X, y)
