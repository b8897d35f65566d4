"""Known measurement errors in the model: the PyMC likelihood is the deconvolved mixture's
(against scipy), and the NumPyro backend's log density, gradient and pointwise
log-likelihood equal the model's."""

import numpy as np
import pytest
from conftest import COMPILE_FAST, check_fast_log_density, model_values, random_point
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import build_model, make_spec


def _data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(0.0, 1.0, (n // 2, 2)), rng.normal(5.0, 1.0, (n // 2, 2))])
    a = rng.normal(size=(n, 2, 2)) * 0.5
    return X * [1.0, 30.0] + [0.0, 100.0], (a @ a.transpose(0, 2, 1) + 0.1 * np.eye(2)) * [
        [1.0, 30.0], [30.0, 900.0]]  # fmt: skip


@pytest.mark.parametrize("covariance_type", ["full", "EII", "VEV"])
def test_the_likelihood_is_the_deconvolved_mixture(covariance_type):
    X, S = _data()
    model = build_model(X, 2, covariance_type, noise_cov=S)
    point = random_point(model, np.random.default_rng(1), 0.3)
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **COMPILE_FAST)(point)[0]
    w, mu, cov = model_values(model, point)
    direct = [logsumexp([np.log(w[k]) + multivariate_normal(mu[k], cov[k] + s).logpdf(x)
                         for k in range(2)]) for x, s in zip(X, S, strict=True)]  # fmt: skip
    np.testing.assert_allclose(pointwise, direct, rtol=1e-10)


@pytest.mark.parametrize(("covariance_type", "weighted"), [("VEV", True)])
def test_fast_log_density_with_errors_matches_the_model(covariance_type, weighted):
    X, S = _data()
    w = np.random.default_rng(2).integers(1, 4, len(X)).astype(float) if weighted else None
    X, spec = make_spec(X, 2, covariance_type, sample_weight=w)
    model = build_model(X, spec=spec, sample_weight=w, noise_cov=S[:, [0, 1], [0, 1]])
    rng = np.random.default_rng(7)
    check_fast_log_density(model, spec, [random_point(model, rng, 0.3) for _ in range(2)])
