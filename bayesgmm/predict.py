"""Uncertainty-aware predictions from posterior draws: memberships, densities, anomalies.

Every function works on the posterior draws in the data's units — ``weights``
(chain, draw, component), ``means`` (chain, draw, component, feature) and
``covariance`` (chain, draw, component, feature, feature_bis), present for every
covariance family — given as an ``xarray.DataTree`` (its ``posterior`` group is used)
or as the posterior ``xarray.Dataset`` itself.

For draw ``s`` the membership probabilities (responsibilities) are

``gamma_jk^(s) = pi_k N(x_j | mu_k, Sigma_k) / sum_l pi_l N(x_j | mu_l, Sigma_l)``,

computed in log space. Their posterior mean is the assignment probability; their
spread over draws is its uncertainty. Component-wise summaries assume the draws share
one labelling (relabel first); label-invariant quantities — the predictive density,
the co-clustering matrix, the per-draw entropy — do not need it.

Streaming
---------
Points are processed in chunks and, within a chunk, draws in blocks: for each block
the Cholesky factors of the covariances are turned into one matrix ``A`` so that the
Mahalanobis terms of all draws and components come from a single matrix product with
the points (the same scheme as :mod:`bayesgmm._gaussian`); ``A`` is computed once and
cached across point chunks. Running sums give the mean probabilities and a running
log-sum-exp the predictive density, so memory stays bounded whatever the number of
points and draws. Intervals need every draw's value for a point: they are computed
chunk by chunk over points (memory ``n_draws * n_components * chunk`` floats), and
``max_draws`` thins the draws evenly when that is too slow.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from bayesgmm._gaussian import FAR_LOG_DENSITY, limit_memberships
from bayesgmm._validation import check_new_data
from bayesgmm.exceptions import ConfigError, DataError, DegenerateFitError

__all__ = [
    "assignments_table",
    "co_clustering",
    "flag_anomalies",
    "membership_draws",
    "predict",
    "predict_proba",
    "sample",
    "score_samples",
]

_LOG_2PI = math.log(2.0 * math.pi)
_LOG_FLOOR = -600.0  # see bayesgmm._gaussian: exp() of terms below this is invisible
_WORK_ELEMS = 1 << 20  # float64 elements of the matrix-product buffer (8 MB)
_STORE_ELEMS = 1 << 23  # float64 elements of per-draw values kept for intervals (64 MB)
_KERNEL_CACHE_ELEMS = 1 << 25  # cache per-draw kernels up to 256 MB, else recompute
_MAX_DRAWS_BYTES = 1 << 30  # membership_draws refuses results larger than 1 GiB
_REQUIRED = {
    "weights": ("component",),
    "means": ("component", "feature"),
    "covariance": ("component", "feature", "feature_bis"),
}
INTERVAL_KINDS = ("hdi", "eti")


# --------------------------------------------------------------------------- #
# Posterior access
# --------------------------------------------------------------------------- #


def draw_arrays(post: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-draw ``weights`` (C, S, K), ``means`` (C, S, K, D), ``covariance`` (C, S, K, D, D)."""
    missing = [v for v in ("weights", "means", "covariance") if v not in post]
    if missing:
        raise DataError(
            f"the posterior lacks {missing}; it must come from bayesgmm.build_model "
            "(variables weights, means and covariance in the data's units)."
        )
    w = post["weights"].transpose("chain", "draw", "component").to_numpy()
    mu = post["means"].transpose("chain", "draw", "component", "feature").to_numpy()
    cov = (
        post["covariance"]
        .transpose("chain", "draw", "component", "feature", "feature_bis")
        .to_numpy()
    )
    return w, mu, cov


def draw_log_densities(post: xr.Dataset, X: np.ndarray) -> np.ndarray:
    """Mixture log density of every point at every draw's parameters, (C, S, n_samples)."""
    from bayesgmm._gaussian import log_mixture_density

    w, mu, cov = draw_arrays(post)
    C, S = w.shape[:2]
    out = np.empty((C, S, X.shape[0]))
    for c in range(C):
        for s in range(S):
            out[c, s] = log_mixture_density(X, w[c, s], mu[c, s], cov[c, s], "full")
    return out


def training_data(tree) -> np.ndarray | None:
    """The training data of a DataTree (``observed_data`` variable ``x``) as (obs, feature).

    ``None`` when ``tree`` is not a DataTree or holds no training data.
    """
    if not isinstance(tree, xr.DataTree) or "observed_data" not in tree.children:
        return None
    obs = tree["observed_data"].to_dataset()
    return obs["x"].transpose("obs", "feature").to_numpy() if "x" in obs else None


