"""Missing values, marginalised: missingness patterns and the Gaussian's marginals and
conditionals on them.

With ``missing="marginalize"`` a NaN entry is *missing at random*: a point's likelihood is
the density of its observed coordinates ``o``, the Gaussian marginal

``p(x_o) = sum_k w_k N(x_o | mu_k[o], Sigma_k[o, o])``,

and what the point says about its missing coordinates ``m`` is the conditional Gaussian
``N(mu_k[m] + Sigma_k[m, o] Sigma_k[o, o]^-1 (x_o - mu_k[o]), Sigma_k[m, m] - Sigma_k[m, o]
Sigma_k[o, o]^-1 Sigma_k[o, m])``, evaluated with the inverse of the triangular
factor of ``Sigma_k[o, o]`` (never of a covariance). Points are grouped by their pattern of observed
coordinates (:class:`Patterns`), so each marginal is factorised once per pattern, not per
point. EM (:mod:`bayesgmm.core.em_missing`), predictions (:mod:`bayesgmm.core.engine`), the
PyMC model and the JAX likelihood all use these groups.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bayesgmm.core.triangular import solve_lower_identity
from bayesgmm.exceptions import ConfigError

__all__ = ["MISSING_OPTIONS", "Patterns", "check_missing", "conditional", "marginal_logpdf"]

#: What a NaN in the data means: an error (the default), or a value missing at random.
MISSING_OPTIONS = ("error", "marginalize")

_LOG_2PI = float(np.log(2.0 * np.pi))


def check_missing(missing) -> str:
    """``missing`` checked against :data:`MISSING_OPTIONS`."""
    if not isinstance(missing, str) or missing not in MISSING_OPTIONS:
        raise ConfigError(f"missing must be one of {list(MISSING_OPTIONS)}; got {missing!r}.")
    return missing


@dataclass(frozen=True)
class Patterns:
    """The points' patterns of observed coordinates.

    ``observed`` (P, D) holds one row per distinct pattern (True where observed), in
    ``np.unique``'s order; ``index`` (n,) is each point's pattern.

    Examples
    --------
    >>> X = np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, 1.0], [4.0, np.nan]])
    >>> pats = Patterns.of(X)
    >>> [(rows.tolist(), obs.tolist()) for rows, obs, _ in pats.groups()]
    [([2], [1]), ([0, 3], [0]), ([1], [0, 1])]
    """

    observed: np.ndarray
    index: np.ndarray

    @classmethod
    def of(cls, X: np.ndarray) -> Patterns:
        mask = ~np.isnan(X)
        observed, index = np.unique(mask, axis=0, return_inverse=True)
        return cls(observed, index.reshape(-1))

    @property
    def complete(self) -> bool:
        """Every coordinate of every point observed."""
        return bool(self.observed.all())

    def groups(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``(rows, obs, mis)`` per pattern: the points' rows, the observed and the missing
        coordinates (index arrays)."""
        order = np.argsort(self.index, kind="stable")
        bounds = np.searchsorted(self.index[order], np.arange(len(self.observed) + 1))
        for p, mask in enumerate(self.observed):
            rows = order[bounds[p] : bounds[p + 1]]
            yield rows, np.flatnonzero(mask), np.flatnonzero(~mask)


def marginal_logpdf(x_o: np.ndarray, means_o: np.ndarray, chol_oo: np.ndarray) -> np.ndarray:
    """``log N(x_o | mu_k[o], Sigma_k[o, o])`` (n, K) of points ``x_o`` (n, d) for the
    components' means ``means_o`` (K, d) and triangular factors ``chol_oo`` (K, d, d) of the
    observed block.

    Examples
    --------
    >>> from scipy.stats import multivariate_normal
    >>> cov = np.array([[[2.0, 0.5], [0.5, 1.0]]])
    >>> lp = marginal_logpdf(np.array([[0.3, -1.0]]), np.zeros((1, 2)), np.linalg.cholesky(cov))
    >>> bool(np.isclose(lp[0, 0], multivariate_normal([0, 0], cov[0]).logpdf([0.3, -1.0])))
    True
    """
    return _whitened(x_o, means_o, chol_oo)[2].T


def _whitened(x_o: np.ndarray, means_o: np.ndarray, chol: np.ndarray):
    """``L_k^-1`` (K, d, d), the whitened points ``L_k^-1 (x - mu_k[o])`` (K, n, d) and
    ``log N(x_o | mu_k[o], Sigma_k[o, o])`` (K, n) from the factors ``chol`` of the
    observed blocks: the K small factors inverted at once."""
    d = x_o.shape[1]
    inv = solve_lower_identity(chol)
    white = (x_o[None] - means_o[:, None]) @ inv.transpose(0, 2, 1)
    log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
    log_dens = -0.5 * np.square(white).sum(axis=2) - log_det[:, None] - 0.5 * d * _LOG_2PI
    return inv, white, log_dens


def conditional(
    x_o: np.ndarray, means: np.ndarray, cov: np.ndarray, obs: np.ndarray, mis: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The components' conditional Gaussians of the missing coordinates given the observed.

    Parameters
    ----------
    x_o : (n, d_o)
        The points' observed coordinates.
    means : (K, D)
    cov : (K, D, D)
        Full covariances.
    obs, mis : index arrays of the observed and missing coordinates.

    Returns
    -------
    log_dens : (n, K)
        ``log N(x_o | mu_k[o], Sigma_k[o, o])``.
    cond_means : (n, K, d_m)
    cond_cov : (K, d_m, d_m)
        The conditional covariance (the same for every point of the pattern).

    Examples
    --------
    >>> cov = np.array([[[1.0, 0.8], [0.8, 1.0]]])
    >>> _, m, c = conditional(np.array([[1.0]]), np.zeros((1, 2)), cov, np.array([0]),
    ...                       np.array([1]))
    >>> round(float(m[0, 0, 0]), 6), round(float(c[0, 0, 0]), 6)
    (0.8, 0.36)
    """
    chol = np.linalg.cholesky(cov[:, obs][:, :, obs])  # of Sigma_k[o, o], (K, d, d)
    inv, white, log_dens = _whitened(x_o, means[:, obs], chol)
    gain_t = inv @ cov[:, obs][:, :, mis]  # L_k^-1 Sigma_k[o, m], (K, d, d_m)
    cond_means = means[:, None, mis] + white @ gain_t  # (K, n, d_m)
    cond_cov = cov[:, mis][:, :, mis] - gain_t.transpose(0, 2, 1) @ gain_t
    return log_dens.T, cond_means.transpose(1, 0, 2), cond_cov
