"""The Bayesian model's parameters of mclust's eigen families, in numpy.

The model (:mod:`bayesgmm.inference.eigen_model`) writes a component's covariance on the
standardised scale as ``Sigma_k = g_k**2 C_k`` with ``g_k = |Sigma_k|^(1/(2d))`` (the
geometric-mean sd: the volume ``lambda_k = g_k**2``) and ``|C_k| = 1``; how ``C_k`` is
parameterised is the family's *form* (:attr:`EigenFamily.form
<bayesgmm.core.eigen_families.EigenFamily.form>`):

``diagonal`` (orientation I: EII, EEI, VEI, EVI, and mclust's E and V)
    ``C = diag(a)``, ``a`` the shape (``prod a = 1``).
``lkj`` (shape and orientation both E or both V: VEE, EVV)
    ``C = diag(sqrt a) R diag(sqrt a) / |R|^(1/d)``, ``R`` an LKJ correlation matrix and
    ``a = diag(C) / geomean(diag C)``: a bijection onto unit-determinant matrices, with no
    rotation to parameterise (the orientation is in ``R``).
``rotation`` (EVE, VVE, EEV, VEV: one part shared, the other varying)
    ``C = Q diag(a) Q^T``, ``Q`` a rotation in Cayley coordinates
    ``Q = (I + S)^-1 (I - S)``, ``S`` skew-symmetric (:func:`cayley`).

The log shape is ``log a = mu + u H`` with ``u`` the ``d - 1`` shape coordinates and ``H``
the Helmert contrasts (:func:`helmert`), so a Normal(0, sigma) prior on ``u`` is a
zero-sum Normal on ``log a``. This module maps EM's covariances to start values
(:func:`eigen_start`), gives the coordinates' large-sample standard errors
(:func:`eigen_standard_errors`) and draws uniformly distributed rotations
(:func:`draw_orientation`).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.optimize import linear_sum_assignment

__all__ = [
    "cayley",
    "cayley_inverse",
    "draw_orientation",
    "eigen_standard_errors",
    "eigen_start",
    "helmert",
    "shape_location_z",
    "skew",
]

#: Largest standard error given to a rotation angle (radians): a shape with (nearly)
#: equal eigenvalues leaves its orientation unidentified.
MAX_ANGLE_SE = 0.5


def helmert(n_features: int) -> np.ndarray:
    """The ``(d - 1, d)`` Helmert contrasts: orthonormal rows orthogonal to the ones.

    Examples
    --------
    >>> H = helmert(3)
    >>> bool(np.allclose(H @ H.T, np.eye(2))), bool(np.allclose(H.sum(axis=1), 0))
    (True, True)
    """
    return scipy.linalg.helmert(n_features)


def shape_location_z(shape_mu: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """The log shape's prior location on the standardised scale ``z = (x - loc) / scale``
    (``a_z = a_x / scale**2``, centred), from ``shape_mu`` in the data's units."""
    mu_z = np.asarray(shape_mu, dtype=float) - 2.0 * np.log(np.asarray(scale, dtype=float))
    return mu_z - mu_z.mean()


def skew(s: np.ndarray, n_features: int) -> np.ndarray:
    """The skew-symmetric ``(..., d, d)`` matrices with ``S[i, j] = s`` below the diagonal
    (``np.tril_indices(d, -1)`` order) and ``-s`` above."""
    s = np.asarray(s, dtype=float)
    i, j = np.tril_indices(n_features, -1)
    S = np.zeros((*s.shape[:-1], n_features, n_features))
    S[..., i, j] = s
    S[..., j, i] = -s
    return S


def cayley(s: np.ndarray, n_features: int) -> np.ndarray:
    """The rotation ``Q = (I + S)^-1 (I - S)`` of Cayley coordinates ``s`` (``(..., m)``).

    Examples
    --------
    >>> Q = cayley(np.array([0.3, -1.0, 2.0]), 3)
    >>> bool(np.allclose(Q @ Q.T, np.eye(3))), round(float(np.linalg.det(Q)), 12)
    (True, 1.0)
    >>> bool(np.allclose(cayley_inverse(Q), [0.3, -1.0, 2.0]))
    True
    """
    S = skew(s, n_features)
    eye = np.eye(n_features)
    return np.linalg.solve(eye + S, eye - S)


