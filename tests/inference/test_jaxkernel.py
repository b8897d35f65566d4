"""The compiled likelihood kernel (``jaxkernel.cc`` through JAX's FFI) computes what plain
JAX autodiff of ``logsumexp`` computes; it is used where it serves and turned off cleanly."""

import numpy as np
import pytest

pytest.importorskip("numpyro")

import jax
import jax.numpy as jnp
import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the sampler uses)

from bayesgmm.inference import jaxkernel
from bayesgmm.inference.jaxkernel import kernel, native_available

needs_compiler = pytest.mark.skipif(
    jaxkernel._compiler() is None, reason="no C++ compiler: the XLA program serves instead"
)


def _reference(coef, rows):
    def total(c):
        return jax.scipy.special.logsumexp(c @ rows, axis=0).sum()

    return jax.jit(jax.value_and_grad(total))(coef)


@needs_compiler
@pytest.mark.parametrize(
    ("K", "F", "N"),
    [(1, 3, 5), (3, 6, 64), (5, 15, 1000), (5, 15, 10_007), (2, 16, 63), (7, 21, 130)],
)
def test_kernel_matches_autodiff_of_logsumexp(K, F, N):
    """Blocks of 64 points and the points after the last block; one component; log terms
    that differ by hundreds (memberships that underflow) and a component of weight 0."""
    assert native_available(K, F)  # a compiler is here: the kernel itself is checked
    rng = np.random.default_rng(K * F + N)
    rows = rng.normal(scale=3.0, size=(F, N))
    rows[0] = 1.0
    coef = rng.normal(scale=2.0, size=(K, F))
    if K > 2:
        coef[1, 0] = -np.inf  # log(0): a component that holds nothing
    rows, coef = jnp.asarray(rows), jnp.asarray(coef)
    value, grad = jax.jit(kernel(K, F))(coef, rows)
    ref_value, ref_grad = _reference(coef, rows)
    np.testing.assert_allclose(value, ref_value, rtol=1e-12)
    finite = np.isfinite(np.asarray(coef[:, :1]))  # autodiff gives NaN for -inf's row
    np.testing.assert_allclose(
        np.where(finite, grad, 0.0), np.where(finite, ref_grad, 0.0), rtol=1e-10, atol=1e-9
    )
    assert np.all(np.asarray(grad)[~finite[:, 0]] == 0.0)


@needs_compiler
def test_kernel_propagates_nan_and_maps_over_a_batch():
    rng = np.random.default_rng(0)
    rows = jnp.asarray(rng.normal(size=(6, 200)))
    coefs = jnp.asarray(rng.normal(size=(3, 4, 6)))
    call = kernel(4, 6)
    values, grads = jax.jit(jax.vmap(call, in_axes=(0, None)))(coefs, rows)
    for c, v, g in zip(coefs, values, grads, strict=True):
        ref_v, ref_g = _reference(c, rows)
        np.testing.assert_allclose(v, ref_v, rtol=1e-12)
        np.testing.assert_allclose(g, ref_g, rtol=1e-10, atol=1e-12)
    value, _ = jax.jit(call)(coefs[0].at[2, 3].set(jnp.nan), rows)
    assert np.isnan(value)


@needs_compiler
def test_the_sampler_likelihood_uses_the_kernel_where_it_serves():
    """Without weights or labels the custom VJP's forward pass is the kernel's one call;
    with frequency weights it stays the XLA program."""
    from bayesgmm.inference.jaxlik import Features, _linear_lse

    rng = np.random.default_rng(1)
    points = jnp.asarray(rng.normal(size=(300, 10)))
    coef = jnp.asarray(rng.normal(size=(3, 10)))
    plain = Features(rows=points.T, points=points)
    weighted = plain._replace(weights=jnp.ones(300))
    grad = jax.value_and_grad(_linear_lse, argnums=1)

    def calls(feats):
        return str(jax.make_jaxpr(grad)(feats, coef)).count("ffi_call")

    assert calls(plain) == 1
    assert calls(weighted) == 0
    np.testing.assert_allclose(
        jax.jit(grad)(plain, coef)[1], jax.jit(grad)(weighted, coef)[1], rtol=1e-10
    )


def test_kernel_off_by_setting_size_or_without_a_compiler(monkeypatch):
    monkeypatch.setenv(jaxkernel.NATIVE_ENV, "0")
    assert kernel(5, 15) is None
    monkeypatch.delenv(jaxkernel.NATIVE_ENV)
    assert kernel(2, jaxkernel.MAX_TERMS) is None  # too many coefficients to unroll
    # a machine without a compiler: no kernel, and the XLA program serves
    monkeypatch.setattr(jaxkernel, "_compiler", lambda: None)
    monkeypatch.setattr(jaxkernel, "_TARGETS", {})
    assert kernel(5, 15) is None
    assert jaxkernel._TARGETS == {(5, 15): None}
