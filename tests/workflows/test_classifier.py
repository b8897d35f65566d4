"""Bayesian discriminant analysis: EDDA's training log-likelihood against a direct
per-class computation on iris, class probabilities with intervals, MclustDA's components
per class, cross-validation, scikit-learn's clone and cross_val_score, bad labels."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayesgmm import BayesianGMMClassifier, cross_validate
from bayesgmm.core.families import MCLUST_MODELS
from bayesgmm.exceptions import ConfigError, DataError

SAMPLER = {"draws": 150, "tune": 150, "chains": 2, "random_seed": 1, "progressbar": False}


def _iris():
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    return X, np.array(["setosa", "versicolor", "virginica"])[y]


@pytest.fixture(scope="module")
def edda():
    pytest.importorskip("sklearn")
    X, y = _iris()
    return X, y, BayesianGMMClassifier("EDDA", "auto", sampler=SAMPLER).fit(X, y)


def test_edda_training_log_likelihood_is_the_per_class_one(edda):
    X, y, clf = edda
    assert clf.covariance_type_ in MCLUST_MODELS
    em = clf.models_[0].em_
    L = em.chol_cov
    cov = np.broadcast_to(L @ np.swapaxes(L, -1, -2), (3, 4, 4))
    direct = sum(
        np.log(em.weights[c]) * np.sum(y == name)
        + multivariate_normal(em.means[c], cov[c]).logpdf(X[y == name]).sum()
        for c, name in enumerate(clf.classes_)
    )
    assert clf.log_likelihood_ == pytest.approx(direct, abs=1e-8)
    # component c is class c: its EM mean is near the class's sample mean
    for c, name in enumerate(clf.classes_):
        np.testing.assert_allclose(em.means[c], X[y == name].mean(axis=0), atol=0.05)


def test_class_probabilities_with_intervals(edda):
    X, y, clf = edda
    p, lo, hi = clf.predict_proba(X, return_intervals=True)
    assert p.shape == (150, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert np.all((0 <= lo) & (lo <= hi) & (hi <= 1))
    # a skewed probability's HDI may leave its mean out, but rarely
    assert np.mean((lo <= p + 1e-12) & (p <= hi + 1e-12)) > 0.9
    assert clf.score(X, y) > 0.95
    assert set(clf.predict(X[:3])) <= set(clf.classes_)
    # the training rows are classified from the posterior, not read back from their labels
    assert (p.max(axis=1) < 1 - 1e-6).any()


def test_mclustda_chooses_components_per_class():
    rng = np.random.default_rng(0)
    two = np.vstack([rng.normal([0.0, 0.0], 0.5, (80, 2)), rng.normal([6.0, 0.0], 0.5, (80, 2))])
    one = rng.normal([3.0, 3.0], 0.6, (100, 2))
    X, y = np.vstack([two, one]), np.r_[np.zeros(160, int), np.ones(100, int)]
    clf = BayesianGMMClassifier("MclustDA", "full", sampler=SAMPLER).fit(X, y)
    assert clf.n_components_ == [2, 1]
    assert clf.score(X, y) > 0.98
    # a point at (3, 0) lies between class 0's two clusters, but below class 1's
    assert clf.predict(np.array([[3.0, 1.0]]))[0] in (0, 1)


@pytest.mark.slow  # ten more fits; 3-fold CV runs in the default step (tests/cli)
def test_cross_validation_reports_error_and_brier_with_standard_errors(edda):
    X, y, clf = edda
    res = cross_validate(BayesianGMMClassifier("EDDA", clf.covariance_type_, sampler=SAMPLER),
                         X, y, n_folds=10)  # fmt: skip
    assert len(res.folds) == 10 and res.folds["n"].sum() == 150
    assert 0 <= res.error < 0.1 and 0 < res.error_se < 0.05
    assert 0 < res.brier < 0.1 and 0 < res.brier_se < 0.05
    np.testing.assert_allclose(res.proba.sum(axis=1), 1.0)
    assert "10-fold cross-validation: error" in str(res)


def test_scikit_learn_clone_and_cross_val_score(edda):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_score

    X, y, clf = edda
    copy = clone(clf)
    assert copy.get_params() == clf.get_params() and not hasattr(copy, "models_")
    scores = cross_val_score(BayesianGMMClassifier("EDDA", "EEE", sampler=SAMPLER), X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9


def test_bad_labels_get_clear_errors():
    X, y = _iris()
    clf = BayesianGMMClassifier(sampler=SAMPLER)
    with pytest.raises(DataError, match="one class"):
        clf.fit(X, np.zeros(150))
    with pytest.raises(DataError, match="149 labels but X has 150 rows"):
        clf.fit(X, y[:-1])
    with pytest.raises(DataError, match="missing class labels"):
        clf.fit(X, np.r_[np.nan, np.ones(149)])
    few = y.copy()
    few[:48] = "virginica"  # setosa keeps 2 points
    with pytest.raises(DataError, match="class 'setosa' has 2 training point"):
        BayesianGMMClassifier("MclustDA", n_components=3, sampler=SAMPLER).fit(X, few)
    with pytest.raises(ConfigError, match="unknown model_type"):
        BayesianGMMClassifier("LDA").fit(X, y)
    with pytest.raises(DataError, match="fewer than n_folds"):
        cross_validate(clf, X, few, n_folds=10)


def test_save_and_load_give_identical_predictions(edda, tmp_path):
    from bayesgmm import BayesianGMM
    from bayesgmm.exceptions import SavedModelError, SavePathError

    X, _, clf = edda
    clf.save(tmp_path / "clf")
    back = BayesianGMMClassifier.load(tmp_path / "clf")
    np.testing.assert_array_equal(back.predict_proba(X[:20]), clf.predict_proba(X[:20]))
    np.testing.assert_array_equal(back.classes_, clf.classes_)
    assert back.covariance_type_ == clf.covariance_type_
    assert back.log_likelihood_ == clf.log_likelihood_
    with pytest.raises(SavePathError, match="already exists"):
        clf.save(tmp_path / "clf")
    (tmp_path / "clf" / "mine.txt").write_text("a user's file")
    with pytest.raises(SavePathError, match="did not write"):
        clf.save(tmp_path / "clf", overwrite=True)
    assert (tmp_path / "clf" / "mine.txt").read_text() == "a user's file"
    with pytest.raises(SavedModelError, match=r"BayesianGMMClassifier\.load"):
        BayesianGMM.load(tmp_path / "clf")


def test_a_family_fitted_by_another_of_its_names_saves_and_loads(tmp_path):
    """mclust's EEE is fitted as scikit-learn's tied: saving must not call that damage."""
    from bayesgmm import BayesianGMM

    X, _ = _iris()
    gmm = BayesianGMM(3, "EEE", sampler={**SAMPLER, "draws": 30, "tune": 30}).fit(X[:, :2])
    gmm.save(tmp_path / "m")
    assert BayesianGMM.load(tmp_path / "m").spec_.covariance_type == "tied"
