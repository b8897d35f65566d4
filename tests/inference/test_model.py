"""The Bayesian model: exact log-likelihood against scipy, structure, priors on the data scale."""

import numpy as np
import pytest
import scipy.stats as st
from scipy.special import logsumexp

from bayesgmm import ConfigError, DataError, Prior, build_model, make_spec
from bayesgmm.core.datasets import load_faithful

FAMILIES = ["full", "tied", "diag", "spherical"]
FAST = {"mode": "FAST_COMPILE"}  # exactness checks need no optimised compile


def _random_point(model, seed):
    rng = np.random.default_rng(seed)
    return {k: v + 0.7 * rng.standard_normal(v.shape) for k, v in model.initial_point().items()}


def _params_at(model, point):
    outs = model.replace_rvs_by_values([model["weights"], model["means"], model["covariance"]])
    return model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", **FAST)(point)


@pytest.mark.parametrize("covariance_type", FAMILIES)
@pytest.mark.parametrize("n_components", [1, 3])
def test_loglik_matches_scipy(covariance_type, n_components):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1] + [0.0, 100.0, -5.0]
    model = build_model(X, n_components, covariance_type)
    point = _random_point(model, 11)
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **FAST)(point)[0]
    weights, means, cov = _params_at(model, point)
    ref = logsumexp(
        [
            np.log(weights[k]) + st.multivariate_normal(means[k], cov[k]).logpdf(X)
            for k in range(n_components)
        ],
        axis=0,
    )
    assert pointwise.shape == (40,)
    np.testing.assert_allclose(pointwise, ref, rtol=0, atol=1e-8)


def test_one_component_weight_reduces_to_single_gaussian():
    X = load_faithful().to_numpy()
    model = build_model(X, 2, "full")
    point = model.initial_point()
    # put (almost) all weight on component 0: the simplex transform's last coordinate
    point["weights_simplex__"] = np.array([40.0])
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **FAST)(point)[0]
    _, means, cov = _params_at(model, point)
    ref = st.multivariate_normal(means[0], cov[0]).logpdf(X)
    np.testing.assert_allclose(pointwise, ref, atol=1e-8)


def test_coords_dims_and_data_container():
    df = load_faithful()
    model = build_model(df, 3, "full")
    assert model.coords["feature"] == ("eruptions", "waiting")
    assert len(model.coords["component"]) == 3
    assert len(model.coords["obs"]) == len(df)
    assert model.named_vars_to_dims["means"] == ("component", "feature")
    assert model.named_vars_to_dims["covariance"] == ("component", "feature", "feature_bis")
    assert model.named_vars_to_dims["correlation"] == ("component", "feature", "feature_bis")
    assert model.named_vars_to_dims["chol_corr"] == ("component", "feature", "feature_bis")
    assert model.named_vars_to_dims["x"] == ("obs", "feature")
    np.testing.assert_array_equal(model["data"].get_value(), df.to_numpy())
    # no discrete assignment variables: every free variable is continuous
    assert all(rv.dtype.startswith("float") for rv in model.free_RVs)
    # numpy input gets generic feature names
    model2 = build_model(df.to_numpy(), 2, "diag")
    assert model2.coords["feature"] == ("feature_0", "feature_1")


def test_default_priors_scale_with_data():
    X = load_faithful().to_numpy()
    _, spec = make_spec(X, 2)
    _, spec_big = make_spec(X * 1e6, 2)
    _, spec_small = make_spec(X * 1e-6, 2)
    for other, factor in ((spec_big, 1e6), (spec_small, 1e-6)):
        np.testing.assert_allclose(other.priors.means_mu, spec.priors.means_mu * factor)
        np.testing.assert_allclose(other.priors.means_sigma, spec.priors.means_sigma * factor)
        np.testing.assert_allclose(other.priors.sds_sigma, spec.priors.sds_sigma * factor)
        np.testing.assert_allclose(other.scale, spec.scale * factor)
    # the standardised model (what NUTS sees) is identical up to the constant Jacobian
    m1, m2 = build_model(X, 2), build_model(X * 1e6, 2)
    point = _random_point(m1, 5)
    lp1 = m1.compile_logp(**FAST)(point)
    lp2 = m2.compile_logp(**FAST)(point)
    n, d = X.shape
    # prior densities of means/sds are on the data scale too: each scalar parameter
    # contributes log(1e6) less density; the likelihood n*d*log(1e6)
    assert np.isfinite(lp1) and np.isfinite(lp2)
    ll1 = m1.compile_logp(vars=[m1["x"]], **FAST)(point)
    ll2 = m2.compile_logp(vars=[m2["x"]], **FAST)(point)
    np.testing.assert_allclose(ll1 - ll2, n * d * np.log(1e6), rtol=1e-10)


def test_priors_are_validated_together():
    X = load_faithful()
    with pytest.raises(ConfigError) as err:
        make_spec(
            X,
            2,
            priors={
                "weigths": Prior("Dirichlet", a=1.0),
                "means": {"sigma": -1.0},
                "sds": Prior("Gamma", alpha=2.0),
                "corr": {"eta": 0},
            },
        )
    msg = str(err.value)
    assert "unknown prior 'weigths'" in msg and "valid names are" in msg
    assert "means.sigma must be > 0" in msg
    assert "'Gamma' is not allowed" in msg and "HalfNormal" in msg
    assert "corr.eta must be > 0" in msg


@pytest.mark.parametrize(
    ("priors", "fragment"),
    [
        ({"weights": {"a": [1.0, 2.0, 3.0]}}, "expected a scalar or shape (2,)"),
        ({"weights": {"a": 0.0}}, "weights.a must be > 0"),
        ({"means": {"mu": "middle"}}, "means.mu must be a number"),
        ({"means": {"mu": float("nan")}}, "means.mu must be finite"),
        ({"sds": {"sigma": 1.0, "scale": 2.0}}, "unknown parameter(s) ['scale']"),
        ({"weights": 3.0}, "must be a Prior or a dict"),
        ({"sds": {"dist": "HalfStudentT", "nu": 3.0}}, "needs parameter 'sigma'"),
    ],
)
def test_bad_prior_values(priors, fragment):
    with pytest.raises(ConfigError, match=r"invalid priors|must be a Prior") as err:
        make_spec(load_faithful(), 2, priors=priors)
    assert fragment in str(err.value)


def test_prior_roundtrip_and_overrides():
    p = Prior("HalfStudentT", nu=4.0, sigma=[1.0, 2.0])
    assert Prior.from_dict(p.to_dict()) == p
    X, spec = make_spec(load_faithful(), 2, priors={"sds": p, "means": {"sigma": 50.0}})
    assert spec.priors.sds_dist == "HalfStudentT"
    assert spec.priors.sds_nu == 4.0
    np.testing.assert_allclose(spec.priors.means_sigma, [50.0, 50.0])
    model = build_model(X, spec=spec)
    assert np.isfinite(model.compile_logp(**FAST)(model.initial_point()))


def test_unknown_covariance_type_and_bad_data():
    with pytest.raises(ConfigError, match="valid: \\['full', 'tied', 'diag', 'spherical'\\]"):
        build_model(load_faithful(), 2, "banana")
    with pytest.raises(DataError, match="only 2 distinct points"):
        build_model(np.array([[1.0, 2.0]] * 5 + [[3.0, 5.0]] * 5), 3)
    with pytest.raises(DataError, match="all points in X are identical"):
        build_model(np.array([[1.0, 2.0]] * 6), 2)
