"""The truth of a simulation-based calibration (:mod:`bayesgmm.workflows.sbc`): parameters
drawn from the model's prior and data drawn from them, in numpy, written independently of
the PyMC model (so that a calibration also checks the model's prior density).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bayesgmm.core.families import family
from bayesgmm.core.priors import Prior, resolve_priors
from bayesgmm.exceptions import ConfigError

__all__ = ["SBC_PRIORS", "draw_prior", "simulate"]

SBC_PRIORS: dict[str, Prior] = {
    "weights": Prior("Dirichlet", a=2.0),
    "means": Prior("Normal", mu=0.0, sigma=3.0),
    "sds": Prior("HalfNormal", sigma=1.0),
    "corr": Prior("LKJ", eta=2.0),
    # mclust's families: the log shape about equal axes (a fixed location: 'auto' reads
    # the data)
    "shape": Prior("ZeroSumNormal", mu=0.0, sigma=1.0),
}


def sbc_priors(priors, n_components: int, n_features: int, covariance_type: str = "full"):
    priors = {**SBC_PRIORS, **dict(priors or {})}
    for slot, p in priors.items():
        params = p.params if isinstance(p, Prior) else dict(p)
        if any(v == "auto" for v in params.values()):
            raise ConfigError(
                f"SBC needs fixed priors; {slot} has an 'auto' parameter (read from the data)."
            )
    # any data of the right width resolves fixed priors; it is not read otherwise
    dummy = np.arange(2.0 * n_components * n_features).reshape(-1, n_features)
    return priors, resolve_priors(priors, dummy, n_components, covariance_type)


def draw_prior(
    n_components: int,
    n_features: int,
    priors=None,
    rng=None,
    covariance_type: str = "full",
    noise: float | None = None,
) -> dict[str, np.ndarray]:
    """One draw of the model's parameters from the prior, in numpy.

    Written independently of the PyMC model, so that calibration also checks the
    model's prior density against these draws. scikit-learn's families draw ``sds``
    (per component and feature, shared, or one per component) and LKJ correlations
    (:func:`_lkj`); mclust's other families draw their volume, shape and orientation as
    :mod:`bayesgmm.inference.eigen_model` declares them: the geometric-mean sd from the
    ``sds`` prior (its ``sigma`` the geometric mean of the per-feature values), the log
    shape ``shape.mu + u H`` with ``u ~ Normal(0, shape.sigma)`` and ``H`` the Helmert
    contrasts, an LKJ correlation (VEE, EVV) or a uniformly distributed rotation (EVE,
    VVE, EEV, VEV), each shared or per component as the family's letters say. With a
    background-noise component of volume ``noise``, its weight ``noise_weight ~ Beta(a_0,
    sum(a))`` (``a_0`` the mean of the Dirichlet's ``a``) is drawn last, and the box its
    points are uniform on (``box``: lower and upper corners) is centred on the means'
    prior mean.

    Returns
    -------
    dict with ``weights`` (K,), ``means`` (K, D), ``sds`` (K, D), ``correlation`` and
    ``covariance`` (K, D, D); with ``noise``, ``noise_weight`` and ``box`` (2, D).

    Examples
    --------
    >>> theta = draw_prior(2, 2, rng=np.random.default_rng(0))
    >>> theta["means"].shape, bool(np.isclose(theta["weights"].sum(), 1))
    ((2, 2), True)
    >>> vev = draw_prior(3, 2, rng=np.random.default_rng(0), covariance_type="VEV")
    >>> vev["covariance"].shape
    (3, 2, 2)
    """
    rng = np.random.default_rng(rng)
    _, rp = sbc_priors(priors, n_components, n_features, covariance_type)
    fam = family(covariance_type)
    K, D = n_components, n_features
    weights = rng.dirichlet(rp.weights_a)
    means = rng.normal(rp.means_mu, rp.means_sigma, size=(K, D))
    if fam is family("full"):  # the order of draws of the first calibration runs
        sds = _half(rp, rp.sds_sigma, (K, D), rng)
        corr = np.stack([_lkj(D, rp.corr_eta, rng) for _ in range(K)])
    elif fam.parameterisation == "sds":
        shape = tuple({"component": K, "feature": D}[d] for d in fam.sd_dims)
        sigma = rp.sds_sigma[0] if fam.isotropic else rp.sds_sigma
        sds = np.broadcast_to(_half(rp, sigma, shape, rng).reshape(
            (K, 1) if fam.isotropic else (-1, D)), (K, D))  # fmt: skip
        corr = np.broadcast_to(np.eye(D), (K, D, D))
        if fam.correlated:
            corr = np.broadcast_to(_lkj(D, rp.corr_eta, rng), (K, D, D))
    else:
        cov = _eigen_covariances(fam, rp, K, D, rng)
        sds = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
        corr = cov / (sds[:, :, None] * sds[:, None, :])
    sds, corr = np.array(sds), np.array(corr)
    cov = sds[:, :, None] * corr * sds[:, None, :]
    theta = {"weights": weights, "means": means, "sds": sds, "correlation": corr,
             "covariance": cov}  # fmt: skip
    if noise is not None:  # drawn last: the draws above are those of a fit without noise
        a = np.broadcast_to(rp.weights_a, (K,))
        theta["noise_weight"] = rng.beta(a.mean(), a.sum())
        low = np.broadcast_to(rp.means_mu, (D,)) - noise ** (1.0 / D) / 2
        theta["box"] = np.stack([low, low + noise ** (1.0 / D)])
    return theta


def _half(rp, sigma, size, rng) -> np.ndarray:
    """Draws of the ``sds`` prior (HalfNormal or HalfStudentT) with scale ``sigma``."""
    if rp.sds_dist == "HalfNormal":
        return np.abs(rng.normal(0.0, sigma, size=size))
    return np.abs(sigma * rng.standard_t(rp.sds_nu, size=size))


def _eigen_covariances(fam, rp, K: int, D: int, rng) -> np.ndarray:
    """``(K, D, D)`` covariances of one of mclust's eigen families from its prior."""
    from bayesgmm.core.eigen_params import cayley, draw_orientation, helmert

    def lead(part: str) -> int:  # how many of a part: one per component, or one
        return K if part == "V" else 1

    sigma_g = float(np.exp(np.mean(np.log(rp.sds_sigma))))
    g = np.broadcast_to(_half(rp, sigma_g, (lead(fam.volume),), rng), (K,))
    log_a = np.zeros((K, D))
    if fam.shape != "I" and D > 1:
        u = rng.normal(0.0, rp.shape_sigma, size=(lead(fam.shape), D - 1))
        log_a = np.broadcast_to(rp.shape_mu + u @ helmert(D), (K, D))
    a = np.exp(log_a)
    if fam.form == "diagonal":
        C = a[:, :, None] * np.eye(D)
    elif fam.form == "lkj":
        R = np.broadcast_to(
            np.stack([_lkj(D, rp.corr_eta, rng) for _ in range(lead(fam.orientation))]),
            (K, D, D),
        )
        root = np.sqrt(a)
        C = root[:, :, None] * R * root[:, None, :] / np.linalg.det(R)[:, None, None] ** (1 / D)
    else:
        Q = np.broadcast_to(cayley(draw_orientation(D, (lead(fam.orientation),), rng), D),
                            (K, D, D))  # fmt: skip
        C = (Q * a[:, None, :]) @ np.swapaxes(Q, -1, -2)
    return (g**2)[:, None, None] * C


def _lkj(D: int, eta: float, rng) -> np.ndarray:
    """An LKJ(eta) correlation matrix (onion method, Lewandowski et al. 2009, sec. 3.2)."""
    if D == 1:
        return np.ones((1, 1))
    beta = eta + (D - 2) / 2.0
    r = 2.0 * rng.beta(beta, beta) - 1.0
    corr = np.array([[1.0, r], [r, 1.0]])
    for k in range(2, D):
        beta -= 0.5
        y = rng.beta(k / 2.0, beta)
        u = rng.standard_normal(k)
        z = np.linalg.cholesky(corr) @ (np.sqrt(y) * u / np.linalg.norm(u))
        corr = np.block([[corr, z[:, None]], [z[None, :], np.ones((1, 1))]])
    return corr


def simulate(theta: Mapping[str, np.ndarray], n_obs: int, rng=None) -> np.ndarray:
    """``n_obs`` points from the Gaussian mixture with parameters ``theta`` (and, with a
    ``noise_weight``, the background's points uniform on ``theta["box"]``)."""
    rng = np.random.default_rng(rng)
    K = len(theta["weights"])
    weights = theta["weights"]
    if "noise_weight" in theta:  # K + 1 components, the background's last
        weights = np.append((1.0 - theta["noise_weight"]) * weights, theta["noise_weight"])
    z = rng.choice(len(weights), size=n_obs, p=weights)
    if "covariance" in theta:
        chol_cov = np.linalg.cholesky(theta["covariance"])
    else:
        chol_cov = theta["sds"][:, :, None] * np.linalg.cholesky(theta["correlation"])
    eps = rng.standard_normal((n_obs, theta["means"].shape[1]))
    g = np.minimum(z, K - 1)
    x = theta["means"][g] + np.einsum("nij,nj->ni", chol_cov[g], eps)
    if "noise_weight" in theta:
        low, high = theta["box"]
        noise = z == K
        x[noise] = low + (high - low) * rng.random((int(noise.sum()), x.shape[1]))
    return x
