"""The Bayesian model of mclust's eigen families: exact likelihood, the family's structure,
EM starts, the uniform prior on rotations, and the sampler's coordinates."""

import numpy as np
import pytensor.tensor as pt
import pytest
import scipy.stats as st
from conftest import COMPILE_FAST, model_values
from scipy.special import logsumexp

from bayesgmm import build_model, fit_em, make_spec
from bayesgmm.core.eigen_families import constrained_covariances
from bayesgmm.core.eigen_params import cayley, cayley_inverse, draw_orientation, skew
from bayesgmm.core.families import MCLUST_MODELS, family

EIGEN = [n for n in MCLUST_MODELS if family(n).parameterisation == "eigen"]


def _rotated_clusters(D: int = 3, seed: int = 0, n: int = 150, units: float = 100.0) -> np.ndarray:
    """Three well separated clusters, each with its own rotation and elongation, in
    columns of very different units."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(3):
        Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
        sd = np.geomspace(3.0, 0.5, D) * (1.0 + 0.5 * k)
        out.append(rng.normal(size=(n, D)) * sd @ Q.T + rng.normal(scale=25.0, size=D))
    return np.concatenate(out) * np.geomspace(1.0, units, D)


def _random_point(model, seed, scale=0.7):
    rng = np.random.default_rng(seed)
    return {k: v + scale * rng.standard_normal(v.shape) for k, v in model.initial_point().items()}


@pytest.mark.parametrize("covariance_type", [*EIGEN, "E", "V"])
@pytest.mark.parametrize("K", [1, 3])
def test_loglik_matches_scipy_and_covariances_are_in_the_family(covariance_type, K):
    fam = family(covariance_type)
    D = 1 if fam.univariate else 3
    X = _rotated_clusters(D)[:90]
    model = build_model(X, K, covariance_type)
    for seed in (11, 12):
        point = _random_point(model, seed)
        pointwise = model.compile_logp(vars=[model["x"]], sum=False, **COMPILE_FAST)(point)[0]
        weights, means, cov = model_values(model, point)
        ref = logsumexp(
            [np.log(weights[k]) + st.multivariate_normal(means[k], cov[k]).logpdf(X)
             for k in range(K)],
            axis=0,
        )  # fmt: skip
        np.testing.assert_allclose(pointwise, ref, rtol=0, atol=1e-8)
        # in the family, on the model's standardised scale: its own M-step (maximum
        # likelihood from the covariances as scatter matrices) returns them unchanged
        cov_z = cov / np.outer(model["scale"].get_value(), model["scale"].get_value())
        m = np.linspace(10.0, 30.0, K)
        if fam.per_component:
            again = constrained_covariances(fam.structure, cov_z * m[:, None, None], m, cov_z)
        else:
            np.testing.assert_allclose(cov_z, cov_z[:1].repeat(K, 0), rtol=1e-12)
            again = constrained_covariances(
                fam.structure.replace("E", "V"), cov_z[:1] * m.sum(), m.sum()[None], cov_z[:1]
            )
        np.testing.assert_allclose(again, cov_z if fam.per_component else cov_z[:1],
                                   rtol=1e-6, atol=1e-9)  # fmt: skip
        if K > 1 and fam.volume == "V" and fam.per_component:
            vol = np.linalg.slogdet(cov_z)[1]
            assert np.ptp(vol) > 1e-3  # the volumes do vary


@pytest.mark.parametrize("covariance_type", EIGEN)
def test_em_start_reproduces_the_em_covariances(covariance_type):
    from bayesgmm.inference.starts import em_start, jittered_unconstrained_starts

    X, spec = make_spec(_rotated_clusters(), 3, covariance_type=covariance_type)
    em = fit_em(X, 3, covariance_type=covariance_type, random_seed=0)
    model = build_model(X, spec=spec)
    start = em_start(em, spec)
    point = jittered_unconstrained_starts(model, start, 1, 0.0, np.random.default_rng(0))[0]
    (cov,) = model_values(model, point, ["covariance"])
    np.testing.assert_allclose(cov, em.covariance_matrices(), rtol=1e-7)
    if "orientation_z" in start:  # aligned near the identity: moderate coordinates
        assert np.abs(start["orientation_z"]).max() < 2.5


def test_cayley_coordinates_and_the_uniform_prior_on_rotations():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(5, 6))
    Q = cayley(s, 4)
    np.testing.assert_allclose(Q @ np.swapaxes(Q, 1, 2), np.broadcast_to(np.eye(4), Q.shape),
                               atol=1e-12)  # fmt: skip
    np.testing.assert_allclose(np.linalg.det(Q), 1.0)
    np.testing.assert_allclose(cayley_inverse(Q), s, rtol=1e-9)
    # draws are uniform on SO(3): every column uniform on the sphere (each coordinate
    # uniform on [-1, 1], Archimedes)
    Q = cayley(draw_orientation(3, (4000,), rng), 3)
    for col in range(3):
        assert st.kstest(Q[:, 2, col], st.uniform(-1, 2).cdf).pvalue > 1e-3
    # the model's prior is the density of those draws: in 2-d the angle 2 atan(s) is
    # uniform, the density of s Cauchy; in d dims |I + S|^-(d-1)
    from bayesgmm.inference.eigen_model import haar_logp

    s2 = np.linspace(-5, 5, 7)[:, None]
    np.testing.assert_allclose(haar_logp(pt.as_tensor(s2), 2).eval(), -np.log1p(s2[:, 0] ** 2))
    s3 = rng.normal(size=(4, 3))
    expected = -2.0 * np.log(np.linalg.det(np.eye(3) + skew(s3, 3)))
    np.testing.assert_allclose(haar_logp(pt.as_tensor(s3), 3).eval(), expected, rtol=1e-12)


def test_orientation_prior_draws_through_the_model_are_uniform():
    import pymc as pm

    model = build_model(_rotated_clusters(2), 2, "VEV")
    draws = pm.draw(model["orientation_z"], draws=3000, random_seed=1)  # (3000, 2, 1)
    angle = 2.0 * np.arctan(draws.ravel())
    assert st.kstest(angle, st.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3


def _map_point(model, point):
    """The model's posterior mode from ``point`` (EM's MAP solution has EM's prior: with
    columns in units 100 times apart, the inverse-Wishart's pseudo-scatter moves the small
    variances several standard errors from this model's mode)."""
    from scipy.optimize import minimize

    names = [v.name for v in model.value_vars]
    shapes = [np.shape(point[n]) for n in names]
    sizes = [int(np.prod(s, dtype=int)) for s in shapes]
    logp, dlogp = model.compile_logp(**COMPILE_FAST), model.compile_dlogp(**COMPILE_FAST)

    def unflat(x):
        parts = np.split(x, np.cumsum(sizes)[:-1])
        return {n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)}

    x0 = np.concatenate([np.ravel(point[n]) for n in names])
    res = minimize(lambda x: -logp(unflat(x)), x0, jac=lambda x: -dlogp(unflat(x)),
                   method="BFGS", options={"gtol": 1e-6, "maxiter": 2000})  # fmt: skip
    return unflat(res.x)


