"""Frequency weights in the Bayesian model and the estimator: the log posterior of the
rows repeated (PyMC's graph and the NumPyro backend's likelihood), a fit that keeps its
weights through save / load, and checks that refuse weighted data with the reason."""

import warnings

import numpy as np
import pytest
from conftest import COMPILE_FAST

from bayesgmm import BayesianGMM, build_model, load, load_faithful, make_spec
from bayesgmm.core.relabel import draw_log_likelihood
from bayesgmm.exceptions import ConfigError, DataError

SAMPLER = {"draws": 300, "tune": 300, "chains": 2, "random_seed": 2, "progressbar": False}


@pytest.fixture(scope="module")
def weighted():
    X = load_faithful().to_numpy()
    w = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    return X, w, np.repeat(X, w.astype(int), axis=0)


@pytest.mark.parametrize(
    "covariance_type", ["full", pytest.param("VEV", marks=pytest.mark.slow), "diag"]
)
def test_the_weighted_log_posterior_is_that_of_the_repeated_rows(weighted, covariance_type):
    pytest.importorskip("numpyro")
    import jax
    import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the sampler uses)

    from bayesgmm.inference.jaxgraph import model_functions

    X, w, repeated = weighted
    mw = build_model(X, 3, covariance_type, sample_weight=w)
    md = build_model(repeated, 3, covariance_type)
    logp_w, logp_d = mw.compile_logp(**COMPILE_FAST), md.compile_logp(**COMPILE_FAST)
    dlogp_w, dlogp_d = mw.compile_dlogp(**COMPILE_FAST), md.compile_dlogp(**COMPILE_FAST)
    functions, shared = model_functions(mw, make_spec(X, 3, covariance_type, sample_weight=w)[1])
    args = functions.prepare(tuple(np.asarray(s.get_value()) for s in shared))
    fast = jax.jit(jax.value_and_grad(functions.logp))
    rng = np.random.default_rng(1)
    for _ in range(3):
        point = {k: v + rng.normal(scale=0.5, size=np.shape(v))
                 for k, v in md.initial_point().items()}  # fmt: skip
        np.testing.assert_allclose(logp_w(point), logp_d(point), rtol=0, atol=1e-8)
        np.testing.assert_allclose(dlogp_w(point), dlogp_d(point), rtol=1e-9, atol=1e-8)
        value, grad = fast(point, args)
        np.testing.assert_allclose(float(value), logp_d(point), rtol=0, atol=1e-8)
        flat = np.concatenate([np.ravel(grad[v.name]) for v in mw.value_vars])
        np.testing.assert_allclose(flat, dlogp_d(point), rtol=1e-9, atol=1e-8)
    # x stays one term per point: its own log-likelihood is unweighted
    pointwise = mw.compile_logp(vars=[mw["x"]], sum=False, **COMPILE_FAST)(point)[0]
    assert pointwise.shape == (len(X),)


@pytest.fixture(scope="module")
def weighted_fit(weighted):
    X, w, _ = weighted
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianGMM(2, sampler=SAMPLER).fit(X, sample_weight=w)


def test_a_weighted_fit_keeps_its_weights(weighted, weighted_fit, tmp_path):
    X, w, _ = weighted
    gmm = weighted_fit
    np.testing.assert_array_equal(gmm.idata_["constant_data"]["sample_weight"], w)
    assert gmm.em_.n_samples == w.sum()
    # the total log-likelihood of a draw (modes, pivot) is weighted
    ll = gmm.idata_["log_likelihood"]["x"].to_numpy()
    np.testing.assert_allclose(draw_log_likelihood(gmm.idata_), ll @ w)
    gmm.save(tmp_path / "m")
    again = load(tmp_path / "m")
    np.testing.assert_array_equal(again.predict_proba(X), gmm.predict_proba(X))
    assert "sample_weight" in again.model_.named_vars
    np.testing.assert_array_equal(again.model_["sample_weight"].get_value(), w)


def test_checks_that_compare_rows_refuse_weighted_fits(weighted_fit):
    with pytest.raises(DataError, match="not available for a fit with sample_weight"):
        weighted_fit.plot_ppc()
    with pytest.raises(DataError, match="not available for a fit with sample_weight"):
        weighted_fit.check_fit()
    from bayesgmm.analysis.ppc import loo_pit

    with pytest.raises(DataError, match="LOO-PIT is not available"):
        loo_pit(weighted_fit.idata_)


def test_weights_with_advi_and_bad_weights_are_refused(weighted):
    X, w, _ = weighted
    with pytest.raises(ConfigError, match="sample_weight is not available with inference='advi'"):
        BayesianGMM(2, inference="advi").fit(X, sample_weight=w)
    with pytest.raises(DataError, match=r"sample_weight must be >= 0"):
        BayesianGMM(2).fit(X, sample_weight=-w)
    with pytest.raises(DataError, match=r"sample_weight has 3 values"):
        BayesianGMM(2).fit(X, sample_weight=[1.0, 2.0, 3.0])


@pytest.mark.slow
def test_the_weighted_posterior_is_that_of_the_repeated_rows(weighted):
    """Same posterior in distribution: means within 0.2 posterior sd (MCSE of ~1,000
    effective draws each is ~0.03 sd), sds within 10%."""
    X, w, repeated = weighted
    settings = {**SAMPLER, "draws": 1000, "tune": 1000, "chains": 4}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = BayesianGMM(2, sampler=settings).fit(X, sample_weight=w).summary()
        b = BayesianGMM(2, sampler={**settings, "random_seed": 9}).fit(repeated).summary()
    diff = np.abs(a["mean"].astype(float) - b["mean"].astype(float)) / b["sd"].astype(float)
    assert diff.max() < 0.2, diff.sort_values().tail()
    ratio = a["sd"].astype(float) / b["sd"].astype(float)
    assert ratio.between(0.9, 1.1).all(), ratio.sort_values()


def test_the_anomaly_threshold_is_the_weighted_quantile(weighted, weighted_fit):
    X, w, _ = weighted
    scores = weighted_fit.score_samples(X)
    table = weighted_fit.flag_anomalies(X, quantile=0.05)
    # the quantile of the training rows repeated as their weights say
    expected = np.quantile(np.repeat(scores, w.astype(int)), 0.05)
    assert table.attrs["threshold"] == pytest.approx(expected, rel=1e-12)
    assert table.attrs["threshold"] != pytest.approx(np.quantile(scores, 0.05), rel=1e-3)
