"""Determinism and property-based checks (hypothesis) for EM and prediction."""

import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesgmm import (
    BayesianGMM,
    ConvergenceWarning,
    DegenerateFitError,
    available_samplers,
    fit_em,
    predict_proba,
    score_samples,
)

FAMILIES = ["full", "tied", "diag", "spherical"]


@st.composite
def datasets(draw):
    n_features = draw(st.integers(1, 4))
    n_components = draw(st.integers(1, 4))
    n_samples = draw(st.integers(max(8, 3 * n_components), 60))
    scale = 10.0 ** draw(st.integers(-8, 8))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_samples)
    X = (centres[labels] + rng.normal(size=(n_samples, n_features))) * scale
    return X, n_components, draw(st.sampled_from(FAMILIES)), seed


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datasets(), st.booleans())
def test_em_outputs_are_finite(data, use_prior):
    X, k, family, seed = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            fit = fit_em(
                X,
                k,
                covariance_type=family,
                prior="default" if use_prior else None,
                n_init=2,
                max_iter=200,
                random_seed=seed,
            )
        except DegenerateFitError:
            assert not use_prior, "the default prior must keep EM non-degenerate"
            return
    assert np.isfinite(fit.log_likelihood) and np.isfinite(fit.log_posterior)
    proba = fit.predict_proba(X)
    assert np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-10)
    assert np.all(np.isfinite(fit.log_density(X)))
    np.testing.assert_allclose(fit.weights.sum(), 1.0, atol=1e-10)


def _posterior(rng, n_chain, n_draw, k, d, scale):
    weights = rng.dirichlet(np.ones(k), size=(n_chain, n_draw))
    means = rng.normal(scale=3.0 * scale, size=(n_chain, n_draw, k, d))
    a = rng.normal(size=(n_chain, n_draw, k, d, d))
    cov = (a @ np.swapaxes(a, -1, -2) + 0.1 * np.eye(d)) * scale**2
    feats = [f"f{j}" for j in range(d)]
    return xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), weights),
            "means": (("chain", "draw", "component", "feature"), means),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        },
        coords={"feature": feats, "feature_bis": feats},
    )


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(1, 4),
    st.integers(1, 30),
    st.integers(-6, 6),
    st.integers(0, 2**16),
)
def test_prediction_outputs_are_finite(k, d, n, log_scale, seed):
    rng = np.random.default_rng(seed)
    scale = 10.0**log_scale
    post = _posterior(rng, 2, 5, k, d, scale)
    # include points far outside every component: log space keeps them finite
    X = rng.normal(scale=5.0 * scale, size=(n, d))
    X[0] = 1e3 * scale
    proba = predict_proba(post, X)
    assert proba.shape == (n, k) and np.all(np.isfinite(proba))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-10)
    scores = score_samples(post, X)
    assert scores.shape == (n,) and np.all(np.isfinite(scores))


@pytest.mark.slow
@pytest.mark.parametrize("nuts_sampler", ["pymc", "nutpie", "numpyro", "blackjax"])
def test_same_seed_same_datatree(nuts_sampler):
    if nuts_sampler not in available_samplers():
        pytest.skip(f"{nuts_sampler} not installed")
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 5.0])
    cfg = {
        "draws": 100,
        "tune": 100,
        "chains": 2,
        "random_seed": 11,
        "progressbar": False,
        "nuts_sampler": nuts_sampler,
    }
    a = BayesianGMM(2, sampler=cfg).fit(X).idata_
    b = BayesianGMM(2, sampler=cfg).fit(X).idata_
    for group in ("posterior", "posterior_raw", "log_likelihood"):
        # values, dims and coords (attrs hold timestamps and sampling times)
        xr.testing.assert_equal(a[group].to_dataset(), b[group].to_dataset())
    for name in ("diverging",):
        np.testing.assert_array_equal(
            a["sample_stats"][name].values, b["sample_stats"][name].values
        )