def cayley_inverse(Q: np.ndarray) -> np.ndarray:
    """The Cayley coordinates ``(..., m)`` of rotations ``Q`` (no eigenvalue -1)."""
    Q = np.asarray(Q, dtype=float)
    d = Q.shape[-1]
    eye = np.eye(d)
    S = np.linalg.solve(eye + Q, eye - Q)  # the Cayley map is its own inverse
    i, j = np.tril_indices(d, -1)
    return S[..., i, j]


def draw_orientation(n_features: int, size: tuple[int, ...], rng) -> np.ndarray:
    """Cayley coordinates ``(*size, m)`` of rotations uniform on SO(d) (the Haar prior).

    Examples
    --------
    >>> draw_orientation(3, (2,), np.random.default_rng(0)).shape
    (2, 3)
    """
    from scipy.stats import special_ortho_group

    rng = np.random.default_rng(rng)
    n = int(np.prod(size, dtype=int))
    m = n_features * (n_features - 1) // 2
    if n_features == 1 or n == 0:
        return np.zeros((*size, m))
    Q = special_ortho_group(n_features, seed=rng).rvs(size=max(n, 1))
    return cayley_inverse(np.reshape(Q, (n, n_features, n_features))).reshape(*size, m)


def _geomean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.exp(np.mean(np.log(x), axis=axis))


def _align(Q: np.ndarray, a: np.ndarray, permute: bool) -> tuple[np.ndarray, np.ndarray]:
    """Rotations ``Q`` (G, d, d) and shapes ``a`` (..., d) with columns (and shapes)
    permuted, when ``permute``, and columns' signs flipped so that every ``Q`` is a
    rotation near the identity (its Cayley coordinates then moderate): ``Q diag(a) Q^T``
    is unchanged."""
    Q = Q.copy()
    if permute:
        _, cols = linear_sum_assignment(-np.abs(Q).sum(axis=0))
        Q, a = Q[:, :, cols], a[..., cols]
    d = Q.shape[-1]
    for g in range(Q.shape[0]):
        diag = np.diagonal(Q[g])
        Q[g] *= np.where(diag < 0, -1.0, 1.0)[None, :]
        if np.linalg.det(Q[g]) < 0:
            Q[g][:, int(np.argmin(np.abs(np.diagonal(Q[g]))))] *= -1.0
    assert Q.shape[-1] == d
    return Q, a


def eigen_start(fam, cov_z: np.ndarray, shape_mu_z: np.ndarray) -> dict[str, np.ndarray]:
    """EM's covariances ``(K, d, d)`` on the standardised scale as the model's start values
    (constrained): ``volume_z``, and by form ``shape_z``, ``chol_corr``, ``orientation_z``.

    Parts that the family shares are averaged over the components (EM's own solution
    has them equal).
    """
    _K, D, _ = cov_z.shape
    g = np.exp(np.linalg.slogdet(cov_z)[1] / (2.0 * D))  # (K,)
    C = cov_z / (g**2)[:, None, None]
    out = {"volume_z": g if fam.volume == "V" else np.asarray(_geomean(g))}
    if fam.form == "diagonal":
        a = np.diagonal(C, axis1=1, axis2=2).copy()
    elif fam.form == "lkj":
        sd = np.sqrt(np.diagonal(C, axis1=1, axis2=2))
        corr = C / (sd[:, :, None] * sd[:, None, :])
        a = sd**2
        if fam.orientation == "E":
            corr = corr.mean(axis=0, keepdims=True)
        chol = np.linalg.cholesky(corr)
        out["chol_corr"] = chol if fam.orientation == "V" else chol[0]
    else:
        if fam.orientation == "E":  # one set of axes: those of the pooled shapes
            _, vecs = np.linalg.eigh(C.sum(axis=0))
            Q = vecs[None, :, ::-1]
            a = np.einsum("gji,kjl,gli->ki", Q, C, Q)
        else:  # each component's own axes, decreasing (as the shared shape's order)
            vals, vecs = np.linalg.eigh(C)
            Q, a = vecs[:, :, ::-1], vals[:, ::-1]
        a = np.clip(a, 1e-12, None)
        Q, a = _align(Q, a, permute=True)
        s = cayley_inverse(Q)
        out["orientation_z"] = s if fam.orientation == "V" else s[0]
    a = np.clip(a, 1e-12, None)
    log_a = np.log(a) - np.log(a).mean(axis=-1, keepdims=True)
    if fam.shape == "E":
        log_a = log_a.mean(axis=0)
    if fam.shape != "I" and D > 1:
        out["shape_z"] = (log_a - shape_mu_z) @ helmert(D).T
    return out