def _family_clusters(structure: str, D: int = 3, seed: int = 0, n: int = 150) -> np.ndarray:
    """Three well separated clusters whose covariances are in the family ``structure``
    (the family's maximum-likelihood fit to random covariances), columns 3 times apart:
    data the family describes, so that its posterior is near the large-sample one."""
    rng = np.random.default_rng(seed)
    cov = []
    for k in range(3):
        Q, _ = np.linalg.qr(rng.normal(size=(D, D)))
        sd = np.geomspace(3.0, 0.5, D) * (1.0 + 0.5 * k)
        cov.append(Q * sd**2 @ Q.T)
    cov, m = np.stack(cov), np.full(3, float(n))
    fam = family(structure)
    if fam.per_component:
        cov = constrained_covariances(structure, cov * m[:, None, None], m, cov)
    else:
        pooled = constrained_covariances(structure.replace("E", "V"), cov.sum(0, keepdims=True)
                                         * n, m.sum()[None], cov[:1])  # fmt: skip
        cov = np.repeat(pooled, 3, axis=0)
    chol = np.linalg.cholesky(cov)
    out = [rng.normal(size=(n, D)) @ chol[k].T + rng.normal(scale=25.0, size=D) for k in range(3)]
    return np.concatenate(out) * np.geomspace(1.0, 3.0, D)


# 3-8 s each with warm compile caches (a BFGS search and a finite-difference Hessian
# through PyTensor): one rotation (VEV) by default, the others in the slow step
NEAR_TARGET = ["VEV"] + [pytest.param(c, marks=pytest.mark.slow)
                         for c in ("VVE", "EEI", "EVI", "VEE", "EVV", "EVE")]  # fmt: skip


@pytest.mark.parametrize("covariance_type", NEAR_TARGET)
def test_coordinates_units_have_posterior_sds_near_target(covariance_type):
    """The eigen parameters' standard errors are close to the Laplace approximation's
    at the posterior mode (as for the other families, at the EM solution), on data the
    family describes."""
    from test_model import _laplace_sds, _unconstrained

    from bayesgmm.inference.coordinates import POSTERIOR_SD, set_coordinate_units
    from bayesgmm.inference.starts import em_start

    X, spec = make_spec(_family_clusters(covariance_type), 3, covariance_type=covariance_type)
    em = fit_em(X, 3, covariance_type=covariance_type,
                prior=spec.priors.to_em_prior(covariance_type), random_seed=0)  # fmt: skip
    model = build_model(X, spec=spec)
    units = set_coordinate_units(model, spec, em)
    point = _map_point(model, _unconstrained(model, em_start(em, spec)))
    for rv in model.free_RVs:
        assert np.all(np.isfinite(units[rv.name])) and np.all(units[rv.name] > 0)
    sds = _laplace_sds(model, point) / POSTERIOR_SD
    at = 0
    for rv in model.free_RVs:
        n = int(np.size(point[model.rvs_to_values[rv].name]))
        part = sds[at : at + n]
        assert 0.4 < part.min() and part.max() < 2.5, (rv.name, part)
        at += n
