"""The Bayesian model's covariances for mclust's eigen families (VEV, EVE, EEI, ...).

On the standardised scale a component's covariance is ``Sigma_k = g_k**2 C_k``: ``g_k``
the geometric-mean sd (volume ``lambda_k = g_k**2``) and ``|C_k| = 1`` in the family's
form (:mod:`bayesgmm.core.eigen_params`): a diagonal shape, an LKJ correlation with a
diagonal shape (VEE, EVV), or a rotation with its eigenvalues (EVE, VVE, EEV, VEV). The
free variables are

=================  ========================================================================
``volume_z``       ``g`` (per component, or one): the ``sds`` prior, its ``sigma`` the
                   geometric mean of the per-feature values
``shape_z``        ``d - 1`` Helmert coordinates of ``log a`` (per component, or one):
                   Normal(0, shape.sigma), i.e. ``log a`` zero-sum Normal about shape.mu
``chol_corr``      VEE, EVV: the LKJ correlation of ``C`` (shared, or per component)
``orientation_z``  EVE, VVE, EEV, VEV: Cayley coordinates of the rotation ``Q``
                   (``d (d - 1) / 2``, shared or per component), uniform (Haar) prior
=================  ========================================================================

Why these coordinates: every one is unconstrained and, at EM's solution, has a
large-sample standard error (:func:`~bayesgmm.core.eigen_params.eigen_standard_errors`)
that the sampler's units are set from, as for the other families. The rotation is
the hard part (Bensmail et al. 1997). A rotation's columns may change sign, and with the
shape they may be permuted, without changing ``Sigma``: the Cayley map
``Q = (I + S)^-1 (I - S)`` is one-to-one from skew-symmetric ``S`` onto the rotations with
no eigenvalue -1, and every sign-flipped copy of a rotation near the identity has such an
eigenvalue, so they lie at infinity: a chain started at EM's axes (aligned to be near the
identity) explores one copy, the ``Sigma`` it reports is the same for every copy. An
over-parameterised alternative (``Q`` from the QR factor of a Gaussian matrix, uniform
too) took 89 leapfrog steps per draw and diverged 75 times in 2,000 draws on a VVE
prototype: the angle's posterior width scales with the Gaussian's radius, a funnel. The
Haar density in Cayley coordinates is ``|I + S|^-(d-1)`` (``|I + S| = |I + S^T S|^(1/2)``,
computed by a Cholesky factor). The quantity of interest, reported in the data's units, is
``covariance`` (with ``sds`` and, for correlated families, ``correlation``), not ``Q``.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt
from pymc.distributions import transforms

from bayesgmm.core.eigen_params import draw_orientation, helmert
from bayesgmm.core.spec import GMMSpec
from bayesgmm.inference.coordinates import ScaledTransform, corr_coordinate_rows, unit_name
from bayesgmm.inference.model import _free, _LKJCorr, _sd_prior

__all__ = ["cayley", "eigen_covariance", "haar_logp", "skew"]


def skew(s, D: int):
    """Skew-symmetric ``(..., D, D)`` matrices of coordinates ``s`` (``(..., m)``):
    ``S[i, j] = s`` below the diagonal (``np.tril_indices(D, -1)`` order), ``-s`` above."""
    m = D * (D - 1) // 2
    basis = np.zeros((m, D, D))  # S = sum_p s_p E_p (no shape arithmetic: JAX traces it)
    i, j = np.tril_indices(D, -1)
    basis[np.arange(m), i, j], basis[np.arange(m), j, i] = 1.0, -1.0
    return pt.sum(s[..., :, None, None] * pt.as_tensor(basis), axis=-3)


def cayley(s, D: int):
    """The rotations ``Q = (I + S)^-1 (I - S)``, ``S = skew(s)``."""
    S = skew(s, D)
    eye = pt.eye(D)
    return pt.linalg.solve(eye + S, eye - S, b_ndim=2)


def haar_logp(s, D: int):
    """Log density (up to a constant) of a uniform rotation in Cayley coordinates:
    ``-(D - 1) log |I + S| = -(D - 1) / 2 log |I + S^T S|``, per leading index."""
    S = skew(s, D)
    chol = pt.linalg.cholesky(pt.eye(D) + pt.swapaxes(S, -1, -2) @ S)
    return -(D - 1) * pt.sum(pt.log(pt.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)


def _orientation(name: str, D: int, lead: tuple[int, ...], dims):
    m = D * (D - 1) // 2
    unit = pm.Data(unit_name(name), np.ones((*lead, m)))

    def random(unit, rng=None, size=None):
        size = tuple(size) if size is not None else tuple(np.shape(unit)[:-1])
        return draw_orientation(D, size, rng)

    return pm.CustomDist(
        name,
        unit,
        logp=lambda value, unit: haar_logp(value, D),
        random=random,
        signature="(m)->(m)",
        transform=ScaledTransform(None, ndim_supp=1),
        default_transform=None,
        dims=dims,
    )


def eigen_covariance(model: pm.Model, spec: GMMSpec, c: dict, means_z):
    """The eigen family's free variables and deterministics (``means``, ``sds``,
    ``covariance`` and, when correlated, ``correlation``, in the data's units); returns
    the likelihood's covariance argument in the form of ``spec.family.kernel``."""
    fam, rp = spec.family, spec.priors
    K, D = spec.n_components, spec.n_features
    loc, scale = c["loc"], c["scale"]
    lead = {"V": (K,), "E": (), "I": ()}
    comp = {"V": ("component",), "E": (), "I": ()}
    g_scale = pt.exp(pt.mean(pt.log(c["sds_sigma_z"])))
    vol_dims = comp[fam.volume] or None
    volume_z = _sd_prior("volume_z", rp, g_scale, c["sds_nu"], vol_dims, lead[fam.volume])
    g = pt.broadcast_to(volume_z[..., None] if fam.volume == "V" else volume_z, (K, 1))
    if fam.shape != "I" and D > 1:
        shape_z = _free(
            "shape_z",
            pm.Normal,
            {"mu": pt.as_tensor(0.0), "sigma": c["shape_sigma"]},
            None,
            (*lead[fam.shape], D - 1),
            "(),()->()",
            dims=(*comp[fam.shape], "shape_coordinate"),
        )
        log_a = c["shape_mu_z"] + shape_z @ pt.as_tensor(helmert(D))
    else:
        log_a = pt.zeros((D,))
    log_a = pt.broadcast_to(log_a, (K, D))
    if fam.form == "diagonal":
        sds_z = g * pt.exp(0.5 * log_a)  # (K, D)
        cov_param = sds_z[:, 0] if fam.kernel.isotropic else sds_z
        cov_z = pt.eye(D)[None] * (sds_z**2)[:, :, None]
    elif fam.form == "lkj":
        shape = (*lead[fam.orientation], D, D)
        chol_corr = _free(
            "chol_corr",
            _LKJCorr(D),
            {"eta": c["corr_eta"]},
            transforms.CholeskyCorrTransform(n=D, upper=False),
            shape[:-1],
            "()->(d,d)",
            index=corr_coordinate_rows(D),
            shape=shape,
        )
        model.named_vars_to_dims["chol_corr"] = (*fam.corr_dims, "feature", "feature_bis")
        # |R|^(1/2) = prod diag(L_R); C = diag(sqrt a) R diag(sqrt a) / |R|^(1/D)
        half_logdet = pt.sum(pt.log(pt.diagonal(chol_corr, axis1=-2, axis2=-1)), axis=-1)
        chol_r = pt.broadcast_to(chol_corr, (K, D, D))
        norm = pt.broadcast_to(pt.exp(-half_logdet / D), (K,))
        cov_param = (g[:, :, None] * norm[:, None, None]) * pt.exp(0.5 * log_a)[:, :, None] * chol_r
        cov_z = cov_param @ pt.swapaxes(cov_param, -1, -2)
    else:
        orientation_z = _orientation(
            "orientation_z",
            D,
            lead[fam.orientation],
            (*comp[fam.orientation], "orientation_coordinate"),
        )
        Q = pt.broadcast_to(cayley(orientation_z, D), (K, D, D))
        cov_z = (g**2)[:, :, None] * (Q * pt.exp(log_a)[:, None, :]) @ pt.swapaxes(Q, -1, -2)
        cov_z = 0.5 * (cov_z + pt.swapaxes(cov_z, -1, -2))
        cov_param = pt.linalg.cholesky(cov_z)
    comp_feature = ("component", "feature")
    cov = scale[None, :, None] * cov_z * scale[None, None, :]
    sds = pt.sqrt(pt.diagonal(cov, axis1=-2, axis2=-1))
    pm.Deterministic("means", loc + means_z * scale, dims=comp_feature)
    pm.Deterministic("sds", sds, dims=comp_feature)
    pm.Deterministic("covariance", cov, dims=("component", "feature", "feature_bis"))
    if fam.correlated and D > 1:
        corr = cov / (sds[:, :, None] * sds[:, None, :])
        pm.Deterministic("correlation", corr, dims=("component", "feature", "feature_bis"))
    return cov_param
