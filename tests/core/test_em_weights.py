"""Frequency weights (sample_weight) in EM and in the data-scaled defaults: integer weights
are the rows repeated; bad weights get clear errors."""

import numpy as np
import pytest
from conftest import check_objective_trace

from bayesgmm import fit_em, load_faithful, make_spec
from bayesgmm.core.families import MCLUST_MODELS
from bayesgmm.exceptions import DataError

FAMILIES = ["full", "tied", "diag", "spherical", *[m for m in MCLUST_MODELS if m not in
            ("VVV", "EEE", "VVI", "VII")]]  # fmt: skip


@pytest.fixture(scope="module")
def weighted():
    X = load_faithful().to_numpy()
    w = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    return X, w, np.repeat(X, w.astype(int), axis=0)


@pytest.mark.parametrize("prior", ["default", None], ids=["map", "ml"])
@pytest.mark.parametrize("covariance_type", FAMILIES)
def test_integer_weights_give_the_fit_of_the_repeated_rows(weighted, covariance_type, prior):
    X, w, repeated = weighted
    a = fit_em(X, 3, covariance_type=covariance_type, sample_weight=w, prior=prior,
               random_seed=1, n_init=3)  # fmt: skip
    start = {"means_init": a.means, "weights_init": a.weights}
    b = fit_em(repeated, 3, covariance_type=covariance_type, prior=prior, **start)
    c = fit_em(X, 3, covariance_type=covariance_type, sample_weight=w, prior=prior, **start)
    np.testing.assert_allclose(c.log_posterior, b.log_posterior, rtol=0, atol=1e-8)
    np.testing.assert_allclose(c.log_likelihood, b.log_likelihood, rtol=0, atol=1e-8)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(c, name), getattr(b, name), rtol=1e-8, atol=1e-10)
    assert c.n_samples == b.n_samples == w.sum()
    np.testing.assert_allclose(c.bic(), b.bic(), atol=1e-7)
    np.testing.assert_allclose(c.icl(), b.icl(), atol=1e-7)
    check_objective_trace(a)


def test_weights_of_one_are_the_unweighted_fit():
    X = load_faithful()
    a = fit_em(X, 2, random_seed=3)
    b = fit_em(X, 2, random_seed=3, sample_weight=np.ones(len(X)))
    np.testing.assert_allclose(b.log_posterior, a.log_posterior, rtol=1e-12)
    np.testing.assert_allclose(b.means, a.means, rtol=1e-10)


def test_a_weighted_spec_scales_as_the_repeated_rows(weighted):
    X, w, repeated = weighted
    _, a = make_spec(X, 2, "VEV", sample_weight=w)
    _, b = make_spec(repeated, 2, "VEV")
    np.testing.assert_allclose(a.loc, b.loc, rtol=1e-12)
    np.testing.assert_allclose(a.scale, b.scale, rtol=1e-12)
    np.testing.assert_allclose(a.priors.sds_sigma, b.priors.sds_sigma, rtol=1e-12)
    np.testing.assert_allclose(a.priors.shape_mu, b.priors.shape_mu, atol=1e-12)


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        ([1.0, -1.0], r"must be >= 0 .*row 1 is -1"),
        ([1.0, np.nan], r"must be finite; row 1 is nan"),
        ([1.0, np.inf], r"must be finite; row 1 is inf"),
        ([0.0, 0.0], r"zero for every row"),
        ([1.0, 2.0, 3.0], r"3 values but X has 2 rows"),
        ("abc", r"1-D sequence of numbers"),
        ([[1.0, 2.0]], r"1-D sequence of numbers"),
        (["a", "b"], r"holds text"),
        (["2", "1"], r"holds text"),  # numbers as text are not parsed
        (np.array(["2", "1"]), r"holds text"),
        (np.array([1.0, "2"], dtype=object), r"holds text"),
    ],
)
def test_bad_weights_are_clear_errors(weights, match):
    X = np.array([[0.0, 1.0], [3.0, 2.0]])
    w = weights
    if isinstance(weights, list) and not any(isinstance(v, str) for v in weights):
        w = np.asarray(weights, dtype=float)
    with pytest.raises(DataError, match=match):
        fit_em(X, 1, sample_weight=w)


def test_positive_weights_must_leave_enough_distinct_points():
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    with pytest.raises(DataError, match=r"only 1 distinct points but n_components=2"):
        fit_em(X, 2, sample_weight=[5.0, 0.0, 0.0, 0.0])
