"""One EM run: the E-step (through the mixture engine), the ECM M-step, re-seeding of
collapsed components, and the iteration (:class:`EMRun`), for :func:`bayesgmm.core.em.fit_em`.

Each point may carry a frequency weight ``w_i`` (``sample_weight``): the objective is
``sum_i w_i log p(x_i)`` (plus the prior's log density), and every sufficient statistic
is ``sum_i w_i r_ik [1, x_i, x_i x_i^T]``, so integer weights give the fit of the data
with each row repeated ``w_i`` times (bit for bit up to rounding). Unweighted fits use
``w_i = 1`` without forming it.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from bayesgmm.core.background import NOISE_START, guess_noise, noise_turn
from bayesgmm.core.em_init import kmeans_pp_resp
from bayesgmm.core.em_prior import EMPrior, PriorTerms
from bayesgmm.core.engine import Kernel, design, mixture_pass
from bayesgmm.core.families import CovarianceFamily
from bayesgmm.core.labels import start_memberships
from bayesgmm.core.priors import column_moments, component_variance

__all__ = ["EMRun", "RunFailed"]

_WEIGHT_FLOOR = 1e-10  # smallest mixture weight EM returns (see EMPrior, alpha < 1)
_MIN_NK_FRACTION = 1e-10  # MLE: a component with N_k < this * n has died
_COLLAPSE_RTOL = 1e-12  # MLE: scatter variance below this * min column variance = collapsed
_STATS_MAX_BYTES = 1 << 28  # full: precompute x x^T rows only while they fit in 256 MB


class RunFailed(Exception):
    """A start kept collapsing; the fit moves on to the next start."""


class _State:
    """Mixture parameters in centred coordinates, with their Cholesky factors."""

    __slots__ = ("chol", "cov", "means", "prec_chol", "weights")

    def __init__(self, weights, means, cov, chol, prec_chol) -> None:
        self.weights, self.means, self.cov = weights, means, cov
        self.chol, self.prec_chol = chol, prec_chol


class EMRun:
    """Everything one fit needs: centred data, design rows, prior constants, buffers.

    ``sample_weight`` (n,) or None: frequency weights of the points (see the module
    docstring); ``n`` is then their sum, the data's effective size. ``labels`` (n,) or
    None: known components (-1: unknown; :mod:`bayesgmm.core.labels`), whose points'
    memberships are fixed in every E-step. ``background``: ``log(1 / V)`` of a uniform
    background-noise component (:mod:`bayesgmm.core.background`), or None; with it the
    state's weights have K + 1 entries, the background's last. ``noise_init`` (n,) bool or
    None: the points the user guesses to be noise (mclust's ``initialization$noise``);
    every start then begins with them in the background, at their share of the weight,
    and seeds the Gaussians from the other points. Without it, the starts take the turns
    of :func:`~bayesgmm.core.background.noise_turn`; the background starts at weight
    ``NOISE_START`` or the guess's share.
    """

    def __init__(
        self,
        X: np.ndarray,
        K: int,
        fam: CovarianceFamily,
        prior: EMPrior | None,
        reg_covar,
        sample_weight: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        background: float | None = None,
        noise_init: np.ndarray | None = None,
    ):
        D = X.shape[1]
        self.w, self.labels, self.background = sample_weight, labels, background
        self.background_count = 0.0  # the background's N_0 at the last E-step
        n = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        self.noise_init, self._guess, self.n_starts = noise_init, None, 0
        self.noise_start = NOISE_START  # the background's weight at the start
        self.n, self.D, self.K, self.fam, self.reg_covar = n, D, K, fam, reg_covar
        self.center, var = column_moments(X, sample_weight, ddof=1)
        self.X = X - self.center  # centring keeps sum r x x^T - N mu mu^T well conditioned
        self.collapse_var = _COLLAPSE_RTOL * var.min()
        self.min_nk = _MIN_NK_FRACTION * n
        self.default_cov = fam.default_cov(component_variance(var, K), K)
        # rows: 1, x, (x**2 | ||x||**2 | packed x x^T); aux: what the M-step needs besides
        self.ZT, self.aux = fam.em_design(
            self.X, design(self.X, fam), _STATS_MAX_BYTES, sample_weight
        )
        self.resp = np.empty((K + (background is not None), X.shape[0]))
        if prior is None:
            self.prior = None
        else:
            self.prior = PriorTerms(replace(prior, mean_loc=prior.mean_loc - self.center), fam)

    # -- sufficient statistics and E-step ----------------------------------- #

    def stats(self, resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``N_k``, ``s_k = sum_i w_i r_ik x_i`` and the family's second moments."""
        D = self.D
        if self.w is not None:
            resp = resp * self.w
        S = resp @ self.ZT.T
        N, Sx = S[:, 0], S[:, 1 : 1 + D]
        return N, Sx, self.fam.second_moments(S, self.ZT, resp, self.X, self.aux)

    def e_step(self, st: _State) -> tuple[float, tuple, np.ndarray]:
        K = self.K
        log_w = np.log(st.weights)
        kernel = Kernel(self.fam, st.means[None], st.prec_chol[None], log_w[None, :K])
        bg = None if self.background is None else log_w[K] + self.background
        log_norm, resp = mixture_pass(self.ZT, kernel, self.resp, self.labels, bg)
        loglik = float(log_norm.sum() if self.w is None else log_norm @ self.w)
        return loglik, self._stats_beside(resp[:K], None if bg is None else resp[K]), log_norm

    def _stats_beside(self, resp: np.ndarray, noise: np.ndarray | None) -> tuple:
        """The Gaussians' statistics from their memberships ``resp`` (K, n), beside the
        background's ``noise`` (n,) when there is one (its weighted sum kept as
        ``background_count``)."""
        stats = self.stats(resp)
        if noise is not None:
            self.background_count = float(noise.sum() if self.w is None else noise @ self.w)
            if not self.fam.per_component:
                # the shared families' scatter starts from sum_i x_i x_i^T, which assumes
                # the memberships of the Gaussians sum to 1: here they sum to 1 - r_i0
                g = 1.0 - noise if self.w is None else (1.0 - noise) * self.w
                stats = (*stats, (self.X * g[:, None]).T @ self.X)
        return stats

    def objective(self, loglik: float, st: _State) -> float:
        if self.prior is None:
            return loglik
        # the background's weight has a flat Dirichlet term (alpha = 1): nothing to add
        weights = st.weights[: self.K]
        return loglik + self.prior.log_density(weights, st.means, st.chol, st.prec_chol)

    # -- M-step (ECM) --------------------------------------------------------- #

    def m_step(self, st: _State | None, stats) -> tuple[np.ndarray, ...]:
        """New weights, means, covariances and the collapse masks ``singular``, ``dead``.

        ``singular`` has shape (K,) (shape (1,) for a shared covariance) and flags
        singular scatter; ``dead`` (K,) flags components without points. Both are only
        set in maximum likelihood fits: with a prior every update is well defined.
        """
        N, Sx, second, *rest = stats  # a 4th entry: the scatter's aux (missing values)
        aux = rest[0] if rest else self.aux
        pt, fam, D = self.prior, self.fam, self.D
        counts = N if pt is None else N + pt.alpha - 1.0
        if self.background is not None:  # the background's weight (a flat prior on it)
            counts = np.append(counts, self.background_count)
        weights = np.maximum(counts, 0.0)
        weights /= weights.sum()
        np.maximum(weights, _WEIGHT_FLOOR, out=weights)
        weights /= weights.sum()
        safe_n = np.maximum(N, np.finfo(float).tiny)
        if pt is None or st is None:
            means = Sx / safe_n[:, None]
        else:
            means = fam.map_means(N, Sx, st.cov, pt.m0, pt.s0_sq)
        # scatter about the new means: S_k = sum_i r_ik (x_i - mu_k)(x_i - mu_k)^T
        scatter = fam.scatter(N, Sx, second, means, aux)
        previous = None if st is None else st.cov  # where an iterative M-step starts
        if pt is not None:
            cov = fam.map_covariance(scatter, N, pt.cov, previous=previous)
            singular = np.zeros(self.K if fam.per_component else 1, dtype=bool)
            return weights, means, cov, singular, np.zeros(self.K, dtype=bool)
        # maximum likelihood: reg_covar on the diagonal, detect collapse (singular scatter)
        cov, singular = fam.ml_covariance(
            scatter, N, safe_n, self.reg_covar, self.collapse_var, D, previous=previous
        )
        dead = (N < self.min_nk) | ~np.isfinite(means).all(axis=1)
        return weights, means, cov, singular, dead

    # -- building states, re-seeding ------------------------------------------ #

    def build(self, weights, means, cov) -> tuple[_State | None, np.ndarray]:
        chol, bad = self.fam.safe_chol(cov)
        if bad.any():
            return None, bad
        return _State(weights, means, cov, chol, self.fam.prec_chol(chol)), bad

    def reseed(self, weights, means, cov, singular, dead, log_norm) -> None:
        """Move collapsed components to poorly fitted points with data-scaled covariances."""
        per_component = self.fam.per_component
        if per_component:
            comps = np.flatnonzero(singular | dead)
        else:  # a collapsed shared covariance is reset as a whole
            if singular.any():
                cov[...] = self.default_cov
            comps = np.flatnonzero(dead)
        if comps.size == 0:
            return
        keep = np.setdiff1d(np.arange(self.K), comps)
        if log_norm is not None:
            order = np.argsort(log_norm, kind="stable")
        else:  # no density yet: farthest from the surviving means
            d2 = ((self.X[:, None, :] - means[keep][None]) ** 2).sum(-1).min(axis=1)
            order = np.argsort(-d2 if keep.size else np.zeros(self.X.shape[0]), kind="stable")
        chosen: list[np.ndarray] = []
        for i in order:
            x = self.X[i]
            if all((x != c).any() for c in chosen):
                chosen.append(x)
                if len(chosen) == comps.size:
                    break
        for k, x in zip(comps, chosen, strict=False):
            means[k] = x
            weights[k] = 1.0 / self.K
            if per_component:
                cov[k] = self.default_cov[k]
        weights /= weights.sum()

    def _with_background(self, weights: np.ndarray) -> np.ndarray:
        """The Gaussians' starting weights (K,), with the background's appended when
        there is one (``noise_start``, the others scaled to make room)."""
        if self.background is None:
            return weights
        return np.append(weights * (1.0 - self.noise_start), self.noise_start)

    def initial_state(self, rng, init, means_init, weights_init) -> _State:
        if means_init is not None:
            if self.noise_init is not None:  # the background starts at its share
                self._next_start(init)
            K = self.K
            weights = np.full(K, 1.0 / K) if weights_init is None else weights_init.copy()
            state, _ = self.build(self._with_background(weights), means_init - self.center,
                                  self.default_cov.copy())  # fmt: skip
            return state
        init, guess = self._next_start(init)
        resp = self._start_memberships(rng, init, guess)
        noise = None if guess is None else guess.astype(float)
        stats = self._stats_beside(resp, noise)
        weights, means, cov, singular, dead = self.m_step(None, stats)
        # a singular start (e.g. a seed alone in its cell) gets the data-scaled covariance
        if self.fam.per_component:
            cov[singular] = self.default_cov[singular]
        else:
            cov = self.default_cov.copy() if singular.any() else cov
        if dead.any():
            self.reseed(weights, means, cov, np.zeros_like(singular), dead, None)
        if weights_init is not None:
            weights = self._with_background(weights_init.copy())
        elif noise is None:  # the background at NOISE_START (when there is one)
            weights = self._with_background(weights[: self.K])
        state, _ = self.build(weights, means, cov)
        if state is None:
            state, _ = self.build(weights, means, self.default_cov.copy())
        return state

    def _next_start(self, init: str) -> tuple[str, np.ndarray | None]:
        """This start's seeding (``init``, or ``"random"`` on that turn) and the points it
        puts in the background, or None (see the class docstring); sets ``noise_start``,
        the background's starting weight."""
        turn = noise_turn(self.n_starts) if self.background is not None else "all"
        self.n_starts += 1
        guess = self.noise_init
        if guess is None and turn == "random":
            init = "random"
        elif guess is None and turn == "guess":
            if self._guess is None:
                self._guess = guess_noise(self.X, self.labels, self.w)
                if self._guess is None or (~self._guess).sum() < self.K:
                    self._guess = np.zeros(self.X.shape[0], dtype=bool)  # none: no guess
            guess = self._guess if self._guess.any() else None
        if guess is None:
            self.noise_start = NOISE_START
        else:
            flagged = guess.sum() if self.w is None else self.w @ guess
            self.noise_start = float(flagged) / self.n
        return init, guess

    def _start_memberships(self, rng, init: str, guess: np.ndarray | None) -> np.ndarray:
        """The Gaussians' starting memberships (K, n): k-means++ (scaled: distances in
        units of column sds) or random, over the points not guessed as noise (theirs 0)."""
        keep = None if guess is None else ~guess
        X = self.X if keep is None else self.X[keep]
        w = self.w if keep is None or self.w is None else self.w[keep]
        if init.startswith("k-means++"):
            sd = np.sqrt(column_moments(X, w)[1])
            resp = kmeans_pp_resp(X / sd if init == "k-means++-scaled" else X, self.K, rng, w)
        else:
            r = rng.random((X.shape[0], self.K))
            r /= r.sum(axis=1, keepdims=True)
            resp = np.ascontiguousarray(r.T)
        if keep is not None:
            full = np.zeros((self.K, self.X.shape[0]))
            full[:, keep] = resp
            resp = full
        return start_memberships(resp, self.labels)

    def run(self, rng, init, means_init, weights_init, tol, max_iter) -> dict[str, Any]:
        state = self.initial_state(rng, init, means_init, weights_init)
        max_reseeds = max(10, 2 * self.K)
        trace: list[float] = []
        n_reseeds, prev, converged, n_iter = 0, None, False, 0
        for n_iter in range(1, max_iter + 1):
            loglik, stats, log_norm = self.e_step(state)
            obj = self.objective(loglik, state)
            if not math.isfinite(obj):
                raise RunFailed("the objective stopped being finite")
            trace.append(obj)
            if prev is not None and abs(obj - prev) < tol * self.n:
                converged = True
                break
            prev = obj
            if n_iter == max_iter:
                break
            weights, means, cov, singular, dead = self.m_step(state, stats)
            new = None
            if not (singular.any() or dead.any()):
                new, singular = self.build(weights, means, cov)
            if new is None:
                n_reseeds += int(singular.sum() + dead.sum())
                if n_reseeds > max_reseeds:
                    raise RunFailed(f"components collapsed {n_reseeds} times")
                self.reseed(weights, means, cov, singular, dead, log_norm)
                new, _ = self.build(weights, means, cov)
                if new is None:
                    raise RunFailed("re-seeded covariances are not positive definite")
                prev = None  # the objective jumps at a re-seed: restart the convergence test
            state = new
        resp = self.resp  # responsibilities of the last E-step, i.e. of `state`
        with np.errstate(divide="ignore"):
            log_max = np.log(resp.max(axis=0))
            slmr = float(log_max.sum() if self.w is None else log_max @ self.w)
        return dict(
            objective=trace[-1],
            log_likelihood=loglik,
            state=state,
            trace=np.array(trace),
            converged=converged,
            n_iter=n_iter,
            n_reseeds=n_reseeds,
            sum_log_max_resp=slmr,
        )
