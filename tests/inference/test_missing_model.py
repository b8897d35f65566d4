"""Missing values in the model: the PyMC likelihood is the observed-data marginal (against
scipy), and the NumPyro backend's log density and pointwise log-likelihood equal it."""

import numpy as np
import pytest
from conftest import COMPILE_FAST, check_fast_log_density, model_values, random_point
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import build_model, make_spec


def _data(seed: int = 3, n: int = 45, frac: float = 0.25) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(3, 3)) + 10.0
    X = np.concatenate([c + rng.normal(scale=[0.5, 1.0, 1.5], size=(n // 3, 3)) for c in centres])
    X[rng.random(X.shape) < frac] = np.nan
    return X[~np.isnan(X).all(axis=1)]


def _observed_loglik(X, w, mu, cov):
    out = []
    for x in X:
        o = ~np.isnan(x)
        terms = [np.log(w[k]) + multivariate_normal(mu[k][o], cov[k][np.ix_(o, o)]).logpdf(x[o])
                 for k in range(len(w))]  # fmt: skip
        out.append(logsumexp(terms))
    return np.array(out)


FAMILIES = ["full", "spherical", "VEV", "EEI"]


@pytest.mark.parametrize(
    "covariance_type",
    [pytest.param(c, marks=pytest.mark.slow) if c == "VEV" else c for c in FAMILIES],
)
def test_the_likelihood_is_the_marginal_of_the_observed_coordinates(covariance_type):
    X = _data()
    model = build_model(X, 3, covariance_type, missing="marginalize")
    rng = np.random.default_rng(0)
    point = random_point(model, rng, 0.5)
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **COMPILE_FAST)(point)[0]
    w, mu, cov = model_values(model, point)
    np.testing.assert_allclose(pointwise, _observed_loglik(X, w, mu, cov), rtol=1e-10)
    assert np.isfinite(model.compile_dlogp(**COMPILE_FAST)(point)).all()


def test_without_missing_values_the_model_is_unchanged():
    X = _data(frac=0.0)
    plain = build_model(X, 3)
    marg = build_model(X, 3, missing="marginalize")
    assert "missing_mask" not in marg.named_vars
    point = plain.initial_point()
    assert plain.compile_logp(**COMPILE_FAST)(point) == marg.compile_logp(**COMPILE_FAST)(point)


def test_nan_without_the_option_is_refused_with_the_option_named():
    from bayesgmm.exceptions import DataError

    with pytest.raises(DataError, match="missing='marginalize'"):
        build_model(_data(), 3)


@pytest.mark.parametrize(
    ("covariance_type", "weighted"),
    [("full", False), pytest.param("VEV", True, marks=pytest.mark.slow), ("diag", True)],
)
def test_fast_log_density_with_missing_values_matches_the_model(covariance_type, weighted):
    X = _data()
    w = np.random.default_rng(1).integers(1, 4, X.shape[0]).astype(float) if weighted else None
    X, spec = make_spec(X, 3, covariance_type, sample_weight=w, missing="marginalize")
    model = build_model(X, spec=spec, sample_weight=w)
    rng = np.random.default_rng(7)
    check_fast_log_density(model, spec, [random_point(model, rng, 0.7) for _ in range(3)])
