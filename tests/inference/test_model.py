"""The Bayesian model: exact log-likelihood against scipy, structure, priors on the data scale."""

import numpy as np
import pytensor.tensor as pt
import pytest
import scipy.stats as st
from conftest import COMPILE_FAST, model_values
from scipy.special import logsumexp

from bayesgmm import ConfigError, DataError, Prior, build_model, make_spec
from bayesgmm.core.datasets import load_faithful

FAMILIES = ["full", "tied", "diag", "spherical"]


def _random_point(model, seed):
    rng = np.random.default_rng(seed)
    return {k: v + 0.7 * rng.standard_normal(v.shape) for k, v in model.initial_point().items()}


@pytest.mark.parametrize("covariance_type", FAMILIES)
@pytest.mark.parametrize("n_components", [1, 3])
def test_loglik_matches_scipy(covariance_type, n_components):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 3)) * [1.0, 10.0, 0.1] + [0.0, 100.0, -5.0]
    model = build_model(X, n_components, covariance_type)
    point = _random_point(model, 11)
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **COMPILE_FAST)(point)[0]
    weights, means, cov = model_values(model, point)
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
    point["weights_scaled_simplex__"] = np.array([40.0])  # units of 1 until set from EM
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **COMPILE_FAST)(point)[0]
    _, means, cov = model_values(model, point)
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
    lp1 = m1.compile_logp(**COMPILE_FAST)(point)
    lp2 = m2.compile_logp(**COMPILE_FAST)(point)
    n, d = X.shape
    # prior densities of means/sds are on the data scale too: each scalar parameter
    # contributes log(1e6) less density; the likelihood n*d*log(1e6)
    assert np.isfinite(lp1) and np.isfinite(lp2)
    ll1 = m1.compile_logp(vars=[m1["x"]], **COMPILE_FAST)(point)
    ll2 = m2.compile_logp(vars=[m2["x"]], **COMPILE_FAST)(point)
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
    assert np.isfinite(model.compile_logp(**COMPILE_FAST)(model.initial_point()))


def test_unknown_covariance_type_and_bad_data():
    with pytest.raises(ConfigError, match="valid: \\['full', 'tied', 'diag', 'spherical'\\]"):
        build_model(load_faithful(), 2, "banana")
    with pytest.raises(DataError, match="only 2 distinct points"):
        build_model(np.array([[1.0, 2.0]] * 5 + [[3.0, 5.0]] * 5), 3)
    with pytest.raises(DataError, match="all points in X are identical"):
        build_model(np.array([[1.0, 2.0]] * 6), 2)


# -- the sampler's coordinates in units of the EM standard errors ---------------------------
def _three_clusters(D: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=30.0, size=(3, D)) + 50.0  # well separated
    return np.concatenate([c + rng.normal(scale=[1.0 + d for d in range(D)], size=(120, D))
                           for c in centres])  # fmt: skip


def _model_with_units(covariance_type: str, D: int = 3, priors=None):
    from bayesgmm.core.em import fit_em
    from bayesgmm.inference.coordinates import set_coordinate_units

    X, spec = make_spec(_three_clusters(D), 3, covariance_type=covariance_type, priors=priors)
    em = fit_em(X, 3, covariance_type=covariance_type,
                prior=spec.priors.to_em_prior(covariance_type), random_seed=0)  # fmt: skip
    model = build_model(X, spec=spec)
    return X, spec, em, model, set_coordinate_units(model, spec, em)


def _unconstrained(model, start, jitter=0.0, seed=0):
    from bayesgmm.inference.starts import jittered_unconstrained_starts

    rng = np.random.default_rng(seed)
    return jittered_unconstrained_starts(model, start, 1, jitter, rng)[0]


@pytest.mark.parametrize("covariance_type", FAMILIES)
def test_units_change_the_coordinates_not_the_posterior(covariance_type):
    from bayesgmm.inference.starts import em_start

    X, spec, em, model, units = _model_with_units(covariance_type)
    plain = build_model(X, spec=spec)  # units of one
    assert all(np.all(u > 0) and np.all(np.isfinite(u)) for u in units.values())
    logp, logp_plain = model.compile_logp(**COMPILE_FAST), plain.compile_logp(**COMPILE_FAST)
    start = em_start(em, spec)
    log_units = sum(float(np.sum(np.log(u))) for name, u in units.items() if name != "chol_corr")
    if spec.has_corr:  # one unit per row of the factor, used by every coordinate of the row
        from bayesgmm.inference.coordinates import corr_coordinate_rows

        log_units += float(np.sum(np.log(units["chol_corr"][..., corr_coordinate_rows(3)])))
    for jitter in (0.0, 0.3):  # the same constrained points in both parameterisations
        point = _unconstrained(plain, start, jitter, seed=1)
        constrained = {rv.name: plain.rvs_to_transforms[rv].backward(
            pt.as_tensor(point[plain.rvs_to_values[rv].name]), *rv.owner.inputs).eval()
            for rv in plain.free_RVs}  # fmt: skip
        scaled = _unconstrained(model, constrained)
        # the density of the scaled coordinates is the plain one times the units
        np.testing.assert_allclose(logp(scaled) - logp_plain(point), log_units, rtol=1e-9)
    # a model clone (as pm.sample's JAX samplers make, data frozen) keeps the units
    from pymc.model.transform.optimization import freeze_dims_and_data

    np.testing.assert_allclose(freeze_dims_and_data(model).compile_logp(**COMPILE_FAST)(scaled),
                               logp(scaled), rtol=1e-12)  # fmt: skip


