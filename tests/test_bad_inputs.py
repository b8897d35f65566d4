"""One row per bad input: a clear error (type + message), never a deep traceback or NaN.

The same table is in the README's troubleshooting section.
"""

import numpy as np
import pandas as pd
import pytest

from bayesgmm import BayesianGMM, ConfigError, DataError, NotFittedError, Prior, fit_em

TINY = {"draws": 60, "tune": 60, "chains": 1, "random_seed": 3, "progressbar": False}


def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(size=(n // 2, 2)), rng.normal(size=(n // 2, 2)) + 6.0])


def _with(value, row=3, col=1):
    X = _blobs()
    X[row, col] = value
    return X


BAD_FIT_INPUTS = [
    ("NaN", _with(np.nan), {}, DataError, "NaN"),
    ("+inf", _with(np.inf), {}, DataError, "infinite"),
    ("-inf", _with(-np.inf), {}, DataError, "infinite"),
    ("1-D input", _blobs()[:, 0], {}, DataError, "reshape a single feature"),
    ("3-D input", _blobs().reshape(6, 10, 2), {}, DataError, "must be 2-D"),
    ("empty input", np.empty((0, 2)), {}, DataError, "empty"),
    (
        "fewer points than components",
        _blobs()[:3],
        {"n_components": 4},
        DataError,
        "3 points but n_components=4",
    ),
    (
        "constant column",
        np.c_[_blobs(), np.full(60, 2.5)],
        {},
        DataError,
        "constant column(s) ['feature_2']",
    ),
    (
        "non-numeric column",
        pd.DataFrame({"a": np.arange(6.0), "b": list("xyzxyz")}),
        {},
        DataError,
        "non-numeric columns ['b']",
    ),
    ("all points identical", np.ones((20, 2)), {}, DataError, "all points in X are identical"),
    (
        "unknown prior key",
        _blobs(),
        {"priors": {"mean": Prior("Normal", mu=0, sigma=1)}},
        ConfigError,
        "unknown prior 'mean'",
    ),
    (
        "unknown sampler key",
        _blobs(),
        {"sampler": {"n_draws": 10}},
        ConfigError,
        "unknown sampler setting(s) ['n_draws']",
    ),
    (
        "zero concentration",
        _blobs(),
        {"priors": {"weights": {"a": 0.0}}},
        ConfigError,
        "weights.a must be > 0",
    ),
    (
        "negative scale",
        _blobs(),
        {"priors": {"sds": {"sigma": -2.0}}},
        ConfigError,
        "sds.sigma must be > 0",
    ),
    ("n_components < 1", _blobs(), {"n_components": 0}, ConfigError, "n_components"),
    (
        "unknown covariance type",
        _blobs(),
        {"covariance_type": "ful"},
        ConfigError,
        "unknown covariance_type 'ful'",
    ),
]


@pytest.mark.parametrize(
    ("X", "kwargs", "exc", "fragment"),
    [row[1:] for row in BAD_FIT_INPUTS],
    ids=[row[0] for row in BAD_FIT_INPUTS],
)
def test_bad_input_to_fit(X, kwargs, exc, fragment):
    kwargs = {"n_components": 2, "sampler": TINY, **kwargs}
    with pytest.raises(exc) as err:
        BayesianGMM(**kwargs).fit(X)
    assert fragment in str(err.value)
    # the error is raised by bayesgmm itself, not from deep inside numpy / PyMC
    assert "bayesgmm" in err.traceback[-1].path.parts


@pytest.mark.parametrize(
    ("X", "kwargs", "exc", "fragment"),
    [row[1:] for row in BAD_FIT_INPUTS if row[3] is DataError],
    ids=[row[0] for row in BAD_FIT_INPUTS if row[3] is DataError],
)
def test_bad_input_to_em(X, kwargs, exc, fragment):
    k = kwargs.get("n_components", 2)
    with pytest.raises(exc) as err:
        fit_em(X, k)
    assert fragment in str(err.value)


def test_heavy_duplication_fits_without_nan():
    """A cluster of exactly repeated values: the default prior keeps the fit finite."""
    rng = np.random.default_rng(1)
    X = np.concatenate([np.tile([[1.0, 2.0]], (40, 1)), rng.normal(size=(40, 2)) + 5.0])
    em = fit_em(X, 2, random_seed=0)
    assert np.isfinite(em.log_posterior) and np.all(np.isfinite(em.covariances))
    gmm = BayesianGMM(2, sampler=TINY).fit(X)
    for name in ("weights", "means", "covariance"):
        assert np.all(np.isfinite(gmm.idata_["posterior"][name].values))


@pytest.mark.parametrize("factor", [1e12, 1e-12])
def test_extreme_scales_fit(factor):
    """Data in huge or tiny units fits (internal standardisation), with finite output."""
    X = _blobs() * factor
    em = fit_em(X, 2, random_seed=0)
    np.testing.assert_allclose(np.sort(em.means[:, 0]) / factor, [0.0, 6.0], atol=0.6)
    gmm = BayesianGMM(2, sampler=TINY).fit(X)
    means = gmm.idata_["posterior"]["means"].mean(("chain", "draw")).values / factor
    np.testing.assert_allclose(np.sort(means[:, 0]), [0.0, 6.0], atol=0.6)


def test_use_before_fit():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        BayesianGMM(2).summary()


@pytest.fixture(scope="module")
def blobs_fit():
    return BayesianGMM(2, sampler=TINY).fit(pd.DataFrame(_blobs(), columns=["a", "b"]))


BAD_PREDICT_INPUTS = [
    ("wrong number of features", np.zeros((5, 3)), "3 features, but the model was fitted on 2"),
    ("NaN in new data", np.array([[0.0, np.nan]]), "NaN"),
    ("inf in new data", np.array([[np.inf, 0.0]]), "infinite"),
    ("wrong DataFrame columns", pd.DataFrame({"a": [0.0], "c": [1.0]}), "columns ['a', 'c']"),
    ("3-D new data", np.zeros((2, 2, 2)), "must be 2-D"),
]
METHODS = ["predict_proba", "predict", "score_samples", "assignments", "flag_anomalies"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("X", "fragment"),
    [row[1:] for row in BAD_PREDICT_INPUTS],
    ids=[row[0] for row in BAD_PREDICT_INPUTS],
)
def test_bad_input_at_predict(blobs_fit, method, X, fragment):
    with pytest.raises(DataError) as err:
        getattr(blobs_fit, method)(X)
    assert fragment in str(err.value)


@pytest.mark.parametrize("method", METHODS)
def test_predict_before_fit(method):
    with pytest.raises(NotFittedError, match="call fit"):
        getattr(BayesianGMM(2), method)(_blobs())


def test_predict_outputs_are_finite(blobs_fit):
    X = np.array([[0.0, 0.0], [3.0, 3.0], [6.0, 6.0], [1e3, -1e3]])
    proba = blobs_fit.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.all(np.isfinite(blobs_fit.score_samples(X)))
