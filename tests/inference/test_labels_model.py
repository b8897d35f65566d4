"""Known labels in the model: a labelled point's likelihood is its own component's term
(against scipy), and the NumPyro backend's log density, gradient and pointwise
log-likelihood equal the model's, alone and with weights, missing values and errors."""

import numpy as np
import pytest
from conftest import COMPILE_FAST, check_fast_log_density, model_values, random_point
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import build_model, make_spec
from bayesgmm.exceptions import ConfigError, DataError


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(4.0, 1.0, (n // 2, 2))])
    labels = np.where(rng.random(n) < 0.4, np.repeat([0, 1], n // 2), -1)
    return X * [1.0, 30.0] + [0.0, 100.0], labels


@pytest.mark.parametrize(
    "covariance_type", ["full", "diag", pytest.param("VEV", marks=pytest.mark.slow)]
)
def test_a_labelled_point_has_its_own_components_term(covariance_type):
    X, labels = _data()
    model = build_model(X, 2, covariance_type, labels=labels)
    point = random_point(model, np.random.default_rng(1), 0.3)
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **COMPILE_FAST)(point)[0]
    w, mu, cov = model_values(model, point)
    terms = np.stack([np.log(w[k]) + multivariate_normal(mu[k], cov[k]).logpdf(X)
                      for k in range(2)], axis=1)  # fmt: skip
    direct = np.where(labels >= 0, terms[np.arange(len(X)), np.maximum(labels, 0)],
                      logsumexp(terms, axis=1))  # fmt: skip
    np.testing.assert_allclose(pointwise, direct, rtol=1e-10)


# the labels' terms do not depend on the family: one of each likelihood form (Cholesky
# factor per component or shared, sds per component or one per component) and a rotation
@pytest.mark.parametrize(
    "covariance_type",
    [
        "full",
        *(pytest.param(n, marks=pytest.mark.slow) for n in ("VEV", "tied", "diag", "spherical")),
    ],
)
def test_fast_log_density_with_labels_matches_the_model(covariance_type):
    X, labels = _data()
    X, spec = make_spec(X, 2, covariance_type)
    model = build_model(X, spec=spec, labels=labels)
    rng = np.random.default_rng(7)
    check_fast_log_density(model, spec, [random_point(model, rng, 0.3) for _ in range(2)])


@pytest.mark.parametrize(
    "extra", ["weights", *(pytest.param(e, marks=pytest.mark.slow) for e in ("missing", "errors"))]
)
def test_fast_log_density_with_labels_and_other_row_terms(extra):
    X, labels = _data()
    w = S = None
    if extra == "weights":
        w = np.random.default_rng(2).integers(1, 4, len(X)).astype(float)
    elif extra == "missing":
        X[np.random.default_rng(3).random(X.shape) < 0.2] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 1.0
    else:
        S = np.full((len(X), 2), 0.2) * [1.0, 900.0]
    X, spec = make_spec(X, 2, "full", sample_weight=w, missing="marginalize")
    model = build_model(X, spec=spec, labels=labels, sample_weight=w, noise_cov=S)
    rng = np.random.default_rng(8)
    check_fast_log_density(model, spec, [random_point(model, rng, 0.3) for _ in range(2)])


def test_without_labels_the_model_is_unchanged():
    X, _ = _data()
    plain = build_model(X, 2)
    none = build_model(X, 2, labels=np.full(len(X), -1))
    assert "labels" not in none.named_vars
    point = plain.initial_point()
    assert plain.compile_logp(**COMPILE_FAST)(point) == none.compile_logp(**COMPILE_FAST)(point)


def test_bad_labels_are_refused():
    X, labels = _data()
    with pytest.raises(DataError, match=r"component numbers 0\.\.1"):
        build_model(X, 2, labels=np.where(labels == 1, 2, labels))
    with pytest.raises(DataError, match="39 values but X has 40 rows"):
        build_model(X, 2, labels=labels[:-1])
    with pytest.raises(DataError, match="BayesianGMMClassifier"):
        build_model(X, 2, labels=np.array(["a"] * len(X), dtype=object))
    with pytest.raises(ConfigError, match="minibatch ADVI"):
        build_model(X, 2, labels=labels, batch_size=10)
