"""A background-noise component in the model: each point's likelihood is
``log((1 - w_0) sum_k w_k N(x | mu_k, Sigma_k) + w_0 / V)`` (against scipy), the prior of
``((1 - w_0) w, w_0)`` is the Dirichlet of K + 1 components, and the NumPyro backend's log
density, gradient and pointwise log-likelihood equal the model's."""

import numpy as np
import pytest
from conftest import COMPILE_FAST, check_fast_log_density, model_values, random_point
from scipy.special import logsumexp
from scipy.stats import beta, dirichlet, multivariate_normal

from bayesgmm import build_model, make_spec
from bayesgmm.core.background import check_noise
from bayesgmm.exceptions import ConfigError


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(4.0, 1.0, (n // 2, 2))])
    X = np.concatenate([X, rng.uniform(-4.0, 8.0, (6, 2))])
    return X * [1.0, 30.0] + [0.0, 100.0]


@pytest.mark.parametrize(
    "covariance_type", ["full", "diag", pytest.param("VEV", marks=pytest.mark.slow)]
)
def test_a_point_s_likelihood_adds_the_background(covariance_type):
    X = _data()
    bg = check_noise(True, X)
    model = build_model(X, 2, covariance_type, background=bg)
    point = random_point(model, np.random.default_rng(1), 0.3)
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **COMPILE_FAST)(point)[0]
    w, w0, mu, cov = model_values(model, point, ["weights", "noise_weight", "means", "covariance"])
    terms = [np.log((1 - w0) * w[k]) + multivariate_normal(mu[k], cov[k]).logpdf(X)
             for k in range(2)]  # fmt: skip
    direct = logsumexp(np.stack([*terms, np.full(len(X), np.log(w0) + bg)], axis=1), axis=1)
    np.testing.assert_allclose(pointwise, direct, rtol=1e-10)


def test_the_weights_prior_is_the_dirichlet_of_one_more_component():
    X = _data()
    model = build_model(X, 3, "diag", background=check_noise(True, X))
    point = random_point(model, np.random.default_rng(2), 0.5)
    w, w0 = model_values(model, point, ["weights", "noise_weight"])
    prior = model.compile_logp(
        vars=[model["weights"], model["noise_weight"]], jacobian=False, **COMPILE_FAST
    )
    a = np.ones(3)  # the default Dirichlet
    # densities of (w, w_0) and of the K + 1 weights differ by the change of variables
    # (w_1..w_{K-1}, w_0) -> ((1 - w_0) w_1, ..., w_0): a factor (1 - w_0)**(K - 1)
    joint = dirichlet(np.append(a, 1.0)).logpdf(np.append((1 - w0) * w, w0))
    np.testing.assert_allclose(prior(point), joint + 2 * np.log1p(-w0), rtol=1e-10)
    np.testing.assert_allclose(
        prior(point), dirichlet(a).logpdf(w) + beta(1.0, 3.0).logpdf(w0), rtol=1e-10
    )


@pytest.mark.parametrize(
    "covariance_type", ["full", pytest.param("spherical", marks=pytest.mark.slow)]
)
def test_fast_log_density_with_the_background_matches_the_model(covariance_type):
    X = _data()
    X, spec = make_spec(X, 2, covariance_type)
    model = build_model(X, spec=spec, background=check_noise(True, X))
    rng = np.random.default_rng(7)
    check_fast_log_density(model, spec, [random_point(model, rng, 0.3) for _ in range(2)])


@pytest.mark.slow
def test_fast_log_density_with_the_background_labels_and_weights():
    X = _data()
    labels = np.where(np.arange(len(X)) % 5 == 0, np.arange(len(X)) % 2, -1)
    labels[40:] = -1
    w = np.random.default_rng(2).integers(1, 4, len(X)).astype(float)
    X, spec = make_spec(X, 2, "full", sample_weight=w)
    model = build_model(X, spec=spec, labels=labels, sample_weight=w,
                        background=check_noise(True, X))  # fmt: skip
    rng = np.random.default_rng(8)
    check_fast_log_density(model, spec, [random_point(model, rng, 0.3) for _ in range(2)])


def test_the_background_is_refused_with_missing_values_and_errors():
    X = _data()
    with pytest.raises(ConfigError, match="background-noise"):
        build_model(X, 2, background=-5.0, noise_cov=np.full(X.shape, 0.1))
    X[0, 0] = np.nan
    with pytest.raises(ConfigError, match="background-noise"):
        build_model(X, 2, background=-5.0, missing="marginalize")
