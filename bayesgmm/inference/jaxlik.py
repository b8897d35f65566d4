"""The mixture likelihood in JAX, with a hand-derived gradient, for the NumPyro backend.

The PyMC model (:mod:`bayesgmm.inference.model`) is the declaration of record: its priors,
transforms and Jacobians reach the sampler through PyTensor's JAX backend unchanged, and
so do the likelihood's inputs (the weights, standardised means and covariance factors as
functions of the unconstrained parameters). Only the likelihood term itself,

``sum_i logsumexp_k [log w_k + log N(z_i | mu_k, Sigma_k)] - N sum_d log scale_d``,

is evaluated here instead of through the PyTensor graph. Every component's log density
is linear in fixed features of a point -- ``1``, ``z`` and the products ``z_a z_b``
(``a <= b``; the squares ``z_a**2`` alone for uncorrelated families) -- with coefficients
from the component's weight, mean and precision:

``log w + log N(z | mu, Sigma) = c - z'Pz / 2 + z'P mu``,  ``P = L^-T L^-1`` from the
triangular factor ``L`` (:func:`tril_inverse`; never an inverse of ``Sigma``).

So the features are computed once per dataset (:func:`features`, F per point), and each
evaluation is one (K, F) x (F, N) product, one pass of ``exp`` over the (K, N) log terms
and, for the gradient (a custom VJP: the memberships times the features), one
(K, N) x (N, F) product. Nothing of size N x K x D is formed, and the graph grows like
D**2. The expansion loses digits only when ``z'Pz`` is huge (points thousands of sds
from a component, where that component's membership is zero anyway); on the
standardised scale it agrees with ``model.logp()`` to 1e-8 (``tests/inference/
test_jaxlik.py``, every covariance family).

How the evaluation is laid out for XLA:CPU (each choice measured on N=10,000, K=5, D=4
with jitted loops like ``bench/bench_gradient.py``; together they took that value and
gradient from about 400 to about 270 microseconds): with few features the product is
written as F multiply-adds over (K, N) (40-57 against 66-95 microseconds for the
library's skinny matrix product); the maximum and the sum over components as K - 1
operations on rows of N (XLA's reductions over the short axis: about 4x slower); and
optimisation barriers keep the log terms, their maxima, the ``exp`` pass and the
memberships each materialised once -- without them XLA recomputes the maxima inside the
``exp`` loop (105 against 67 microseconds), or fuses the ``exp`` pass into the library's
(YNNPACK) product, both slower. The gradient's product is formed in the forward pass,
since a sampler always asks for both, against the features stored one row per point
(:class:`Features`).

Where a C++ compiler is at hand, the forward pass without weights or known labels is one
call of a compiled kernel instead (:mod:`bayesgmm.inference.jaxkernel`): the same
arithmetic in one pass over blocks of points, about 1.5-2x faster on the workload above.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesgmm.core.families import CovarianceFamily
from bayesgmm.inference.jaxkernel import kernel

__all__ = [
    "Features",
    "coefficients",
    "features",
    "label_offset",
    "marginal_cov_param",
    "mixture_loglik",
    "pointwise_loglik",
    "tril_inverse",
]

_LOG_2PI = math.log(2.0 * math.pi)


#: Up to this many components, the maximum and the sum over components are written as
#: K - 1 elementwise operations on rows of N (vectorised over the points) rather than as
#: XLA reductions over the short leading axis (slower on CPU, measured).
_ROWS_MAX_K = 32
#: Up to this many features, the (K, F) x (F, N) product is written as F multiply-adds
#: over (K, N), which XLA fuses into one vectorised loop; above, the matrix product.
_ELEMENTWISE_MAX_F = 16
#: Triangular factors up to this size are inverted by unrolled substitution, larger ones
#: by 2 x 2 blocks of matrix products (see :func:`tril_inverse`).
_BASE_D = 8

_barrier = jax.lax.optimization_barrier


class Features(NamedTuple):
    """The points' features, stored both ways (a JAX pytree; see :func:`features`).

    The gradient's product ``memberships @ points`` with one row per point was measured
    2-2.5x faster than the same product against the transpose of ``rows`` (XLA:CPU, the
    library's skinny matrix product; D = 20 and 50), so both layouts are kept: twice the
    memory of the features, once per dataset.
    """

    rows: Any  # (F, N): one row per feature
    points: Any  # (N, F): one row per point
    #: Frequency weights of the points (N,), or None (each counts once): the
    #: likelihood is then ``sum_i w_i logsumexp_k (...)``.
    weights: Any = None
    #: Known labels as (K, N) terms added to the log terms (0, or -inf for the
    #: components a point's label rules out; :mod:`bayesgmm.core.labels`), or None.
    offset: Any = None

    @property
    def shape(self) -> tuple[int, int]:
        """``(F, N)``, the shape of ``rows`` (features x points)."""
        return self.rows.shape


def _log_terms(coef, feats, offset=None):
    """``coef @ feats`` (K, N): every component's log term at every point (plus the
    known labels' ``offset``, when given)."""
    F = feats.shape[0]
    if F > _ELEMENTWISE_MAX_F:
        lp = coef @ feats
    else:
        lp = coef[:, :1] * feats[:1]
        for f in range(1, F):
            lp = lp + coef[:, f : f + 1] * feats[f : f + 1]
    return lp if offset is None else lp + offset


def _rows(op, x):
    """``op``-reduction of ``x`` (K, N) over its first axis, as K - 1 row operations."""
    out = x[0]
    for k in range(1, x.shape[0]):
        out = op(out, x[k])
    return out


def _lse_parts(lp):
    """``top = max_k lp`` (N,), ``e = exp(lp - top)`` (K, N) and ``total = e.sum(0)``."""
    if lp.shape[0] > _ROWS_MAX_K:
        top = _barrier(lp.max(axis=0))
        e = _barrier(jnp.exp(lp - top))
        return top, e, e.sum(axis=0)
    top = _barrier(_rows(jnp.maximum, lp))
    e = _barrier(jnp.exp(lp - top))  # the one pass of exp
    return top, e, _rows(jnp.add, e)


def _linear_fwd(feats: Features, coef):
    if feats.weights is None and feats.offset is None and coef.dtype == feats.rows.dtype:
        compiled = kernel(*coef.shape)  # the same in one pass (jaxkernel), where it serves
        if compiled is not None and coef.dtype == jnp.float64:
            return compiled(coef, feats.rows)
    top, e, total = _lse_parts(_barrier(_log_terms(coef, feats.rows, feats.offset)))
    if feats.weights is None:
        resp = _barrier(e * (1.0 / total))  # memberships (K, N)
        # the gradient's product here: the residual is (K, F), not the (K, N) memberships
        return (top + jnp.log(total)).sum(), resp @ feats.points
    resp = _barrier(e * (feats.weights / total))  # memberships times the weights
    return (top + jnp.log(total)) @ feats.weights, resp @ feats.points


@jax.custom_vjp
def _linear_lse(feats: Features, coef):
    """``sum_i w_i logsumexp_k (coef_k . f_i)`` for :class:`Features` ``feats`` (``w_i = 1``
    without weights), ``coef`` (K, F)."""
    lse = jax.scipy.special.logsumexp(_log_terms(coef, feats.rows, feats.offset), axis=0)
    return lse.sum() if feats.weights is None else lse @ feats.weights


def _linear_bwd(grad_coef, g):
    return None, g * grad_coef


_linear_lse.defvjp(_linear_fwd, _linear_bwd)


def _tril_inverse_small(chol):
    """Inverse of lower triangular factors (..., D, D) by forward substitution, one row
    at a time (D steps of a vector-matrix product)."""
    D = chol.shape[-1]
    eye = jnp.eye(D, dtype=chol.dtype)
    rows = []
    for i in range(D):
        row = eye[i]
        if i:
            done = jnp.stack(rows, axis=-2)  # (..., i, D)
            row = row - jnp.einsum("...j,...jd->...d", chol[..., i, :i], done)
        rows.append(row / chol[..., i, i : i + 1])
    return jnp.stack(rows, axis=-2)


def _tril_inverse(chol):
    D = chol.shape[-1]
    if D <= _BASE_D:
        return _tril_inverse_small(chol)
    h = D // 2
    top_inv = _tril_inverse(chol[..., :h, :h])
    bottom_inv = _tril_inverse(chol[..., h:, h:])
    lower_left = -(bottom_inv @ chol[..., h:, :h]) @ top_inv
    zeros = jnp.zeros((*chol.shape[:-2], h, D - h), chol.dtype)
    return jnp.concatenate(
        [
            jnp.concatenate([top_inv, zeros], axis=-1),
            jnp.concatenate([lower_left, bottom_inv], axis=-1),
        ],
        axis=-2,
    )


@jax.custom_jvp
def tril_inverse(chol):
    """The inverse of lower triangular factors ``chol`` (..., D, D), from matrix products
    only (the strict upper triangle of ``chol`` is ignored, as in a triangular solve).

    ``[[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]``, recursively down to
    blocks of ``_BASE_D`` rows solved by substitution; the derivative is
    ``-X dL X`` (``X`` the inverse). XLA compiles these products itself; a triangular
    solve goes to LAPACK's ``trsm`` instead, whose OpenBLAS threads stall when the
    machine is busy (measured on 2 busy cores: a batched 3 x 50 x 50 solve 0.8 ms, 0.12
    ms with one OpenBLAS thread; ``bench/bench_gradient.py``'s D = 50 value and gradient
    7-54 ms before this function, 1.6-2.3 ms after).
    """
    return _tril_inverse(chol)


@tril_inverse.defjvp
def _tril_inverse_jvp(primals, tangents):
    (chol,), (dchol,) = primals, tangents
    inv = tril_inverse(chol)
    return inv, -(inv @ jnp.tril(dchol)) @ inv


def features(data, loc, scale, fam: CovarianceFamily, weights=None, offset=None) -> Features:
    """The points' features: a one, ``z``, then ``z_a z_b`` for ``a <= b`` (correlated
    families) or ``z_a**2`` (the others), ``z = (data - loc) / scale``; ``F`` of them
    per point, as :class:`Features` (``.shape`` is ``(F, N)``), with the points'
    frequency ``weights`` (N,) and known labels' ``offset`` (K, N) when given."""
    z = (data - loc) / scale
    if fam.correlated:
        a, b = np.triu_indices(z.shape[1])
        second = z[:, a] * z[:, b]
    else:
        second = jnp.square(z)
    points = jnp.concatenate([jnp.ones((z.shape[0], 1), z.dtype), z, second], axis=1)
    return Features(rows=points.T, points=points, weights=weights, offset=offset)


def label_offset(labels, n_components: int):
    """The known labels' terms (K, N): ``-inf`` where a point's label rules a component
    out, else 0 (``labels`` (N,), ``-1`` for unknown)."""
    other = (labels >= 0)[None, :] & (labels[None, :] != jnp.arange(n_components)[:, None])
    return jnp.where(other, -jnp.inf, 0.0)


def coefficients(weights, means_z, cov_param, fam: CovarianceFamily):
    """Every component's log term as ``coef @ features``: ``coef`` (K, F), the constant
    (weights included) first (arguments as for :func:`mixture_loglik`)."""
    K, D = means_z.shape
    const = jnp.log(weights) - 0.5 * D * _LOG_2PI
    if fam.correlated:
        chol_cov = jnp.broadcast_to(cov_param, (K, D, D))
        inv_chol = tril_inverse(chol_cov)  # L^-1, (K, D, D)
        prec = jnp.swapaxes(inv_chol, 1, 2) @ inv_chol  # (K, D, D): L^-T L^-1
        white_mean = jnp.einsum("kij,kj->ki", inv_chol, means_z)  # L^-1 mu
        a, b = np.triu_indices(D)
        quad = jnp.where(a == b, -0.5, -1.0) * prec[:, a, b]  # z_a z_b counted once
        linear = jnp.einsum("kji,kj->ki", inv_chol, white_mean)  # P mu = L^-T L^-1 mu
        logdet = jnp.log(jnp.diagonal(chol_cov, axis1=1, axis2=2)).sum(axis=1)
        c = const - logdet - 0.5 * jnp.square(white_mean).sum(axis=1)
    else:
        sds = jnp.broadcast_to(cov_param[:, None] if fam.isotropic else cov_param, (K, D))
        prec = 1.0 / jnp.square(sds)
        quad, linear = -0.5 * prec, means_z * prec
        c = const - jnp.log(sds).sum(axis=1) - 0.5 * (jnp.square(means_z) * prec).sum(axis=1)
    return jnp.concatenate([c[:, None], linear, quad], axis=1)


def marginal_cov_param(cov_param, obs: np.ndarray, n_features: int, fam: CovarianceFamily):
    """The covariance argument of the marginal of coordinates ``obs`` (as
    :func:`bayesgmm.inference.gaussian_logp.marginal_cov_param`): the Cholesky factor of
    ``L[o, :] L[o, :]^T``, or the sds of ``obs``."""
    if len(obs) == n_features:
        return cov_param
    if not fam.correlated:
        return cov_param if fam.isotropic else cov_param[..., obs]
    rows = cov_param[..., obs, :]
    return jnp.linalg.cholesky(rows @ jnp.swapaxes(rows, -1, -2))


def _coefficients(weights, means_z, cov_param, fam: CovarianceFamily, scale, background):
    """:func:`coefficients`, and with a ``background`` (``log(1 / V)`` in the data's units;
    ``weights`` then (K + 1,), its weight last) one more row: the constant
    ``log w_0 + log(1 / V) + sum log scale`` (its density on the standardised scale)."""
    if background is None:
        return coefficients(weights, means_z, cov_param, fam)
    coef = coefficients(weights[:-1], means_z, cov_param, fam)
    flat = jnp.log(weights[-1]) + background + jnp.log(scale).sum()
    row = jnp.zeros((1, coef.shape[1]), coef.dtype).at[0, 0].set(flat)
    return jnp.concatenate([coef, row], axis=0)


def mixture_loglik(
    weights, means_z, cov_param, feats, n_obs: int, scale, fam: CovarianceFamily, background=None
):
    """The model's log-likelihood of the data (the ``x`` term of ``model.logp()``).

    Parameters
    ----------
    weights : (K,) or (K + 1,)
        The mixture weights (the background's last, when there is one).
    means_z : (K, D)
        Means on the standardised scale.
    cov_param
        The family's covariance argument of the likelihood (see
        :func:`bayesgmm.inference.gaussian_logp.component_logp_z`): lower Cholesky factors
        (K, D, D) or one shared (D, D), or standard deviations (K, D) or (K,).
    feats : Features
        :func:`features` of the data (with the points' frequency weights, if any).
    n_obs : int or float
        The number of points (the sum of their weights, when weighted).
    scale : (D,)
        The standardisation's scale (its Jacobian, ``N sum log scale``).
    fam : CovarianceFamily
    background : float, optional
        A uniform background-noise component's log density ``log(1 / V)`` in the data's
        units (:mod:`bayesgmm.core.background`): one more row of coefficients, constant
        over the points.
    """
    coef = _coefficients(weights, means_z, cov_param, fam, scale, background)
    return _linear_lse(feats, coef) - n_obs * jnp.log(scale).sum()


def pointwise_loglik(
    weights, means_z, cov_param, feats, scale, fam: CovarianceFamily, background=None
):
    """Each point's mixture log density in the data's units, (N,) (no custom gradient:
    for the posterior's pointwise log-likelihood, not for sampling)."""
    coef = _coefficients(weights, means_z, cov_param, fam, scale, background)
    lp = _log_terms(coef, feats.rows, feats.offset)
    return jax.scipy.special.logsumexp(lp, axis=0) - jnp.log(scale).sum()


def noise_loglik(weights, means_z, cov_param, z, noise_z, fam: CovarianceFamily, offset=None):
    """Each point's mixture log density (N,) on the standardised scale with its known
    error covariance ``noise_z`` (N, D, D): ``log sum_k w_k N(z_i | mu_k, Sigma_k + S_i)``,
    as :func:`bayesgmm.inference.model.noise_loglik` (autodiff; no custom gradient); known
    labels' ``offset`` (K, N) as in :class:`Features`."""
    K, D = means_z.shape
    if fam.correlated:
        cov = cov_param @ jnp.swapaxes(cov_param, -1, -2)
    elif fam.isotropic:
        cov = jnp.square(cov_param)[..., None, None] * jnp.eye(D)
    else:
        cov = jnp.square(cov_param)[..., :, None] * jnp.eye(D)
    total = jnp.broadcast_to(cov, (K, D, D))[None] + noise_z[:, None]
    chol = jnp.linalg.cholesky(total)
    diff = z[:, None, :] - means_z[None]
    white = jax.scipy.linalg.solve_triangular(chol, diff[..., None], lower=True)[..., 0]
    logdet = jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)).sum(axis=-1)
    comp = -0.5 * jnp.square(white).sum(axis=-1) - logdet - 0.5 * D * jnp.log(2.0 * jnp.pi)
    log_w = jnp.log(weights) if offset is None else jnp.log(weights) + offset.T
    return jax.scipy.special.logsumexp(log_w + comp, axis=-1)