def _posterior_dataset(posterior) -> xr.Dataset:
    if posterior is None:
        raise DataError("no posterior given; fit the model first (BayesianGMM.fit).")
    if isinstance(posterior, xr.DataTree):
        if "posterior" not in posterior.children:
            raise DataError(
                "the DataTree has no 'posterior' group; pass the result of fit/sample_posterior."
            )
        posterior = posterior["posterior"].to_dataset()
    if not isinstance(posterior, xr.Dataset):
        raise DataError(
            f"posterior must be an xarray DataTree or Dataset; got {type(posterior).__name__}."
        )
    missing = [v for v in _REQUIRED if v not in posterior]
    if missing:
        raise DataError(
            f"the posterior lacks variable(s) {missing}; it needs 'weights', 'means' and "
            "'covariance' in the data's units (as bayesgmm.build_model records them)."
        )
    for name, core in _REQUIRED.items():
        dims = set(posterior[name].dims)
        if dims != {"chain", "draw", *core}:
            raise DataError(
                f"posterior[{name!r}] has dims {posterior[name].dims}; expected "
                f"('chain', 'draw', {', '.join(repr(d) for d in core)})."
            )
    return posterior


def _thin(ds: xr.Dataset, max_draws: int | None) -> xr.Dataset:
    """Keep at most about ``max_draws`` draws in total, evenly spaced within each chain."""
    if max_draws is None:
        return ds
    if isinstance(max_draws, bool) or not isinstance(max_draws, int | np.integer) or max_draws < 1:
        raise ConfigError(f"max_draws must be a positive integer or None; got {max_draws!r}.")
    n_chain, n_draw = ds.sizes["chain"], ds.sizes["draw"]
    per_chain = max(1, int(max_draws) // n_chain)
    if per_chain >= n_draw:
        return ds
    step = math.ceil(n_draw / per_chain)
    return ds.isel(draw=slice(None, None, step))


@dataclass
class _Draws:
    """Posterior draws flattened over (chain, draw), with per-block kernels."""

    log_weights: np.ndarray  # (S, K)
    means: np.ndarray  # (S, K, D)
    covariance: np.ndarray  # (S, K, D, D)
    center: np.ndarray  # (D,): subtracted from points and means (less cancellation)
    n_chain: int
    n_draw: int
    coords: dict
    feature_names: list[str]

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> _Draws:
        w, mu, cov = draw_arrays(ds)
        C, R, K, D = mu.shape
        if not (np.isfinite(w).all() and np.isfinite(mu).all() and np.isfinite(cov).all()):
            raise DataError("the posterior draws contain NaN or infinite values.")
        with np.errstate(divide="ignore"):
            log_w = np.log(np.asarray(w, dtype=np.float64).reshape(C * R, K))
        mu = np.asarray(mu, dtype=np.float64).reshape(C * R, K, D)
        coords = {
            "chain": ds["chain"].to_numpy(),
            "draw": ds["draw"].to_numpy(),
            "component": ds["component"].to_numpy() if "component" in ds.coords else np.arange(K),
        }
        names = (
            [str(f) for f in ds["feature"].to_numpy()]
            if "feature" in ds.coords
            else [f"feature_{j}" for j in range(D)]
        )
        return cls(
            log_weights=log_w,
            means=mu,
            covariance=np.asarray(cov, dtype=np.float64).reshape(C * R, K, D, D),
            center=mu.mean(axis=(0, 1)),
            n_chain=C,
            n_draw=R,
            coords=coords,
            feature_names=names,
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_draws_total, n_components, n_features)``."""
        return self.means.shape

    def chol(self, lo: int, hi: int) -> np.ndarray:
        """Lower Cholesky factors of the covariances of draws ``lo:hi``, (s, K, D, D)."""
        try:
            return np.linalg.cholesky(self.covariance[lo:hi])
        except np.linalg.LinAlgError:
            for s in range(lo, hi):
                for k in range(self.shape[1]):
                    try:
                        np.linalg.cholesky(self.covariance[s, k])
                    except np.linalg.LinAlgError:
                        chain, draw = divmod(s, self.n_draw)
                        raise DegenerateFitError(
                            f"the covariance of component {k} at chain {chain}, draw {draw} is "
                            "not positive definite; the posterior draws are corrupt or the "
                            "sampler diverged. Re-run the sampler or drop those draws."
                        ) from None
            raise

    def kernel(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """``(A, const)`` for draws ``lo:hi``.

        With ``y = inv(L) (x - mu) / sqrt(2)`` for each draw and component, the rows of
        ``A`` (s*K*D, 1+D) give ``y`` from the design rows ``[1, x - center]``, so the
        weighted log density is ``const - ||y||**2``; ``const`` (s, K) holds
        ``log w - log|L| - D/2 log(2 pi)``.
        """
        L = self.chol(lo, hi)
        s, K, D, _ = L.shape
        inv_L = np.linalg.inv(L)
        A = np.empty((s, K, D, 1 + D))
        A[..., 0] = -np.einsum("skij,skj->ski", inv_L, self.means[lo:hi] - self.center)
        A[..., 1:] = inv_L
        A *= math.sqrt(0.5)
        log_det = np.log(np.diagonal(L, axis1=-2, axis2=-1)).sum(axis=-1)
        const = self.log_weights[lo:hi] - log_det - 0.5 * D * _LOG_2PI
        return A.reshape(s * K * D, 1 + D), const


def _draws_and_data(posterior, X, max_draws) -> tuple[_Draws, np.ndarray]:
    ds = _posterior_dataset(posterior)
    draws = _Draws.from_dataset(_thin(ds, max_draws))
    if X is None:
        X = training_data(posterior)
        if X is None:
            raise DataError(
                "X is required: pass the points to predict, or a DataTree with an "
                "'observed_data' group (variable 'x') to use the training data."
            )
    return draws, check_new_data(X, draws.shape[2], draws.feature_names)


# --------------------------------------------------------------------------- #
# Streaming engine
# --------------------------------------------------------------------------- #


def _check_chunk(chunk_size) -> None:
    if chunk_size is not None and (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, int | np.integer)
        or chunk_size < 1
    ):
        raise ConfigError(f"chunk_size must be a positive integer or None; got {chunk_size!r}.")


class _Stream:
    """Weighted component log densities block by block: (draws block) x (points chunk)."""

    def __init__(self, draws: _Draws, X: np.ndarray, point_chunk: int) -> None:
        S, K, D = draws.shape
        self.draws, self.X = draws, X
        self.point_chunk = int(max(1, min(point_chunk, X.shape[0])))
        self.draw_block = int(max(1, min(S, _WORK_ELEMS // (K * D * self.point_chunk))))
        n_blocks = math.ceil(S / self.draw_block)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = (
            {} if S * K * D * (D + 1) <= _KERNEL_CACHE_ELEMS and X.shape[0] > point_chunk else None
        )
        self.blocks = [
            (b * self.draw_block, min(S, (b + 1) * self.draw_block)) for b in range(n_blocks)
        ]

    def _kernel(self, lo: int, hi: int):
        if self._cache is None:
            return self.draws.kernel(lo, hi)
        if lo not in self._cache:
            self._cache[lo] = self.draws.kernel(lo, hi)
        return self._cache[lo]

    def chunks(self) -> Iterator[tuple[int, int, Iterator]]:
        """Yield ``(start, stop, blocks)`` per point chunk; ``blocks`` yields
        ``(lo, hi, resp, log_dens)``: membership probabilities of shape
        (hi - lo, K, stop - start) and mixture log densities (hi - lo, stop - start)."""
        n = self.X.shape[0]
        for start in range(0, n, self.point_chunk):
            stop = min(n, start + self.point_chunk)
            yield start, stop, self._blocks(start, stop)

    def _blocks(self, start: int, stop: int):
        _, K, D = self.draws.shape
        ZT = np.empty((1 + D, stop - start))
        ZT[0] = 1.0
        with np.errstate(over="ignore", invalid="ignore"):
            ZT[1:] = (self.X[start:stop] - self.draws.center).T
        for lo, hi in self.blocks:
            A, const = self._kernel(lo, hi)
            with np.errstate(over="ignore", invalid="ignore"):
                g = A @ ZT
                np.square(g, out=g)
            lp = g.reshape(hi - lo, K, D, stop - start).sum(axis=2)
            np.subtract(const[:, :, None], lp, out=lp)
            log_dens, far = _normalise_inplace(lp)
            if far.any():
                self._far_points(A, const, start, stop, lp, far)
            yield lo, hi, lp, log_dens

    def _far_points(self, A, const, start, stop, resp, far) -> None:
        """Memberships of points too far from every component for float64 to resolve.

        See :func:`bayesgmm._gaussian.limit_memberships`: with ``x - center = s u``,
        ``A @ [0, u]`` is ``U^T u / sqrt(2)`` and ``A @ [1, 0]`` is
        ``-U^T (mu - center) / sqrt(2)``, which give the expansion's terms.
        """
        _, K, D = self.draws.shape
        cols = np.flatnonzero(far.any(axis=0))
        x = self.X[start:stop][cols]
        scale = np.maximum(1.0, np.abs(x).max(axis=1))
        u = np.empty((1 + D, cols.size))
        u[0] = 0.0
        u[1:] = (x / scale[:, None] - self.draws.center / scale[:, None]).T
        g1 = (A @ u).reshape(-1, K, D, cols.size)  # U^T u / sqrt(2)
        g0 = A[:, 0].reshape(-1, K, D)  # -U^T (mu - center) / sqrt(2)
        a = 2.0 * np.square(g1).sum(axis=2)
        b = -2.0 * np.einsum("skdc,skd->skc", g1, g0)
        c = (const - np.square(g0).sum(axis=2))[:, :, None]
        lim = limit_memberships(a, b, np.broadcast_to(c, a.shape))
        rows, where = np.nonzero(far[:, cols])
        resp[rows, :, cols[where]] = lim[rows, :, where]


def _normalise_inplace(lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Turn ``lp`` (s, K, n) into responsibilities in place; return the log densities
    (s, n) and a mask (s, n) of points too far from every component for float64 to
    resolve their memberships (see :data:`bayesgmm._gaussian.FAR_LOG_DENSITY`): those
    responsibilities are left undefined here (see :meth:`_Stream._far_points`)."""
    m = lp.max(axis=1, keepdims=True)
    far = ~(m > -FAR_LOG_DENSITY)  # also NaN: every term overflowed
    overflowed = ~np.isfinite(m)
    m[overflowed] = 0.0
    lp -= m
    with np.errstate(invalid="ignore"):
        np.maximum(lp, _LOG_FLOOR, out=lp)
    np.exp(lp, out=lp)
    total = lp.sum(axis=1, keepdims=True)
    lp /= total
    log_dens = np.log(total) + m
    log_dens[overflowed] = -np.inf  # below float64's range for every component
    return log_dens[:, 0, :], far[:, 0, :]


def _check_interval(prob, kind) -> None:
    if kind not in INTERVAL_KINDS:
        raise ConfigError(f"kind must be one of {list(INTERVAL_KINDS)}; got {kind!r}.")
    if isinstance(prob, bool) or not isinstance(prob, float | int) or not 0 < prob < 1:
        raise ConfigError(f"prob must be a number in (0, 1); got {prob!r}.")


def _interval(values: np.ndarray, prob: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """Interval over axis 0: equal-tailed, or highest-density (ArviZ's rule for HDI)."""
    n = values.shape[0]
    # values may hold -inf (log densities of points far from every component): an
    # interval end that interpolates towards -inf is -inf
    if kind == "eti":
        with np.errstate(invalid="ignore"):
            lo, hi = np.quantile(values, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
        return np.where(np.isnan(lo), -np.inf, lo), np.where(np.isnan(hi), -np.inf, hi)
    x = np.sort(values, axis=0)
    inc = math.floor(prob * n)
    if inc == 0 or inc >= n:
        return x[0], x[-1]
    with np.errstate(invalid="ignore"):
        widths = x[inc:] - x[: n - inc]
    widths[np.isnan(widths)] = 0.0  # both ends -inf
    i = np.argmin(widths, axis=0)
    lower = np.take_along_axis(x, i[None], axis=0)[0]
    upper = np.take_along_axis(x, (i + inc)[None], axis=0)[0]
    return lower, upper


@dataclass
class _Summary:
    proba: np.ndarray  # (N, K) posterior mean membership
    proba_lower: np.ndarray | None
    proba_upper: np.ndarray | None
    mean_entropy: np.ndarray | None  # (N,) mean over draws of the per-draw entropy
    log_density: np.ndarray | None  # (N,) log of the mean mixture density over draws
    log_density_lower: np.ndarray | None
    log_density_upper: np.ndarray | None


def _summarise(
    draws: _Draws,
    X: np.ndarray,
    *,
    proba_intervals: bool = False,
    entropy: bool = False,
    density: bool = False,
    density_intervals: bool = False,
    prob: float = 0.94,
    kind: str = "hdi",
    chunk_size: int | None = None,
) -> _Summary:
    S, K, _ = draws.shape
    N = X.shape[0]
    per_point = S * (K * proba_intervals + density_intervals)
    if chunk_size is None:
        chunk_size = max(1, _STORE_ELEMS // per_point) if per_point else 4096
    stream = _Stream(draws, X, chunk_size)
    proba = np.zeros((N, K))
    p_lo = np.empty((N, K)) if proba_intervals else None
    p_hi = np.empty((N, K)) if proba_intervals else None
    ent = np.zeros(N) if entropy else None
    dens = np.full(N, -np.inf) if density else None
    d_lo = np.empty(N) if density_intervals else None
    d_hi = np.empty(N) if density_intervals else None
    for start, stop, blocks in stream.chunks():
        n = stop - start
        store_p = np.empty((S, K, n)) if proba_intervals else None
        store_d = np.empty((S, n)) if density_intervals else None
        acc = np.zeros((K, n))
        for lo, hi, lp, log_dens in blocks:
            acc += lp.sum(axis=0)
            if store_p is not None:
                store_p[lo:hi] = lp
            if store_d is not None:
                store_d[lo:hi] = log_dens
            if ent is not None:
                with np.errstate(divide="ignore", invalid="ignore"):
                    plogp = np.where(lp > 0, lp * np.log(lp), 0.0)
                ent[start:stop] -= plogp.sum(axis=(0, 1))
            if dens is not None:
                m = log_dens.max(axis=0)
                m_safe = np.where(np.isfinite(m), m, 0.0)  # -inf everywhere: far points
                with np.errstate(divide="ignore"):
                    block_lse = np.log(np.exp(log_dens - m_safe).sum(axis=0)) + m_safe
                dens[start:stop] = np.logaddexp(dens[start:stop], block_lse)
        proba[start:stop] = (acc / S).T
        if store_p is not None:
            lower, upper = _interval(store_p.reshape(S, K * n), prob, kind)
            p_lo[start:stop] = lower.reshape(K, n).T
            p_hi[start:stop] = upper.reshape(K, n).T
        if store_d is not None:
            d_lo[start:stop], d_hi[start:stop] = _interval(store_d, prob, kind)
    if ent is not None:
        ent /= S
    if dens is not None:
        dens -= math.log(S)
    return _Summary(proba, p_lo, p_hi, ent, dens, d_lo, d_hi)


# --------------------------------------------------------------------------- #
# Assignments
# --------------------------------------------------------------------------- #


def membership_draws(
    posterior, X: ArrayLike | None = None, *, max_draws: int | None = None
) -> xr.DataArray:
    """Membership probabilities of every point for every posterior draw.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
        The fit's DataTree (``posterior`` group used) or the posterior Dataset.
    X : array-like of shape (n_samples, n_features), optional
        Points; defaults to the training data in the DataTree's ``observed_data``.
    max_draws : int, optional
        Keep about this many draws in total, evenly spaced within each chain.

    Returns
    -------
    xarray.DataArray
        ``gamma`` with dims (chain, draw, obs, component); sums to 1 over ``component``.

    Raises
    ------
    ConfigError
        The result would exceed 1 GiB (use ``max_draws`` or :func:`predict_proba`).

    Examples
    --------
    >>> from bayesgmm.predict import _example_posterior
    >>> post = _example_posterior()
    >>> g = membership_draws(post, [[0.0, 0.0], [1.5, 1.5]])
    >>> g.dims
    ('chain', 'draw', 'obs', 'component')
    >>> bool(abs(g.sum("component") - 1).max() < 1e-12)
    True
    """
    draws, X = _draws_and_data(posterior, X, max_draws)
    S, K, _ = draws.shape
    N = X.shape[0]
    if S * N * K * 8 > _MAX_DRAWS_BYTES:
        raise ConfigError(
            f"{S} draws x {N} points x {K} components would need "
            f"{S * N * K * 8 / 2**30:.1f} GiB; pass max_draws (e.g. max_draws=500) or use "
            "predict_proba(..., return_intervals=True), which streams."
        )
    out = np.empty((S, N, K))
    stream = _Stream(draws, X, 4096)
    for start, stop, blocks in stream.chunks():
        for lo, hi, lp, _ in blocks:
            out[lo:hi, start:stop] = lp.transpose(0, 2, 1)
    return xr.DataArray(
        out.reshape(draws.n_chain, draws.n_draw, N, K),
        dims=("chain", "draw", "obs", "component"),
        coords={
            "chain": draws.coords["chain"],
            "draw": draws.coords["draw"],
            "obs": np.arange(N),
            "component": draws.coords["component"],
        },
        name="gamma",
    )


def predict_proba(
    posterior,
    X: ArrayLike | None = None,
    *,
    return_intervals: bool = False,
    prob: float = 0.94,
    kind: str = "hdi",
    max_draws: int | None = None,
    chunk_size: int | None = None,
):
    """Posterior mean membership probabilities, optionally with intervals over draws.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
        Defaults to the training data (``observed_data``) of a DataTree.
    return_intervals : bool, default=False
        Also return the lower and upper ends of a ``prob`` interval per point and component.
    prob : float in (0, 1), default=0.94
    kind : {"hdi", "eti"}, default="hdi"
        Highest-density (ArviZ's rule) or equal-tailed interval.
    max_draws : int, optional
        Use about this many draws, evenly thinned (faster intervals on big data).
    chunk_size : int, optional
        Points per chunk (memory knob); chosen automatically by default.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_components)
    lower, upper : ndarray of shape (n_samples, n_components)
        Only with ``return_intervals=True``.

    Examples
    --------
    >>> from bayesgmm.predict import _example_posterior
    >>> p = predict_proba(_example_posterior(), [[0.0, 0.0], [3.0, 3.0]])
    >>> p.argmax(axis=1)
    array([0, 1])
    """
    _check_interval(prob, kind)
    _check_chunk(chunk_size)
    draws, X = _draws_and_data(posterior, X, max_draws)
    res = _summarise(
        draws, X, proba_intervals=return_intervals, prob=prob, kind=kind, chunk_size=chunk_size
    )
    if return_intervals:
        return res.proba, res.proba_lower, res.proba_upper
    return res.proba


def predict(posterior, X: ArrayLike | None = None, **kwargs) -> np.ndarray:
    """Most probable component of each point (argmax of :func:`predict_proba`).

    Examples
    --------
    >>> from bayesgmm.predict import _example_posterior
    >>> predict(_example_posterior(), [[0.0, 0.0], [3.0, 3.0]])
    array([0, 1])
    """
    return predict_proba(posterior, X, **kwargs).argmax(axis=1)


def assignments_table(
    posterior,
    X: ArrayLike | None = None,
    *,
    prob: float = 0.94,
    kind: str = "hdi",
    max_draws: int | None = None,
    chunk_size: int | None = None,
) -> pd.DataFrame:
    """Per-point assignment summary with uncertainty.

    Columns: ``cluster`` (most probable component), ``max_prob``, ``uncertainty``
    (``1 - max_prob``), ``entropy`` (of the mean membership probabilities, in nats;
    at most ``log K``), ``mean_draw_entropy`` (mean over draws of each draw's entropy:
    the part of ``entropy`` due to overlapping components rather than to parameter
    uncertainty), then ``prob_<k>``, ``prob_<k>_lower``, ``prob_<k>_upper`` per
    component.

    Examples
    --------
    >>> from bayesgmm.predict import _example_posterior
    >>> t = assignments_table(_example_posterior(), [[0.0, 0.0], [1.5, 1.5]])
    >>> t["cluster"].tolist()
    [0, 0]
    >>> bool(t["uncertainty"].iloc[1] > t["uncertainty"].iloc[0])
    True
    """
    _check_interval(prob, kind)
    _check_chunk(chunk_size)
    draws, X = _draws_and_data(posterior, X, max_draws)
    res = _summarise(
        draws, X, proba_intervals=True, entropy=True, prob=prob, kind=kind, chunk_size=chunk_size
    )
    p = res.proba
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    table = pd.DataFrame(
        {
            "cluster": p.argmax(axis=1),
            "max_prob": p.max(axis=1),
            "uncertainty": 1.0 - p.max(axis=1),
            "entropy": entropy,
            "mean_draw_entropy": res.mean_entropy,
        },
        index=pd.RangeIndex(X.shape[0], name="obs"),
    )
    for k, label in enumerate(draws.coords["component"]):
        table[f"prob_{label}"] = p[:, k]
        table[f"prob_{label}_lower"] = res.proba_lower[:, k]
        table[f"prob_{label}_upper"] = res.proba_upper[:, k]
    table.attrs.update(prob=prob, kind=kind)
    return table


def co_clustering(
    posterior,
    X: ArrayLike | None = None,
    *,
    max_points: int = 5000,
    max_draws: int | None = 1000,
) -> np.ndarray:
    """Posterior probability that points ``i`` and ``j`` belong to the same component.

    Given the parameters, assignments are independent, so for ``i != j`` this is
    ``E[sum_k gamma_ik gamma_jk]`` over the posterior; the diagonal is 1. It is
    label-invariant (no relabelling needed). Cost grows as
    ``n_samples**2 * n_draws * n_components``, hence the limits.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
    max_points : int, default=5000
        Refuse larger inputs (the matrix alone is ``8 * n**2`` bytes).
    max_draws : int or None, default=1000
        Draws used, evenly thinned (Monte Carlo error about ``0.5 / sqrt(max_draws)``
        at most for independent draws); ``None`` uses all.

    Returns
    -------
    ndarray of shape (n_samples, n_samples)

    Examples
    --------
    >>> from bayesgmm.predict import _example_posterior
    >>> cc = co_clustering(_example_posterior(), [[0.0, 0.0], [0.1, 0.0], [3.0, 3.0]])
    >>> bool(cc[0, 1] > 0.9 and cc[0, 2] < 0.1)
    True
    """
    draws, X = _draws_and_data(posterior, X, max_draws)
    N = X.shape[0]
    if N > max_points:
        raise DataError(
            f"co_clustering of {N} points needs a {N}x{N} matrix ({8 * N * N / 2**30:.1f} GiB) "
            f"and time ~N^2; it is limited to max_points={max_points}. Subsample the points "
            "or raise max_points."
        )
    S = draws.shape[0]
    out = np.zeros((N, N))
    stream = _Stream(draws, X, N)
    for _, _, blocks in stream.chunks():
        for lo, hi, lp, _ in blocks:
            G = lp.reshape((hi - lo) * lp.shape[1], N)
            out += G.T @ G
    out /= S
    np.fill_diagonal(out, 1.0)
    return out


# --------------------------------------------------------------------------- #
# Density and anomalies
# --------------------------------------------------------------------------- #


def score_samples(
    posterior,
    X: ArrayLike | None = None,
    *,
    return_intervals: bool = False,
    prob: float = 0.94,
    kind: str = "eti",
    max_draws: int | None = None,
    chunk_size: int | None = None,
):
    """Log posterior predictive density of each point.

    ``log p(x | data) ~= log( (1/S) sum_s sum_k pi_k^(s) N(x | mu_k^(s), Sigma_k^(s)) )``
    over the ``S`` posterior draws, accumulated as a streaming log-sum-exp.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
    return_intervals : bool, default=False
        Also return a ``prob`` interval over draws of the per-draw log density
        ``log p(x | theta_s)`` (how much the density is uncertain).
    prob : float in (0, 1), default=0.94
    kind : {"eti", "hdi"}, default="eti"
    max_draws, chunk_size : int, optional
        As in :func:`predict_proba`.

    Returns
    -------
    log_density : ndarray of shape (n_samples,)
    lower, upper : ndarray of shape (n_samples,)
        Only with ``return_intervals=True``.

    Examples
    --------
    >>> from bayesgmm.predict import _example_posterior
    >>> ld = score_samples(_example_posterior(), [[0.0, 0.0], [20.0, 20.0]])
    >>> bool(ld[0] > ld[1])
    True
    """
    _check_interval(prob, kind)
    _check_chunk(chunk_size)
    draws, X = _draws_and_data(posterior, X, max_draws)
    res = _summarise(
        draws,
        X,
        density=True,
        density_intervals=return_intervals,
        prob=prob,
        kind=kind,
        chunk_size=chunk_size,
    )
    if return_intervals:
        return res.log_density, res.log_density_lower, res.log_density_upper
    return res.log_density


def flag_anomalies(
    scores: ArrayLike,
    *,
    threshold: float | None = None,
    quantile: float = 0.01,
    train_scores: ArrayLike | None = None,
) -> pd.DataFrame:
    """Flag points whose log predictive density falls below a threshold.

    Parameters
    ----------
    scores : array-like of shape (n_samples,)
        Log predictive densities (:func:`score_samples`).
    threshold : float, optional
        A log-density threshold; when given, ``quantile`` and ``train_scores`` are unused.
    quantile : float in (0, 1), default=0.01
        Otherwise the threshold is this quantile of ``train_scores`` (or, without them, of
        ``scores`` themselves): about this fraction of training points is flagged.
    train_scores : array-like, optional
        Log predictive densities of the training data.

    Returns
    -------
    pandas.DataFrame
        Index ``obs``; columns ``score`` and ``is_anomaly``; sorted by nothing (same order
        as ``scores``). ``attrs["threshold"]`` holds the threshold used.

    Examples
    --------
    >>> t = flag_anomalies([-1.0, -2.0, -30.0], threshold=-10.0)
    >>> t["is_anomaly"].tolist()
    [False, False, True]
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise DataError(f"scores must be a non-empty 1-D array; got shape {s.shape}.")
    if np.isnan(s).any():
        raise DataError("scores contain NaN; score the points with score_samples first.")
    if threshold is not None:
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, numbers.Real)
            or not np.isfinite(threshold)
        ):
            raise ConfigError(f"threshold must be a finite number; got {threshold!r}.")
        thr = float(threshold)
    else:
        if isinstance(quantile, bool) or not isinstance(quantile, numbers.Real):
            raise ConfigError(f"quantile must be a number in (0, 1); got {quantile!r}.")
        if not 0 < quantile < 1:
            raise ConfigError(f"quantile must be in (0, 1); got {quantile!r}.")
        ref = s if train_scores is None else np.asarray(train_scores, dtype=np.float64)
        if ref.ndim != 1 or ref.size == 0 or np.isnan(ref).any():
            raise DataError("train_scores must be a non-empty 1-D array without NaN.")
        thr = float(np.quantile(ref, quantile))
    table = pd.DataFrame(
        {"score": s, "is_anomaly": s < thr}, index=pd.RangeIndex(s.size, name="obs")
    )
    table.attrs["threshold"] = thr
    return table


# --------------------------------------------------------------------------- #
# Generative side
# --------------------------------------------------------------------------- #


def _rng(random_seed) -> np.random.Generator:
    if isinstance(random_seed, np.random.Generator):
        return random_seed
    return np.random.default_rng(random_seed)


def _draw_points(
    rng: np.random.Generator,
    log_weights: np.ndarray,
    means: np.ndarray,
    chol: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One point per row: component ~ weights, then the Gaussian of that component.

    ``log_weights`` (n, K), ``means`` (n, K, D), ``chol`` (n, K, D, D).
    """
    n, K, D = means.shape
    cw = np.cumsum(np.exp(log_weights), axis=1)
    u = rng.random(n) * cw[:, -1]
    comp = np.minimum((u[:, None] >= cw).sum(axis=1), K - 1)
    rows = np.arange(n)
    eps = rng.standard_normal((n, D))
    x = means[rows, comp] + np.einsum("nij,nj->ni", chol[rows, comp], eps)
    return x, comp


def sample(posterior, n_samples: int = 1, *, random_seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Draw new points from the posterior predictive mixture.

    Each point picks a posterior draw uniformly, then a component with that draw's
    weights, then a Gaussian with that draw's mean and covariance.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    n_samples : int, default=1
    random_seed : int or numpy Generator, optional

    Returns
    -------
    X : ndarray of shape (n_samples, n_features)
    components : ndarray of shape (n_samples,)
        Component index each point came from.

    Examples
    --------
    >>> from bayesgmm.predict import _example_posterior
    >>> X, y = sample(_example_posterior(), 5, random_seed=0)
    >>> X.shape, y.shape
    ((5, 2), (5,))
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise ConfigError(f"n_samples must be a positive integer; got {n_samples!r}.")
    draws = _Draws.from_dataset(_posterior_dataset(posterior))
    rng = _rng(random_seed)
    S, K, D = draws.shape
    idx = rng.integers(S, size=int(n_samples))
    X = np.empty((int(n_samples), D))
    comp = np.empty(int(n_samples), dtype=np.int64)
    block = max(1, _WORK_ELEMS // (K * D * D))
    for start in range(0, int(n_samples), block):
        sel = idx[start : start + block]
        X[start : start + block], comp[start : start + block] = _draw_points(
            rng,
            draws.log_weights[sel],
            draws.means[sel],
            np.linalg.cholesky(draws.covariance[sel]),
        )
    return X, comp


def replicate(posterior, n_obs: int, *, random_seed=None) -> np.ndarray:
    """A replicated dataset of ``n_obs`` points for every posterior draw.

    Returns
    -------
    ndarray of shape (n_chain, n_draw, n_obs, n_features)

    Examples
    --------
    >>> from bayesgmm.predict import _example_posterior
    >>> replicate(_example_posterior(), 3, random_seed=0).shape
    (2, 10, 3, 2)
    """
    if isinstance(n_obs, bool) or not isinstance(n_obs, int | np.integer) or n_obs < 1:
        raise ConfigError(f"n_obs must be a positive integer; got {n_obs!r}.")
    draws = _Draws.from_dataset(_posterior_dataset(posterior))
    rng = _rng(random_seed)
    S, K, D = draws.shape
    n = int(n_obs)
    out = np.empty((S, n, D))
    weights = np.exp(draws.log_weights)
    for s in range(S):
        L = draws.chol(s, s + 1)[0]
        comp = rng.choice(K, size=n, p=weights[s] / weights[s].sum())
        eps = rng.standard_normal((n, D))
        out[s] = draws.means[s][comp] + np.einsum("nij,nj->ni", L[comp], eps)
    return out.reshape(draws.n_chain, draws.n_draw, int(n_obs), D)


def _example_posterior(n_chain: int = 2, n_draw: int = 10, seed: int = 0) -> xr.Dataset:
    """A small synthetic 2-component, 2-feature posterior (for examples and tests)."""
    rng = np.random.default_rng(seed)
    shape = (n_chain, n_draw)
    w = np.stack([np.full(shape, 0.5), np.full(shape, 0.5)], axis=-1)
    w += rng.normal(scale=0.02, size=shape)[..., None] * np.array([1.0, -1.0])
    mu = np.array([[0.0, 0.0], [3.0, 3.0]]) + rng.normal(scale=0.05, size=(*shape, 2, 2))
    cov = np.broadcast_to(0.5 * np.eye(2), (*shape, 2, 2, 2)).copy()
    cov *= np.exp(rng.normal(scale=0.05, size=(*shape, 2, 1, 1)))
    return xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        },
        coords={
            "chain": np.arange(n_chain),
            "draw": np.arange(n_draw),
            "component": [0, 1],
            "feature": ["a", "b"],
            "feature_bis": ["a", "b"],
        },
    )
