"""The sampler's coordinates: each free variable's transform, rescaled to its posterior sd.

NUTS adapts one step size and a mass matrix to the coordinates it is given, and NumPyro
(like Stan) regularises the mass matrix estimated from ``n`` warm-up draws towards a
fixed multiple of the identity, ``n / (n + 5) S + 1e-3 * 5 / (n + 5) I``. That suits
coordinates whose posterior variances are near 1e-4 to 1e-3. On the standardised scale
the posterior sds depend on the data: with N = 10,000 points in five well-separated
clusters (``bench/bench_sampling.py --workload large``), the means' posterior sds were
about 0.002, so the regularisation overstated their variances up to eightfold. The step
size then halved and the trees doubled: 30 leapfrog steps per draw, against 15 for the
same model with its means in the data's units (measured with NumPyro's NUTS on both).

So every free variable is declared with :class:`ScaledTransform`: its default transform
(log, simplex, Cholesky-correlation, or none) divided by a unit, one per coordinate,
held in ``pm.Data`` named ``<variable>_unit``. The units are 1 when the model is built;
:func:`set_coordinate_units` sets them from the EM solution to its large-sample standard
errors (:func:`standard_errors`) divided by :data:`POSTERIOR_SD`, so that the posterior
sd of every coordinate the sampler sees is about ``POSTERIOR_SD``. The posterior is the
same (the transform's Jacobian is part of ``model.logp()``); only the sampler's
coordinates change. Measured on that workload (NumPyro's NUTS on this model, 4 chains x
500 + 500, dense mass matrix): 15.0 leapfrog steps per draw instead of 30.2, bulk ESS
2,865 instead of 1,842, and 4.5 times the ESS per gradient evaluation over tuning and
draws (the warm-up trees are shorter too: the identity is a good first mass matrix).
With ``POSTERIOR_SD`` 1 (the sds themselves) the dense adaptation broke down: its first
windows (25 and 50 draws for 74 coordinates) give rank-deficient estimates, and so
little regularisation left near-zero variances, 1,000 steps per iteration; with 0.1,
0.35 times the ESS per gradient of 0.01; with 0.003 the regularisation dominated to
the end (step size 0.15, 0.77 times the ESS per gradient of 0.01). A diagonal mass
matrix took 15.0 steps per draw at 0.01 too. Through ``BayesianGMM.fit`` (which sets
the units in :func:`~bayesgmm.inference.sampling.sample_posterior`; ``bench/
bench_sampling.py --workload large --draws 300 --tune 300 --units-one``): 15.1 leapfrog
steps per draw against 50.6 with units of one (the shorter tuning adapts worse), minimum
bulk ESS 1,002 against 1,077 over the 1,200 draws, so 3.1 times the ESS per gradient.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions.transforms import CholeskyCorrTransform
from pymc.logprob.transforms import Transform
from pytensor.tensor.random.type import RandomType

from bayesgmm.core.eigen_params import eigen_standard_errors
from bayesgmm.core.spec import GMMSpec
from bayesgmm.inference.starts import EVAL_ONCE, em_start

__all__ = [
    "POSTERIOR_SD",
    "ScaledTransform",
    "corr_coordinate_rows",
    "set_coordinate_units",
    "standard_errors",
    "unit_name",
]

#: The posterior sd the sampler's coordinates are scaled to (see the module's notes).
POSTERIOR_SD = 0.01


class ScaledTransform(Transform):
    """``base``'s unconstrained value divided by a unit, elementwise.

    Stateless, as PyMC's transforms are: the unit is the variable's last parameter (see
    :func:`bayesgmm.inference.model.build_model`), so it follows the variable through
    PyMC's graph rewrites and model clones, and stays a ``pm.Data`` argument of compiled
    functions.

    Parameters
    ----------
    base : Transform or None
        The variable's own transform (``None``: the identity, for an unbounded variable).
    index : array of int, optional
        When given, coordinate ``j`` takes the unit ``unit[..., index[j]]`` (e.g. one unit
        per row of a Cholesky factor, :func:`corr_coordinate_rows`); else the unit has the
        coordinates' shape (or broadcasts to it).
    ndim_supp : int, optional
        The support's dims (default ``base``'s; 0 for the identity): 1 for a vector-valued
        variable with no transform of its own (the rotations' Cayley coordinates).

    Examples
    --------
    >>> import numpy as np
    >>> from pymc.distributions.transforms import log
    >>> tr = ScaledTransform(log)
    >>> x, unit = pt.as_tensor(np.array([1.0, np.e])), pt.as_tensor(np.array([0.5, 2.0]))
    >>> tr.forward(x, unit).eval()
    array([0. , 0.5])
    >>> tr.backward(tr.forward(x, unit), unit).eval()
    array([1.        , 2.71828183])
    """

    def __init__(self, base: Transform | None, index=None, ndim_supp: int | None = None) -> None:
        self.base, self.index = base, None if index is None else np.asarray(index, dtype=int)
        self.ndim_supp = (0 if base is None else base.ndim_supp) if ndim_supp is None else ndim_supp
        self.name = "scaled" if base is None else f"scaled_{base.name}"

    def _unit(self, inputs):
        params = [v for v in inputs if not isinstance(v.type, RandomType)]
        if not params:
            raise ValueError("ScaledTransform needs the unit as the variable's last parameter.")
        unit = pt.as_tensor_variable(params[-1])
        return unit if self.index is None else unit[..., self.index]

    def forward(self, value, *inputs):
        inner = value if self.base is None else self.base.forward(value, *inputs)
        return inner / self._unit(inputs)

    def backward(self, value, *inputs):
        inner = value * self._unit(inputs)
        return inner if self.base is None else self.base.backward(inner, *inputs)

    def log_jac_det(self, value, *inputs):
        value, unit = pt.as_tensor_variable(value), self._unit(inputs)
        log_unit = pt.broadcast_to(pt.log(unit), value.shape)
        if self.ndim_supp:
            log_unit = pt.sum(log_unit, axis=tuple(range(-self.ndim_supp, 0)))
        if self.base is None:
            return log_unit
        return self.base.log_jac_det(value * unit, *inputs) + log_unit


def corr_coordinate_rows(D: int) -> np.ndarray:
    """The row of the Cholesky factor that each of PyMC's Cholesky-correlation
    coordinates belongs to (in the transform's order), shape ``(D (D - 1) / 2,)``.

    Examples
    --------
    >>> corr_coordinate_rows(3)
    array([2, 2, 1])
    """
    # the transform's forward of a unit-diagonal factor is its strictly lower entries
    rows = np.tril(np.repeat(np.arange(D, dtype=float)[:, None], D, axis=1), -1) + np.eye(D)
    coords = CholeskyCorrTransform(n=D).forward(pt.as_tensor(rows)).eval(**EVAL_ONCE)
    return np.rint(coords).astype(int)


def unit_name(variable: str) -> str:
    """The ``pm.Data`` holding a free variable's units."""
    return f"{variable}_unit"


def standard_errors(spec: GMMSpec, em, start: Mapping[str, np.ndarray], n_obs: int) -> dict:
    """Large-sample posterior sds of the free variables' unconstrained coordinates.

    For the coordinates of each variable's own transform (before any scaling), at the
    EM solution, with ``n_k = N w_k`` points per component (or all N for a shared
    parameter) and the Dirichlet prior's ``a`` added to the counts:

    - ``weights`` (PyMC's simplex coordinates ``log w_j - mean(log w)``, j < K):
      ``sqrt((1 - 2/K) / n_j + sum_m (1 / n_m) / K**2)``;
    - ``means_z``: ``sd_z / sqrt(n_k)``, with the prior's precision added;
    - ``sds_z`` (log): ``1 / sqrt(2 n)``, n the points behind each sd (times D for one
      sd over every feature);
    - ``noise_weight`` (log-odds), with a background-noise component:
      ``sqrt(1 / n_0 + 1 / (n - n_0))``, ``n_0 = N w_0``;
    - ``chol_corr`` (PyMC's Cholesky-correlation coordinates: row i of the factor is
      ``(x_i, 1) / r_i``): ``r_i / sqrt(n)``, ``r_i = 1 / L_ii`` at the start, one per
      row of the factor (shape ``(..., D)``; see :func:`corr_coordinate_rows`).

    These are complete-data standard errors. On the two sampling benchmarks (well
    separated clusters) the Laplace approximation's marginal sds at the EM solution were
    0.74 to 1.08 times them (the weights', means' and log sds' within 2 %); where
    components overlap, the memberships' uncertainty widens the posterior (up to 3 to 5
    times, on three clusters that EM split 12 / 55 / 33 %), which the mass matrix
    adaptation then has to absorb.

    Parameters
    ----------
    spec : GMMSpec
    em : EMResult
        Needs ``weights`` (K,) and ``covariance_matrices()`` (K, D, D).
    start : mapping
        :func:`bayesgmm.inference.starts.em_start` of ``em`` (``chol_corr`` is read).
    n_obs : int

    Returns
    -------
    dict
        By free variable name, arrays of the unconstrained coordinates' shapes.
    """
    K, D, fam, rp = spec.n_components, spec.n_features, spec.family, spec.priors
    out, n_gauss = {}, float(n_obs)
    noise_weight = getattr(em, "noise_weight", None)
    if noise_weight is not None:  # the background's log-odds: 1 / n_0 + 1 / (n - n_0)
        w0 = float(np.clip(noise_weight, 1.0 / n_obs, 1.0 - 1.0 / n_obs))
        out["noise_weight"] = np.asarray(np.sqrt(1.0 / (n_obs * w0) + 1.0 / (n_obs * (1 - w0))))
        n_gauss = n_obs * (1.0 - w0)  # the Gaussians' points
    n_k = np.clip(np.asarray(em.weights, dtype=float) / np.sum(em.weights) * n_gauss, 1.0, None)
    counts = n_k + np.broadcast_to(np.asarray(rp.weights_a, dtype=float), (K,))
    inv = 1.0 / counts
    out["weights"] = np.sqrt((1.0 - 2.0 / K) * inv[:-1] + inv.sum() / K**2)
    var_z = np.diagonal(np.asarray(em.covariance_matrices()), axis1=-2, axis2=-1) / spec.scale**2
    prior_prec = (spec.scale / np.asarray(rp.means_sigma, dtype=float)) ** 2  # (D,)
    out["means_z"] = 1.0 / np.sqrt(n_k[:, None] / var_z + prior_prec[None, :])
    if fam.parameterisation == "eigen":  # volume, shape, orientation
        cov_z = np.asarray(em.covariance_matrices()) / np.outer(spec.scale, spec.scale)[None]
        return out | eigen_standard_errors(fam, start, cov_z, n_k, n_obs)
    # the points behind each sd: a component's (or all, when shared), times D when one sd
    # serves every feature
    n_sd = n_k if "component" in fam.sd_dims else np.full(1, float(n_obs))
    if "feature" not in fam.sd_dims:
        n_sd = D * n_sd
    shape = tuple({"component": K, "feature": D}[d] for d in fam.sd_dims)
    per = n_sd[:, None] if len(shape) == 2 else n_sd
    out["sds_z"] = np.broadcast_to(1.0 / np.sqrt(2.0 * per), shape).copy()
    if spec.has_corr:
        chol_corr = np.asarray(start["chol_corr"], dtype=float)
        n = n_k if fam.per_component else np.full(1, float(n_obs))
        rows = 1.0 / np.diagonal(chol_corr, axis1=-2, axis2=-1)  # r_i, (..., D)
        out["chol_corr"] = rows / np.sqrt(n).reshape((-1, 1) if fam.per_component else ())
    return out


def set_coordinate_units(
    model: pm.Model, spec: GMMSpec, em, start: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Set the model's coordinate units from the EM solution; returns them by variable.

    Each unit is the coordinate's :func:`standard_errors` divided by
    :data:`POSTERIOR_SD`. Call it before the starts are mapped to the unconstrained
    scale (:func:`bayesgmm.inference.starts.jittered_unconstrained_starts`): they are
    then in these coordinates, and a per-chain jitter of ``j`` is ``j / POSTERIOR_SD``
    standard errors (5 for the default 0.05). ``start`` is ``em_start(em, spec)`` when
    the caller has it already.

    With no more points than unconstrained parameters (e.g. D = 50 from 60 points) the
    large-sample standard errors mean nothing: the units stay ones and ``{}`` is returned
    (measured: with them, that fit's covariance draws were not positive definite).
    """
    n_obs = int(np.shape(model["data"].get_value(borrow=True))[0])
    if n_obs <= em.n_parameters():  # no large-sample standard errors: units of one
        for rv in model.free_RVs:
            unit = model[unit_name(rv.name)]
            unit.set_value(np.ones_like(unit.get_value()))
        return {}
    start = em_start(em, spec) if start is None else start
    errors = standard_errors(spec, em, start, n_obs)
    units = {}
    for rv in model.free_RVs:
        unit = np.asarray(errors[rv.name], dtype=float) / POSTERIOR_SD
        model[unit_name(rv.name)].set_value(unit)
        units[rv.name] = unit
    return units