def _laplace_sds(model, point, h=1e-5):
    """Marginal sds of the Laplace approximation at ``point`` (flat, in value-variable
    order): the Hessian by central differences of the model's gradient."""
    dlogp = model.compile_dlogp(jacobian=True, **COMPILE_FAST)
    names = [v.name for v in model.value_vars]
    sizes = [int(np.size(point[n])) for n in names]
    flat = np.concatenate([np.ravel(point[n]) for n in names])

    def grad(x):
        parts = np.split(x, np.cumsum(sizes)[:-1])
        return dlogp({n: p.reshape(np.shape(point[n])) for n, p in zip(names, parts, strict=True)})

    step = h * np.maximum(1.0, np.abs(flat))
    hessian = np.stack([(grad(flat + e) - grad(flat - e)) / (2 * e.sum())
                        for e in np.diag(step)])  # fmt: skip
    return np.sqrt(np.diag(np.linalg.inv(-0.5 * (hessian + hessian.T))))


@pytest.mark.parametrize("covariance_type", FAMILIES)
def test_unit_coordinates_have_posterior_sds_near_target(covariance_type):
    """The EM standard errors are the Laplace approximation's: in the sampler's coordinates
    the posterior sds at the EM solution are close to POSTERIOR_SD (the sds' and
    correlations' less closely: EM's prior widens the smallest variances a little, and
    the curvature at its solution is then lower)."""
    from bayesgmm.inference.coordinates import POSTERIOR_SD
    from bayesgmm.inference.starts import em_start

    _, spec, em, model, _ = _model_with_units(covariance_type)
    point = _unconstrained(model, em_start(em, spec))
    sds = _laplace_sds(model, point) / POSTERIOR_SD
    bounds = {"weights": (0.8, 1.25), "means_z": (0.8, 1.25), "sds_z": (0.7, 2.0),
              "chol_corr": (0.7, 2.0)}  # fmt: skip
    at = 0
    for rv in model.free_RVs:
        n = int(np.size(point[model.rvs_to_values[rv].name]))
        lo, hi = bounds[rv.name]
        assert lo < sds[at : at + n].min() and sds[at : at + n].max() < hi, (rv.name, sds)
        at += n
    # without the units, the posterior sds of the coordinates spread over a decade and more
    plain = build_model(np.asarray(model["data"].get_value()), spec=spec)
    plain_sds = _laplace_sds(plain, _unconstrained(plain, em_start(em, spec)))
    assert plain_sds.max() / plain_sds.min() > 4 * sds.max() / sds.min()


# the sds' prior enters through PyTensor, not the fast likelihood: HalfStudentT with the
# full family by default, with the others in the slow step
@pytest.mark.parametrize(
    ("covariance_type", "sds"),
    [(c, "HalfNormal") for c in FAMILIES]
    + [("full", "HalfStudentT")]
    + [pytest.param(c, "HalfStudentT", marks=pytest.mark.slow) for c in FAMILIES[1:]],
)
def test_fast_log_density_with_units_matches_model(covariance_type, sds):
    pytest.importorskip("numpyro")
    import jax
    import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the sampler uses)

    from bayesgmm.inference.jaxgraph import model_functions
    from bayesgmm.inference.starts import em_start

    priors = {"sds": Prior(sds, sigma=1.0, **({"nu": 4.0} if sds == "HalfStudentT" else {}))}
    _, spec, em, model, _ = _model_with_units(covariance_type, priors=priors)
    functions, shared = model_functions(model, spec)
    args = functions.prepare(tuple(np.asarray(s.get_value()) for s in shared))
    logp, dlogp = (
        model.compile_logp(jacobian=True, **COMPILE_FAST),
        model.compile_dlogp(jacobian=True, **COMPILE_FAST),
    )
    grad = jax.jit(jax.value_and_grad(functions.logp))
    for seed in range(3):  # around the EM solution, five standard errors out
        point = _unconstrained(model, em_start(em, spec), jitter=0.05, seed=seed)
        value, g = grad(point, args)
        np.testing.assert_allclose(float(value), logp(point), rtol=1e-8, atol=1e-8)
        flat = np.concatenate([np.ravel(g[v.name]) for v in model.value_vars])
        np.testing.assert_allclose(flat, dlogp(point), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("covariance_type", "K"), [(f, 3) for f in FAMILIES] + [("full", 1)])
