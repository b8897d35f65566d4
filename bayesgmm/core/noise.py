"""Known measurement errors ("extreme deconvolution", Bovy, Hogg & Roweis 2011).

Each observed point is a true value plus Gaussian noise of a known covariance,
``x_i = v_i + e_i``, ``e_i ~ N(0, S_i)``, and the mixture describes the true values,
``v_i ~ sum_k w_k N(mu_k, Sigma_k)``. A point's density is then

``p(x_i) = sum_k w_k N(x_i | mu_k, Sigma_k + S_i)``,

the mixture *deconvolved*: its components are the spread of the true values, narrower
than the data's when the errors are large. ``noise_cov`` gives ``S_i`` for every point:
``(n, D, D)`` covariances, or ``(n, D)`` variances (squared standard errors) of errors
independent across features. :func:`check_noise_cov` validates it; :func:`noise_terms` is
what EM's E-step (the XD algorithm, :mod:`bayesgmm.core.em_noise`) and the predictions of
points with their own errors need: each point's log densities and, per component, the
conditional mean and covariance of its true value.
"""

from __future__ import annotations

import numpy as np

from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["check_noise_cov", "noise_terms"]

_LOG_2PI = float(np.log(2.0 * np.pi))
_SYM_RTOL = 1e-8


def check_noise_cov(noise_cov, X: np.ndarray) -> np.ndarray | None:
    """Validate measurement-error covariances for the rows of ``X``; returns (n, D, D).

    ``None`` stays ``None``, and so do errors that are zero for every point (the fit
    without errors). Variances of shape (n, D) become diagonal covariances. Errors of
    points with missing values (NaN in ``X``) are refused: that combination is not built.

    Examples
    --------
    >>> X = np.zeros((2, 2))
    >>> check_noise_cov([[0.1, 0.2], [0.3, 0.0]], X)[1].tolist()
    [[0.3, 0.0], [0.0, 0.0]]
    >>> check_noise_cov(np.zeros((2, 2)), X) is None
    True
    >>> check_noise_cov([[0.1, -0.2], [0.3, 0.0]], X)
    Traceback (most recent call last):
    ...
    bayesgmm.exceptions.DataError: noise_cov (variances, shape (n, D)) must be >= 0; row 0 has -0.2.
    """
    S = _error_matrices(noise_cov, *X.shape)
    if S is not None and np.isnan(X).any():
        raise ConfigError(
            "noise_cov with missing values is not available (yet): give complete rows with "
            "measurement errors, or missing values without them."
        )
    return S


def _error_matrices(noise_cov, n: int, D: int) -> np.ndarray | None:
    """:func:`check_noise_cov`'s checks of the errors themselves, for ``n`` rows of ``D``
    features."""
    if noise_cov is None:
        return None
    try:
        S = np.asarray(noise_cov, dtype=float)
    except (TypeError, ValueError):
        raise DataError("noise_cov must hold numbers (error covariances of the rows).") from None
    if S.shape not in ((n, D), (n, D, D)):
        raise DataError(
            f"noise_cov must have shape (n, D) = ({n}, {D}) (error variances of independent "
            f"errors) or (n, D, D) = ({n}, {D}, {D}) (error covariances); got {S.shape}."
        )
    bad = np.flatnonzero(~np.isfinite(S.reshape(n, -1)).all(axis=1))
    if bad.size:
        raise DataError(f"noise_cov must be finite; row {bad[0]} is not ({bad.size} such rows).")
    if S.ndim == 2:
        neg = np.argwhere(S < 0)
        if neg.size:
            i, j = neg[0]
            raise DataError(
                f"noise_cov (variances, shape (n, D)) must be >= 0; row {i} has {S[i, j]:g}."
            )
        if not S.any():
            return None
        out = np.zeros((n, D, D))
        out[:, np.arange(D), np.arange(D)] = S
        return out
    if not S.any():
        return None
    scale = np.abs(S).max(axis=(1, 2))
    asym = np.flatnonzero(np.abs(S - S.transpose(0, 2, 1)).max(axis=(1, 2)) > _SYM_RTOL * scale)
    if asym.size:
        raise DataError(
            f"noise_cov must hold symmetric matrices; row {asym[0]}'s is not "
            f"({asym.size} such rows)."
        )
    S = 0.5 * (S + S.transpose(0, 2, 1))
    low = np.linalg.eigvalsh(S).min(axis=1)
    bad = np.flatnonzero(low < -_SYM_RTOL * np.maximum(scale, np.finfo(float).tiny))
    if bad.size:
        raise DataError(
            f"noise_cov must be positive semi-definite (error covariances); row {bad[0]}'s "
            f"smallest eigenvalue is {low[bad[0]]:.3g} ({bad.size} such rows)."
        )
    return S


def noise_terms(
    X: np.ndarray,
    noise_cov: np.ndarray,
    means: np.ndarray,
    cov: np.ndarray,
    conditionals: bool = True,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Per point and component: ``log N(x_i | mu_k, Sigma_k + S_i)`` (n, K), and the
    conditional mean ``b_ik`` (n, K, D) and covariance ``B_ik`` (n, K, D, D) of the true
    value given the observation (Bovy et al. 2011, eq. 13-14):

    ``b_ik = mu_k + Sigma_k T_ik^-1 (x_i - mu_k)``, ``B_ik = Sigma_k - Sigma_k T_ik^-1
    Sigma_k``, ``T_ik = Sigma_k + S_i``, evaluated with triangular solves against the
    Cholesky factor of ``T_ik``. ``conditionals=False``: the log densities only.

    Examples
    --------
    >>> X, S = np.array([[2.0]]), np.array([[[1.0]]])
    >>> ld, b, B = noise_terms(X, S, np.zeros((1, 1)), np.array([[[1.0]]]))
    >>> round(float(b[0, 0, 0]), 12), round(float(B[0, 0, 0, 0]), 12)  # half way, half the variance
    (1.0, 0.5)
    """
    D = X.shape[1]
    T = cov[None] + noise_cov[:, None]  # (n, K, D, D)
    L = np.linalg.cholesky(T)
    diff = (X[:, None, :] - means[None])[..., None]  # (n, K, D, 1)
    white = np.linalg.solve(L, diff)  # L^-1 (x - mu)
    log_det = np.log(np.diagonal(L, axis1=2, axis2=3)).sum(axis=2)
    log_dens = -0.5 * np.square(white[..., 0]).sum(axis=2) - log_det - 0.5 * D * _LOG_2PI
    if not conditionals:
        return log_dens, None, None
    gain = np.linalg.solve(L, np.broadcast_to(cov[None], T.shape))  # L^-1 Sigma_k
    cond_means = means[None] + (gain.transpose(0, 1, 3, 2) @ white)[..., 0]
    cond_cov = cov[None] - gain.transpose(0, 1, 3, 2) @ gain
    return log_dens, cond_means, cond_cov
