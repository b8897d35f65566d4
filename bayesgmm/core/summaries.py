"""Streaming summaries of memberships and densities over posterior draws, with intervals.

:func:`summarise` walks the draws and points with the mixture engine's
:class:`~bayesgmm.core.engine.Stream`, accumulating posterior mean memberships, entropies
and the predictive density, and -- chunk by chunk over points -- intervals over draws;
memory stays bounded whatever the numbers of points and draws. The public predictions
in :mod:`bayesgmm.core.predict` are built on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bayesgmm.core.checks import integer, optional, real
from bayesgmm.core.data import check_new_data
from bayesgmm.core.draws import (
    Draws,
    missing_of,
    posterior_dataset,
    thin,
    training_data,
    training_labels,
    training_noise,
)
from bayesgmm.core.engine import Stream
from bayesgmm.core.noise import check_noise_cov
from bayesgmm.exceptions import ConfigError, DataError

__all__ = ["INTERVAL_KINDS", "Summary", "check_chunk", "check_interval", "draws_and_data",
           "interval", "interval_label", "row_terms", "summarise"]  # fmt: skip

_STORE_ELEMS = 1 << 23  # float64 elements of per-draw values kept for intervals (64 MB)
INTERVAL_KINDS = ("hdi", "eti")
_CHUNK = optional(integer(1))
_PROB = real(0, 1, lo_open=True, hi_open=True)


def draws_and_data(posterior, X, max_draws) -> tuple[Draws, np.ndarray]:
    ds = posterior_dataset(posterior)
    draws = Draws.from_dataset(thin(ds, max_draws))
    if X is None:
        X = training_data(posterior)
        if X is None:
            raise DataError(
                "X is required: pass the points to predict, or a DataTree with an "
                "'observed_data' group (variable 'x') to use the training data."
            )
    missing = missing_of(posterior)
    return draws, check_new_data(X, draws.shape[2], draws.feature_names, missing=missing)


def noise_for(posterior, X: np.ndarray, noise_cov, training: bool = False) -> np.ndarray | None:
    """The measurement errors of the (validated) points ``X``, checked (n, D, D)
    (:func:`~bayesgmm.core.noise.check_noise_cov`): ``noise_cov`` when given; for a fit with
    errors (``noise_cov`` at ``fit``), its training rows' own errors when ``training``
    (``X`` not given, so the training data); else None (points known exactly)."""
    if noise_cov is not None:
        return check_noise_cov(noise_cov, X)
    return training_noise(posterior) if training else None


def row_terms(posterior, X: np.ndarray, noise_cov, training: bool = False) -> dict:
    """What the (validated) points ``X`` carry besides their values, as :class:`Stream`
    takes it: ``noise_cov`` (:func:`noise_for`) and ``labels``, the known labels of a
    semi-supervised fit's training rows when ``training`` (their memberships are then
    fixed; :mod:`bayesgmm.core.labels`), else None.

    ``training`` is for ``X`` not given (None: the training data). Points passed
    explicitly are new points, whatever their values, so that a row's prediction never
    depends on which other rows come with it."""
    labels = training_labels(posterior) if training else None
    return {"noise_cov": noise_for(posterior, X, noise_cov, training), "labels": labels}


def check_chunk(chunk_size) -> None:
    if not _CHUNK(chunk_size):
        raise ConfigError(f"chunk_size must be a positive integer or None; got {chunk_size!r}.")


def check_interval(prob, kind) -> None:
    if kind not in INTERVAL_KINDS:
        raise ConfigError(f"kind must be one of {list(INTERVAL_KINDS)}; got {kind!r}.")
    if not _PROB(prob):
        raise ConfigError(f"prob must be a number in (0, 1); got {prob!r}.")


def interval_label(prob: float, kind: str) -> str:
    """The short name of an interval in column names, as ArviZ's summary puts it.

    Examples
    --------
    >>> interval_label(0.94, "hdi"), interval_label(0.5, "eti")
    ('hdi94', 'eti50')
    """
    return f"{kind}{round(100 * prob, 4):g}"


def interval(values: np.ndarray, prob: float, kind: str) -> tuple[np.ndarray, np.ndarray]:
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
class Summary:
    proba: np.ndarray  # (N, K) posterior mean membership
    proba_lower: np.ndarray | None
    proba_upper: np.ndarray | None
    mean_entropy: np.ndarray | None  # (N,) mean over draws of the per-draw entropy
    log_density: np.ndarray | None  # (N,) log of the mean mixture density over draws
    log_density_lower: np.ndarray | None
    log_density_upper: np.ndarray | None


def summarise(
    draws: Draws,
    X: np.ndarray,
    *,
    proba_intervals: bool = False,
    entropy: bool = False,
    density: bool = False,
    density_intervals: bool = False,
    prob: float = 0.94,
    kind: str = "hdi",
    chunk_size: int | None = None,
    noise_cov: np.ndarray | None = None,  # (n, D, D), checked: see noise_for
    labels: np.ndarray | None = None,  # (n,) training rows' known labels: see row_terms
) -> Summary:
    S, K, N = draws.shape[0], draws.n_rows, X.shape[0]  # (K + 1 rows with a background)
    per_point = S * (K * proba_intervals + density_intervals)
    if chunk_size is None:
        chunk_size = max(1, _STORE_ELEMS // per_point) if per_point else 4096
    stream = Stream(draws, X, chunk_size, noise_cov, labels)
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
            lower, upper = interval(store_p.reshape(S, K * n), prob, kind)
            p_lo[start:stop] = lower.reshape(K, n).T
            p_hi[start:stop] = upper.reshape(K, n).T
        if store_d is not None:
            d_lo[start:stop], d_hi[start:stop] = interval(store_d, prob, kind)
    if ent is not None:
        ent /= S
    if dens is not None:
        dens -= math.log(S)
    return Summary(proba, p_lo, p_hi, ent, dens, d_lo, d_hi)
