"""The NumPyro backend's fast log density equals the PyMC model's, value and gradient."""

import numpy as np
import pytest

pytest.importorskip("numpyro")

import jax
import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the sampler uses)

from bayesgmm import build_model, make_spec
from bayesgmm.core.families import COVARIANCE_TYPES
from bayesgmm.inference.jaxgraph import model_functions


def _data(D: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(3, D)) + 10.0
    return np.concatenate(
        [c + rng.normal(scale=[0.5 + d for d in range(D)], size=(25, D)) for c in centres]
    )


@pytest.mark.parametrize("D", [1, 3])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fast_log_density_matches_model_logp_and_gradient(covariance_type, D):
    X, spec = make_spec(_data(D, D), 3, covariance_type=covariance_type)
    model = build_model(X, spec=spec)
    functions, shared = model_functions(model, spec)
    args = functions.prepare(tuple(np.asarray(s.get_value()) for s in shared))
    logp = model.compile_logp(jacobian=True)
    dlogp = model.compile_dlogp(jacobian=True)
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
