"""EM fits of Gaussian mixtures: maximum a posteriori (MAP) or maximum likelihood.

The fit is the starting point for NUTS (best of several EM restarts, as NumPyro's GMM
tutorial recommends) and a fast point estimate in its own right. :func:`fit_em`
returns an :class:`~bayesgmm.core.em_result.EMResult`; priors for the MAP fit are
:class:`~bayesgmm.core.em_prior.EMPrior` objects.

Numerics: log space throughout (log weights + component log-densities, logsumexp over
components, in the mixture engine :mod:`bayesgmm.core.engine`), Cholesky factors instead
of inverses, and sufficient statistics ``sum_i r_ik [1, x_i, x_i x_i^T]`` gathered with
one matrix product per iteration. Everything that depends on the covariance family (the
second moments, the M-step, the prior's covariance part) is the family record's
(:mod:`bayesgmm.core.families`).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bayesgmm.core.checks import Constraint, check_settings, choice, integer, real
from bayesgmm.core.data import check_data
from bayesgmm.core.em_init import INIT_METHODS, check_start, kmeans_pp_resp
from bayesgmm.core.em_prior import EMPrior, PriorTerms
from bayesgmm.core.em_result import EMResult
from bayesgmm.core.engine import Kernel, design, mixture_pass
from bayesgmm.core.families import EM_COVARIANCE_TYPES, CovarianceFamily, family
from bayesgmm.core.priors import component_variance
from bayesgmm.exceptions import ConfigError, ConvergenceWarning, DegenerateFitError

__all__ = ["INIT_METHODS", "EMPrior", "EMResult", "fit_em"]

_WEIGHT_FLOOR = 1e-10  # smallest mixture weight EM returns (see EMPrior, alpha < 1)
_MIN_NK_FRACTION = 1e-10  # MLE: a component with N_k < this * n has died
_COLLAPSE_RTOL = 1e-12  # MLE: scatter variance below this * min column variance = collapsed
_STATS_MAX_BYTES = 1 << 28  # full: precompute x x^T rows only while they fit in 256 MB
_REMEDIES = (
    "Try fewer components, a larger reg_covar or the default prior (prior='default'), "
    "standardise the data, or drop duplicated rows / collinear features."
)

# fit_em's settings and what they may be; violations are reported together
FIT_CONSTRAINTS: dict[str, Constraint] = {
    "n_components": integer(1),
    "covariance_type": choice(EM_COVARIANCE_TYPES),
    "init": choice(INIT_METHODS),
    "n_init": integer(1),
    "tol": real(0),
    "max_iter": integer(1),
    "reg_covar": real(0),
    "prior": Constraint(
        lambda v: v is None or isinstance(v, EMPrior) or (isinstance(v, str) and v == "default"),
        "None (maximum likelihood), 'default' or an EMPrior",
    ),
}


# --------------------------------------------------------------------------- #
# EM machinery
# --------------------------------------------------------------------------- #


class _RunFailed(Exception):
    """A start kept collapsing; the fit moves on to the next start."""


class _State:
    """Mixture parameters in centred coordinates, with their Cholesky factors."""

    __slots__ = ("chol", "cov", "means", "prec_chol", "weights")

    def __init__(self, weights, means, cov, chol, prec_chol) -> None:
        self.weights, self.means, self.cov = weights, means, cov
        self.chol, self.prec_chol = chol, prec_chol


class _EM:
    """Everything one fit needs: centred data, design rows, prior constants, buffers."""

    def __init__(
        self, X: np.ndarray, K: int, fam: CovarianceFamily, prior: EMPrior | None, reg_covar
    ):
        n, D = X.shape
        self.n, self.D, self.K, self.fam, self.reg_covar = n, D, K, fam, reg_covar
        self.center = X.mean(axis=0)
        self.X = X - self.center  # centring keeps sum r x x^T - N mu mu^T well conditioned
        var = self.X.var(axis=0, ddof=1)
        self.collapse_var = _COLLAPSE_RTOL * var.min()
        self.min_nk = _MIN_NK_FRACTION * n
        self.default_cov = fam.default_cov(component_variance(var, K), K)
        # rows: 1, x, (x**2 | ||x||**2 | packed x x^T); aux: what the M-step needs besides
        self.ZT, self.aux = fam.em_design(self.X, design(self.X, fam), _STATS_MAX_BYTES)
        self.resp = np.empty((K, n))
        if prior is None:
            self.prior = None
        else:
            self.prior = PriorTerms(replace(prior, mean_loc=prior.mean_loc - self.center), fam)

    # -- sufficient statistics and E-step ----------------------------------- #

    def stats(self, resp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """``N_k``, ``s_k = sum_i r_ik x_i`` and the family's second moments."""
        D = self.D
        S = resp @ self.ZT.T
        N, Sx = S[:, 0], S[:, 1 : 1 + D]
        return N, Sx, self.fam.second_moments(S, self.ZT, resp, self.X, self.aux)

    def e_step(self, st: _State) -> tuple[float, tuple, np.ndarray]:
        kernel = Kernel(self.fam, st.means[None], st.prec_chol[None], np.log(st.weights)[None])
        log_norm, resp = mixture_pass(self.ZT, kernel, self.resp)
        return float(log_norm.sum()), self.stats(resp), log_norm

    def objective(self, loglik: float, st: _State) -> float:
        if self.prior is None:
            return loglik
        return loglik + self.prior.log_density(st.weights, st.means, st.chol, st.prec_chol)

    # -- M-step (ECM) --------------------------------------------------------- #

    def m_step(self, st: _State | None, stats) -> tuple[np.ndarray, ...]:
        """New weights, means, covariances and the collapse masks ``singular``, ``dead``.

        ``singular`` has shape (K,) (shape (1,) for a shared covariance) and flags
        singular scatter; ``dead`` (K,) flags components without points. Both are only
        set in maximum likelihood fits: with a prior every update is well defined.
        """
        N, Sx, second = stats
        pt, fam, D = self.prior, self.fam, self.D
        counts = N if pt is None else N + pt.alpha - 1.0
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
        scatter = fam.scatter(N, Sx, second, means, self.aux)
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
            order = np.argsort(-d2 if keep.size else np.zeros(self.n), kind="stable")
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

    def initial_state(self, rng, init, means_init, weights_init) -> _State:
        if means_init is not None:
            K = self.K
            weights = np.full(K, 1.0 / K) if weights_init is None else weights_init.copy()
            state, _ = self.build(weights, means_init - self.center, self.default_cov.copy())
            return state
        resp = None  # k-means++-scaled: distances in units of column sds
        if init.startswith("k-means++"):
            X = self.X / self.X.std(axis=0) if init == "k-means++-scaled" else self.X
            resp = kmeans_pp_resp(X, self.K, rng)
        if resp is None:
            r = rng.random((self.n, self.K))
            r /= r.sum(axis=1, keepdims=True)
            resp = np.ascontiguousarray(r.T)
        weights, means, cov, singular, dead = self.m_step(None, self.stats(resp))
        # a singular start (e.g. a seed alone in its cell) gets the data-scaled covariance
        if self.fam.per_component:
            cov[singular] = self.default_cov[singular]
        else:
            cov = self.default_cov.copy() if singular.any() else cov
        if dead.any():
            self.reseed(weights, means, cov, np.zeros_like(singular), dead, None)
        if weights_init is not None:
            weights = weights_init.copy()
        state, _ = self.build(weights, means, cov)
        if state is None:
            state, _ = self.build(weights, means, self.default_cov.copy())
        return state

    def run(self, rng, init, means_init, weights_init, tol, max_iter) -> dict[str, Any]:
        state = self.initial_state(rng, init, means_init, weights_init)
        max_reseeds = max(10, 2 * self.K)
        trace: list[float] = []
        n_reseeds, prev, converged, n_iter = 0, None, False, 0
        for n_iter in range(1, max_iter + 1):
            loglik, stats, log_norm = self.e_step(state)
            obj = self.objective(loglik, state)
            if not math.isfinite(obj):
                raise _RunFailed("the objective stopped being finite")
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
                    raise _RunFailed(f"components collapsed {n_reseeds} times")
                self.reseed(weights, means, cov, singular, dead, log_norm)
                new, _ = self.build(weights, means, cov)
                if new is None:
                    raise _RunFailed("re-seeded covariances are not positive definite")
                prev = None  # the objective jumps at a re-seed: restart the convergence test
            state = new
        resp = self.resp  # responsibilities of the last E-step, i.e. of `state`
        with np.errstate(divide="ignore"):
            slmr = float(np.log(resp.max(axis=0)).sum())
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


