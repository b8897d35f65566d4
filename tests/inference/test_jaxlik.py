"""The NumPyro backend's fast log density equals the PyMC model's, value and gradient."""

import numpy as np
import pytest

pytest.importorskip("numpyro")

import jax
import jax.numpy as jnp
import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the sampler uses)
from conftest import COMPILE_FAST

from bayesgmm import build_model, make_spec
from bayesgmm.core.families import COVARIANCE_TYPES, MCLUST_MODELS, UNIVARIATE_MODELS, family
from bayesgmm.inference.jaxgraph import model_functions


def _data(D: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(3, D)) + 10.0
    return np.concatenate(
        [c + rng.normal(scale=[0.5 + d for d in range(D)], size=(25, D)) for c in centres]
    )


CASES = [(c, D) for c in COVARIANCE_TYPES for D in (1, 3)]
# mclust's other families (their covariance argument in the full, diag or spherical form)
# one of each form by default (diagonal, LKJ, rotation; univariate), the others slow (up
# to a minute each to compile the model's gradient in PyTensor with an empty cache)
DEFAULT_EIGEN = ("EEI", "VEE", "VEV", "E")
CASES += [
    (c, D) if c in DEFAULT_EIGEN else pytest.param(c, D, marks=pytest.mark.slow)
    for c, D in [(c, 3) for c in MCLUST_MODELS if family(c).parameterisation == "eigen"]
    + [(c, 1) for c in UNIVARIATE_MODELS]
]
# the matrix-product path (more than 16 features: 21 here)
CASES += [("diag", 10)]
# correlated, with that path (21 features) and the blocked triangular inverse (D > 8):
# ~30 s each to compile the model's own logp in PyMC
CASES += [pytest.param("full", D, marks=pytest.mark.slow) for D in (5, 10)]


@pytest.mark.parametrize(("covariance_type", "D"), CASES)
def test_fast_log_density_matches_model_logp_and_gradient(covariance_type, D):
    X, spec = make_spec(_data(D, D), 3, covariance_type=covariance_type)
    model = build_model(X, spec=spec)
    functions, shared = model_functions(model, spec)
    args = functions.prepare(tuple(np.asarray(s.get_value()) for s in shared))
    logp = model.compile_logp(jacobian=True, **COMPILE_FAST)
    dlogp = model.compile_dlogp(jacobian=True, **COMPILE_FAST)
    grad = jax.jit(jax.value_and_grad(functions.logp))
    rng = np.random.default_rng(11)
    start = model.initial_point()
    for i in range(6):  # random points on the unconstrained scale
        point = {k: v + rng.normal(scale=0.7, size=np.shape(v)) for k, v in start.items()}
        if i == 5:  # tight components (sds / 50): large precisions, far-away points
            point = {k: v - 4.0 if "log__" in k else v for k, v in point.items()}
        value, g = grad(point, args)
        expected = logp(point)
        assert np.isfinite(expected)
        np.testing.assert_allclose(float(value), expected, rtol=1e-8, atol=1e-8)
        flat = np.concatenate([np.ravel(g[v.name]) for v in model.value_vars])
        np.testing.assert_allclose(flat, dlogp(point), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("D", [1, 5, 8, 9, 23, 50])
def test_tril_inverse_matches_triangular_solve_value_and_gradient(D):
    from jax.scipy.linalg import solve_triangular

    from bayesgmm.inference.jaxlik import tril_inverse

    rng = np.random.default_rng(D)
    # lower factors with a junk upper triangle (ignored, as by a triangular solve)
    chol = rng.normal(scale=0.3, size=(3, D, D)) + np.eye(D) * rng.uniform(0.5, 2.0, (3, 1, 1))
    weights = rng.normal(size=(3, D, D))

    def reference(L):
        return solve_triangular(L, np.broadcast_to(np.eye(D), L.shape), lower=True)

    np.testing.assert_allclose(tril_inverse(chol), reference(chol), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(np.triu(tril_inverse(chol), 1), 0.0)

    def loss(inverse):
        return lambda L: (jnp.tanh(inverse(L)) * weights).sum()

    np.testing.assert_allclose(
        jax.grad(loss(tril_inverse))(chol),
        jax.grad(loss(reference))(chol),
        rtol=1e-9,
        atol=1e-11,
    )


@pytest.mark.parametrize(("K", "F"), [(1, 3), (5, 15), (5, 16), (3, 17), (40, 30)])
def test_linear_lse_value_and_gradient_match_autodiff_of_logsumexp(K, F):
    """Every layout path of the likelihood kernel (elementwise or matrix product, rows
    or reductions over components) against plain autodiff of ``logsumexp``."""
    from bayesgmm.inference.jaxlik import Features, _linear_lse

    rng = np.random.default_rng(K * F)
    points = rng.normal(size=(200, F))
    feats = Features(rows=jnp.asarray(points.T), points=jnp.asarray(points))
    coef = jnp.asarray(rng.normal(scale=2.0, size=(K, F)))

    def reference(c):
        return jax.scipy.special.logsumexp(c @ points.T, axis=0).sum()

    value, grad = jax.jit(jax.value_and_grad(_linear_lse, argnums=1))(feats, coef)
    np.testing.assert_allclose(value, reference(coef), rtol=1e-12)
    np.testing.assert_allclose(grad, jax.grad(reference)(coef), rtol=1e-10, atol=1e-12)