def _angle_variances(a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Large-sample variances ``a_i a_j / (n (a_i - a_j)**2)`` of the rotation angles in
    each plane (i > j, tril order) of eigenvectors of a scatter from ``n`` points with
    eigenvalues ``a`` (``(G, d)``, ``n`` (G,)), as precisions summed over the ``G``
    components that share the rotation."""
    i, j = np.tril_indices(a.shape[-1], -1)
    precision = n[:, None] * (a[:, i] - a[:, j]) ** 2 / (a[:, i] * a[:, j])
    return 1.0 / np.maximum(precision.sum(axis=0), 1.0 / MAX_ANGLE_SE**2)


def _cayley_jacobian(s: np.ndarray, D: int) -> np.ndarray:
    """``dOmega / ds`` at ``s``: the rotation's angles ``Omega = Q^T dQ`` (tril entries)
    per Cayley coordinate, ``dQ = -2 (I + S)^-1 dS (I + S)^-1``."""
    m = s.shape[-1]
    Q = cayley(s, D)
    inv = np.linalg.inv(np.eye(D) + skew(s, D))  # a rotation's, not a covariance
    i, j = np.tril_indices(D, -1)
    J = np.empty((m, m))
    for p in range(m):
        dS = skew(np.eye(m)[p], D)
        omega = Q.T @ (-2.0 * inv @ dS @ inv)
        J[:, p] = omega[i, j]
    return J


def eigen_standard_errors(fam, start, cov_z: np.ndarray, n_k: np.ndarray, n_obs: int) -> dict:
    """Large-sample posterior sds of the eigen parameters' unconstrained coordinates:
    log ``volume_z`` ``1 / sqrt(2 d n)``; ``shape_z`` ``sqrt(2 / n)``; ``chol_corr`` as
    for the full family; ``orientation_z`` the rotation angles' (Anderson 1963: the
    eigenvectors of a sample covariance) through the Cayley map's Jacobian at the start,
    each angle's at most :data:`MAX_ANGLE_SE`. ``n`` is the component's points ``n_k``
    for a varying part, all ``n_obs`` for a shared one."""
    K, D, _ = cov_z.shape
    shared = np.array([float(n_obs)])
    n_of = {"V": n_k, "E": shared, "I": shared}
    out = {}
    n = n_of[fam.volume]
    vol = 1.0 / np.sqrt(2.0 * D * n)
    out["volume_z"] = vol if fam.volume == "V" else np.asarray(vol[0])
    if "shape_z" in start:
        n = n_of[fam.shape]
        se = np.sqrt(2.0 / n)[:, None] * np.ones(D - 1)
        out["shape_z"] = se if fam.shape == "V" else se[0]
    if "chol_corr" in start:
        chol = np.asarray(start["chol_corr"], dtype=float)
        n = n_of[fam.orientation]
        rows = 1.0 / np.diagonal(chol, axis1=-2, axis2=-1)
        out["chol_corr"] = rows / np.sqrt(n).reshape((-1, 1) if fam.orientation == "V" else ())
    if "orientation_z" in start:
        s = np.atleast_2d(np.asarray(start["orientation_z"], dtype=float))
        Q = cayley(s, D)
        g2 = np.exp(np.linalg.slogdet(cov_z)[1] / D)[:, None]
        # each component's eigenvalues along the start's axes (shared or its own)
        axes = Q if fam.orientation == "V" else np.repeat(Q, K, axis=0)
        a = np.einsum("kji,kjl,kli->ki", axes, cov_z, axes) / g2
        a = np.clip(a, 1e-12, None)
        ses = []
        for g in range(s.shape[0]):
            members = [g] if fam.orientation == "V" else list(range(K))
            var = _angle_variances(a[members], n_k[members])
            J = _cayley_jacobian(s[g], D)
            Jinv = np.linalg.inv(J)
            ses.append(np.sqrt(np.einsum("ij,j,ij->i", Jinv, var, Jinv)))
        ses = np.array(ses)
        out["orientation_z"] = ses if fam.orientation == "V" else ses[0]
    return out