# --------------------------------------------------------------------------- #
# Public entry point
# --------------------------------------------------------------------------- #


def fit_em(
    X: ArrayLike,
    n_components: int,
    *,
    covariance_type: str = "full",
    prior: EMPrior | str | None = "default",
    init: str = "k-means++",
    n_init: int = 5,
    tol: float = 1e-8,
    max_iter: int = 1000,
    reg_covar: float = 1e-6,
    random_seed: int | np.random.Generator | None = None,
    means_init: ArrayLike | None = None,
    weights_init: ArrayLike | None = None,
    feature_names: Sequence[str] | None = None,
) -> EMResult:
    """Fit a Gaussian mixture by EM: MAP under a prior, or maximum likelihood.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric data; a DataFrame keeps its column names.
    n_components : int
        Number of mixture components ``K >= 1``.
    covariance_type : str, default='full'
        Covariance family: scikit-learn's ``'full'``, ``'tied'``, ``'diag'``,
        ``'spherical'`` (names and layouts), or any of mclust's models by its name
        (:data:`~bayesgmm.core.families.MCLUST_MODELS`: ``'EII'``, ``'VII'``, ...,
        ``'VVV'``, with ``'VVV'``, ``'EEE'``, ``'VVI'``, ``'VII'`` aliases of the four; and
        ``'E'`` / ``'V'`` for one feature). mclust's other families keep their covariances
        as ``(K, D, D)`` matrices (``(D, D)`` for the shared EII, EEI, E); their M-steps
        are mclust's (:mod:`bayesgmm.core.eigen_families`).
    prior : 'default', EMPrior or None, default='default'
        ``'default'`` uses :meth:`EMPrior.default` (MAP fit, see :class:`EMPrior` for the
        semantics and updates); ``None`` gives plain maximum likelihood, where ``reg_covar``
        is added to the covariance diagonals as in scikit-learn and ``log_posterior ==
        log_likelihood``. With a prior, ``reg_covar`` is not used: the prior keeps the
        covariances positive definite and EM stays an exact ECM ascent.
    init : {'k-means++', 'k-means++-scaled', 'random'}, default='k-means++'
        ``'k-means++'``: k-means++ seeds, each point assigned to its nearest seed (as
        scikit-learn's ``init_params='k-means++'``); ``'k-means++-scaled'``: the same with
        distances measured in units of each column's sd (which matters when the columns'
        scales differ, as Old Faithful's minutes and seconds; mclust likewise seeds on
        scaled data, ``hcUse = "SVD"``); ``'random'``: random responsibilities.
    n_init : int, default=5
        Number of starts; the one with the highest objective is kept. With ``means_init``
        every start would be identical, so a single one is run.
    tol : float, default=1e-8
        Stop when the objective changes by less than ``tol`` per sample between iterations.
    max_iter : int, default=1000
        Maximum number of iterations (E-steps) per start.
    reg_covar : float, default=1e-6
        Added to covariance diagonals in maximum likelihood fits (``prior=None``).
    random_seed : int, numpy.random.Generator or None
        Same seed, same result (bit for bit).
    means_init : array-like of shape (n_components, n_features), optional
        Starting means; covariances then start at ``diag(column variances) / K**(2/D)``.
    weights_init : array-like of shape (n_components,), optional
        Starting weights (positive, summing to 1).
    feature_names : sequence of str, optional
        Overrides the DataFrame's columns (or ``feature_0, ...``).

    Returns
    -------
    EMResult

    Raises
    ------
    DataError
        Bad data (NaN/inf, wrong shape, empty, non-numeric, constant columns, fewer
        distinct points than components).
    ConfigError
        Unknown or out-of-range settings (all reported together).
    DegenerateFitError
        Every start kept collapsing components even after re-seeding them.

    Warns
    -----
    ConvergenceWarning
        The best start reached ``max_iter`` before converging.

    Notes
    -----
    A component that collapses in a maximum likelihood fit (it loses its points or its
    scatter becomes singular, e.g. on duplicated rows) is re-seeded at the worst-fitted
    point with a data-scaled covariance; ``n_reseeds`` counts these for the kept start.

    Examples
    --------
    >>> from bayesgmm.core.datasets import load_faithful
    >>> fit = fit_em(load_faithful(), 2, prior=None, random_seed=0)
    >>> round(fit.log_likelihood, 2), fit.weights.round(3).tolist()
    (-1130.26, [0.356, 0.644])
    >>> fit.predict(load_faithful().head(3)).tolist()
    [1, 0, 1]
    """
    settings = dict(
        n_components=n_components, covariance_type=covariance_type, init=init, n_init=n_init,
        tol=tol, max_iter=max_iter, reg_covar=reg_covar, prior=prior,
    )  # fmt: skip
    check_settings(settings, FIT_CONSTRAINTS, "fit_em")
    rng = _rng(random_seed)
    X, names = check_data(X, n_components=n_components, feature_names=feature_names)
    return fit_em_checked(
        X, names, n_components, family(covariance_type), prior, init=init, n_init=n_init,
        tol=tol, max_iter=max_iter, reg_covar=reg_covar, rng=rng, means_init=means_init,
        weights_init=weights_init,
    )  # fmt: skip


