"""Where every chain starts: the EM solution, jittered per chain on the unconstrained scale.

The EM MAP solution is mapped onto the model's free variables (:func:`em_start`), then
each chain gets a small Gaussian jitter on the unconstrained scale (log sds, simplex-
transformed weights, ...), so chains start apart but in the same mode.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from bayesgmm.core.eigen_params import eigen_start, shape_location_z
from bayesgmm.core.spec import GMMSpec

#: PyTensor's mode for a graph evaluated once (a transform of a start's values): no
#: optimisation and no Numba, whose compilation took over a second for each new start
EVAL_ONCE = {"mode": "FAST_COMPILE"}

__all__ = ["em_start", "jittered_starts", "jittered_unconstrained_starts"]


def em_start(em, spec: GMMSpec) -> dict[str, np.ndarray]:
    """The EM solution as constrained start values for the model's free variables.

    Parameters
    ----------
    em : EMResult
        Needs ``weights`` (K,), ``means`` (K, D) and ``covariance_matrices()`` (K, D, D);
        with a background-noise component, ``noise_weight`` (the model's ``weights`` are
        then the Gaussians' shares: EM's normalised).
    spec : GMMSpec
    """
    K, D, fam = spec.n_components, spec.n_features, spec.family
    scale = spec.scale
    weights = np.clip(np.asarray(em.weights, dtype=float), 1e-6, None)
    start: dict[str, np.ndarray] = {
        "weights": weights / weights.sum(),
        "means_z": (np.asarray(em.means) - spec.loc) / scale,
    }
    if getattr(em, "noise_weight", None) is not None:  # the background's (weights: relative)
        start["noise_weight"] = np.asarray(np.clip(em.noise_weight, 1e-6, 1 - 1e-6))
    cov_z = np.asarray(em.covariance_matrices()) / np.outer(scale, scale)[None]
    sds_z = np.sqrt(np.diagonal(cov_z, axis1=-2, axis2=-1))  # (K, D)
    if fam.parameterisation == "eigen":  # volume, shape, orientation
        mu_z = shape_location_z(spec.priors.shape_mu, np.broadcast_to(scale, (D,)))
        start.update(eigen_start(fam, cov_z, mu_z))
        return start
    start["sds_z"] = fam.start_sds(sds_z)
    if spec.has_corr:
        corr = cov_z / (sds_z[:, :, None] * sds_z[:, None, :])
        chol_corr = np.linalg.cholesky(corr)
        start["chol_corr"] = chol_corr if fam.per_component else chol_corr[0]
    assert start["weights"].shape == (K,) and start["means_z"].shape == (K, D)
    return start


def jittered_starts(
    model: pm.Model, start: Mapping[str, np.ndarray], chains: int, jitter: float, rng
) -> list[dict[str, np.ndarray]]:
    """Per-chain starts: ``start`` plus N(0, jitter²) noise on the unconstrained scale."""
    out = []
    for point in jittered_unconstrained_starts(model, start, chains, jitter, rng):
        constrained = {}
        for rv in model.free_RVs:
            value = model.rvs_to_values[rv]
            tr = model.rvs_to_transforms.get(rv)
            u = point[value.name]
            if tr is None:
                constrained[rv.name] = u
            else:
                constrained[rv.name] = tr.backward(pt.as_tensor(u), *rv.owner.inputs).eval(
                    **EVAL_ONCE
                )
        out.append(constrained)
    return out


def jittered_unconstrained_starts(
    model: pm.Model, start: Mapping[str, np.ndarray], chains: int, jitter: float, rng
) -> list[dict[str, np.ndarray]]:
    """As :func:`jittered_starts`, keyed by value-variable name on the unconstrained scale.

    (``weights_scaled_simplex__``, ``sds_z_scaled_log__``, ...: what a sampler's state
    holds, in the units :func:`~bayesgmm.inference.coordinates.set_coordinate_units` set.)
    """
    unconstrained = {}
    for rv in model.free_RVs:
        tr = model.rvs_to_transforms.get(rv)
        value = np.asarray(start[rv.name], dtype=float)
        if tr is not None:
            value = tr.forward(pt.as_tensor(value), *rv.owner.inputs).eval(**EVAL_ONCE)
        unconstrained[model.rvs_to_values[rv].name] = np.asarray(value, dtype=float)
    return [
        {name: u + jitter * rng.standard_normal(np.shape(u)) for name, u in unconstrained.items()}
        for _ in range(chains)
    ]