def test_any_units_leave_the_density_of_a_constrained_point_unchanged(covariance_type, K):
    """``model.logp(jacobian=False)`` at one constrained point is the same whatever the
    units, and the Jacobian term moves by exactly the log of the units used."""
    from bayesgmm.inference.coordinates import corr_coordinate_rows, unit_name
    from bayesgmm.inference.starts import jittered_starts

    X, spec = make_spec(_three_clusters(2), K, covariance_type=covariance_type)
    model = build_model(X, spec=spec)
    logp = model.compile_logp(jacobian=False, **COMPILE_FAST)
    logp_jac = model.compile_logp(jacobian=True, **COMPILE_FAST)
    ones = model.initial_point()
    rng = np.random.default_rng(3)
    constrained = jittered_starts(model, _point_values(model, ones), 1, 0.5, rng)[0]
    at_ones = _unconstrained(model, constrained)
    reference, jac_ones = logp(at_ones), logp_jac(at_ones) - logp(at_ones)
    for _ in range(2):
        log_units = 0.0
        for rv in model.free_RVs:
            shape = model[unit_name(rv.name)].get_value().shape
            unit = np.exp(rng.uniform(-4.0, 4.0, size=shape))
            model[unit_name(rv.name)].set_value(unit)
            used = unit[..., corr_coordinate_rows(2)] if rv.name == "chol_corr" else unit
            log_units += float(np.sum(np.log(used)))
        scaled = _unconstrained(model, constrained)
        assert not np.allclose(scaled["means_z_scaled__"], at_ones["means_z_scaled__"])
        np.testing.assert_allclose(logp(scaled), reference, rtol=1e-10)
        jac = logp_jac(scaled) - logp(scaled)
        np.testing.assert_allclose(jac, jac_ones + log_units, rtol=1e-9, atol=1e-9)


def _point_values(model, point):
    """The constrained values of the free variables at an unconstrained ``point``."""
    return {rv.name: model.rvs_to_transforms[rv].backward(
        pt.as_tensor(point[model.rvs_to_values[rv].name]), *rv.owner.inputs).eval()
        for rv in model.free_RVs}  # fmt: skip


@pytest.mark.parametrize("covariance_type", FAMILIES)
@pytest.mark.parametrize("K", [1, 2])
def test_standard_errors_have_the_coordinates_shapes_for_every_family(covariance_type, K):
    from bayesgmm.core.em import fit_em
    from bayesgmm.inference.coordinates import POSTERIOR_SD, set_coordinate_units
    from bayesgmm.inference.starts import em_start

    X, spec = make_spec(_three_clusters(3)[:240], K, covariance_type=covariance_type)
    em = fit_em(X, K, covariance_type=covariance_type,
                prior=spec.priors.to_em_prior(covariance_type), random_seed=0)  # fmt: skip
    model = build_model(X, spec=spec)
    units = set_coordinate_units(model, spec, em)
    point = _unconstrained(model, em_start(em, spec))
    for rv in model.free_RVs:
        unit, value = units[rv.name], point[model.rvs_to_values[rv].name]
        assert np.all(np.isfinite(unit)) and np.all(unit > 0), rv.name
        if rv.name == "chol_corr":  # one unit per row of the factor
            assert unit.shape == (*value.shape[:-1], 3)
        else:
            assert unit.shape == value.shape, rv.name
    assert units["weights"].shape == (K - 1,)
    if K == 2:  # the one coordinate is (log w0 - log w1) / 2: variance (1/n0 + 1/n1) / 4
        counts = em.weights / em.weights.sum() * len(X) + spec.priors.weights_a
        expected = np.sqrt(np.sum(1.0 / counts) / 4.0) / POSTERIOR_SD
        np.testing.assert_allclose(units["weights"], [expected], rtol=1e-12)


def test_units_stay_ones_with_more_parameters_than_points():
    from bayesgmm import fit_em
    from bayesgmm.inference.coordinates import set_coordinate_units, unit_name

    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(size=(12, 5)), rng.normal(size=(12, 5)) + 4.0]  # 41 parameters
    X, spec = make_spec(X, 2, covariance_type="full")
    em = fit_em(X, 2, random_seed=0)
    model = build_model(X, spec=spec)
    assert em.n_parameters() > len(X)
    assert set_coordinate_units(model, spec, em) == {}
    for rv in model.free_RVs:
        np.testing.assert_array_equal(model[unit_name(rv.name)].get_value(), 1.0)