def _rng(random_seed) -> np.random.Generator:
    try:
        return np.random.default_rng(random_seed)
    except (TypeError, ValueError):
        raise ConfigError(
            f"random_seed must be an int, a numpy Generator or None; got {random_seed!r}."
        ) from None


def fit_em_checked(
    X: np.ndarray,
    names: list[str],
    n_components: int,
    fam: CovarianceFamily,
    prior: EMPrior | str | None,
    *,
    rng: np.random.Generator,
    means_init=None,
    weights_init=None,
    **settings: Any,
) -> EMResult:
    """:func:`fit_em` on data and settings that are already validated (as
    :class:`~bayesgmm.BayesianGMM` has them), so that nothing is checked twice.

    ``settings`` (``init``, ``n_init``, ``tol``, ``max_iter``, ``reg_covar``) default to
    :func:`fit_em`'s own defaults.
    """
    settings = {**_FIT_DEFAULTS, **settings}
    init, n_init, tol = settings["init"], settings["n_init"], settings["tol"]
    max_iter, reg_covar = settings["max_iter"], settings["reg_covar"]
    n, D = X.shape
    fam.check_n_features(D)
    if isinstance(prior, str):
        prior = EMPrior._default(X, n_components)
    elif prior is not None and (prior.n_components, prior.n_features) != (n_components, D):
        raise ConfigError(
            f"prior is for {prior.n_components} components and {prior.n_features} features, "
            f"but the fit has n_components={n_components} and {D} features."
        )
    means_init, weights_init = check_start(means_init, weights_init, n_components, D)
    em = _EM(X, n_components, fam, prior, float(reg_covar))
    n_runs = 1 if means_init is not None else n_init
    best, failures = None, []
    for _ in range(n_runs):
        try:
            run = em.run(rng, init, means_init, weights_init, float(tol), max_iter)
        except _RunFailed as exc:
            failures.append(str(exc))
            continue
        if best is None or run["objective"] > best["objective"]:
            best = run
    if best is None:
        reason = (
            f"EM failed in all {n_runs} starts ({failures[-1]}): mixture components keep "
            "collapsing onto too few or duplicated points."
        )
        raise DegenerateFitError(f"{reason} {_REMEDIES}", reason=reason)
    if not best["converged"]:
        trace = best["trace"]
        change = (
            f" (last change per sample {abs(trace[-1] - trace[-2]) / n:.3g} > tol={tol:g})"
            if len(trace) > 1
            else ""
        )
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations{change}. Raise max_iter, "
            "loosen tol, use more starts (n_init), or standardise the data.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return _make_result(em, best, prior, names, n_runs)


_FIT_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(fit_em).parameters.items()
    if name in ("init", "n_init", "tol", "max_iter", "reg_covar")
}


def _make_result(em: _EM, run: dict, prior: EMPrior | None, names, n_runs: int) -> EMResult:
    st, fam, K, D = run["state"], em.fam, em.K, em.D
    means = st.means + em.center
    order = np.lexsort(means.T[::-1])
    per_component = fam.per_component
    cov = st.cov[order] if per_component else st.cov
    chol_cov = fam.to_full(st.chol[order] if per_component else st.chol, K, D)
    result = EMResult(
        weights=st.weights[order],
        means=means[order],
        covariances=cov,
        covariance_type=fam.name,
        chol_cov=chol_cov,
        prec_chol=st.prec_chol[order] if per_component else st.prec_chol,
        log_likelihood=run["log_likelihood"],
        log_posterior=run["objective"],
        objective_trace=run["trace"],
        converged=run["converged"],
        n_iter=run["n_iter"],
        n_reseeds=run["n_reseeds"],
        n_init=n_runs,
        prior=prior,
        feature_names=names,
        n_samples=em.n,
        sum_log_max_resp=run["sum_log_max_resp"],
    )
    arrays = [result.weights, result.means, result.covariances, result.prec_chol]
    if not all(np.isfinite(a).all() for a in arrays):
        reason = "EM produced non-finite parameters."
        raise DegenerateFitError(f"{reason} {_REMEDIES}", reason=reason)
    return result
