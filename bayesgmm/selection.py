"""Choosing the number of components K: BIC/ICL pre-screen, PSIS-LOO and sparse mixtures.

Three complementary tools, from cheapest to most Bayesian:

* :func:`bic_table` -- BIC and ICL at the EM solution for every K and covariance family,
  in **mclust's sign convention** ``BIC = 2 logL - df ln n`` (**higher is better**;
  scikit-learn's ``GaussianMixture.bic`` is the negative, lower is better). Degenerate
  fits (collapsed components, whose likelihood is unbounded) are reported, not ranked.
* :func:`loo_compare` -- fits :class:`~bayesgmm.BayesianGMM` for each K, estimates the
  expected log predictive density by PSIS-LOO (``arviz.loo`` / ``arviz.compare`` on the
  pointwise log-likelihood ``x``) and reports Pareto-k warnings and sampler diagnostics;
  fits whose diagnostics fail are shown but not ranked.
* :func:`sparse_mixture` -- one deliberately overfitted mixture with a small Dirichlet
  concentration (Rousseau & Mengersen 2011; Malsiner-Walli, Frühwirth-Schnatter & Grün
  2016), whose superfluous components empty out; the posterior of the number of
  non-empty components is label-invariant (:func:`count_nonempty`).

:func:`plot_selection` draws the elpd (with standard errors) and the BIC curves.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from bayesgmm._gaussian import COVARIANCE_TYPES, log_responsibilities
from bayesgmm._validation import check_data
from bayesgmm.em import EMResult, fit_em
from bayesgmm.exceptions import (
    ConfigError,
    ConvergenceWarning,
    DataError,
    DegenerateFitError,
    SamplingWarning,
)

__all__ = [
    "LOOComparison",
    "SparseMixtureResult",
    "best_bic",
    "bic_table",
    "count_nonempty",
    "degeneracy_reason",
    "loo_compare",
    "plot_selection",
    "sparse_mixture",
]

#: Default Dirichlet concentration of :func:`sparse_mixture` (Malsiner-Walli et al. 2016).
SPARSE_CONCENTRATION = 0.01
_VAR_RTOL = 1e-6  # smallest eigenvalue of a standardised component covariance


# --------------------------------------------------------------------------- #
# Helpers
# --------------------------------------------------------------------------- #


def _check_k_range(k_range: Iterable[int], n_samples: int | None = None) -> list[int]:
    try:
        ks = list(k_range)
    except TypeError:
        raise ConfigError(f"k_range must be an iterable of integers; got {k_range!r}.") from None
    bad = [k for k in ks if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1]
    if not ks or bad:
        raise ConfigError(
            f"k_range must be a non-empty sequence of integers >= 1; got {ks!r}"
            + (f" (invalid: {bad!r})" if bad else "")
            + "."
        )
    if len(set(ks)) != len(ks):
        raise ConfigError(f"k_range has repeated values: {ks!r}.")
    if n_samples is not None and max(ks) > n_samples:
        raise DataError(
            f"k_range goes up to K={max(ks)} but the data has only {n_samples} points; a "
            "mixture needs at least one point per component."
        )
    return sorted(int(k) for k in ks)


def _check_seed(random_seed: Any) -> int:
    if isinstance(random_seed, bool) or not isinstance(random_seed, int | np.integer):
        raise ConfigError(f"random_seed must be a non-negative integer; got {random_seed!r}.")
    if random_seed < 0:
        raise ConfigError(f"random_seed must be a non-negative integer; got {random_seed}.")
    return int(random_seed)


def _child_seed(master: int, *key: int) -> int:
    """A seed for one fit, derived from the master seed and the fit's identity.

    Depends only on ``(master, key)``, so a fit's result does not change when the sweep
    around it does (more K values, other families).
    """
    return int(np.random.SeedSequence(master, spawn_key=key).generate_state(1)[0] >> 1)


def _say(progress: bool, message: str) -> None:
    if progress:
        print(message, flush=True)


# --------------------------------------------------------------------------- #
# BIC / ICL at the EM solution
# --------------------------------------------------------------------------- #


def _resolution(X: np.ndarray) -> np.ndarray:
    """Smallest gap between distinct values of each column (the recording resolution)."""
    out = np.empty(X.shape[1])
    for j in range(X.shape[1]):
        gaps = np.diff(np.unique(X[:, j]))
        out[j] = gaps.min() if gaps.size else 0.0
    return out


def _min_component_size(covariance_type: str, n_features: int) -> int:
    """Points a component needs for its own covariance estimate to be non-singular."""
    return {"full": n_features + 1, "diag": 2, "spherical": 2, "tied": 1}[covariance_type]


def degeneracy_reason(fit: EMResult, X: ArrayLike, *, var_rtol: float = _VAR_RTOL) -> str | None:
    """Why an EM fit is degenerate (its likelihood is driven by a collapsing component).

    A Gaussian mixture's likelihood is unbounded: a component can shrink onto a few
    points, a line, or tied (repeated) values, and its density there grows without
    limit. Such a fit has a spuriously high log-likelihood and BIC, so it must not be
    ranked (mclust reports it as ``NA``). A fit is called degenerate when a component

    1. holds fewer points than its covariance needs, ``n w_k < m`` with ``m = D + 1``
       (full), ``2`` (diag, spherical) or ``1`` (tied): with fewer, the maximum
       likelihood covariance of that component is singular and only the soft spill of
       other points' responsibilities keeps it finite;
    2. has a covariance whose smallest eigenvalue, in standardised units
       (``Sigma_k / (s s^T)`` with ``s`` the columns' standard deviations), is below
       ``var_rtol`` (default 1e-6, a standard deviation 1/1000 of the data's): the
       component has (nearly) collapsed onto a lower-dimensional set. EM's own
       ``reg_covar`` (1e-6 added to the diagonal) keeps a collapsed covariance at about
       this size on unit-scale data;
    3. is narrower than the data's recording resolution along some feature: its
       conditional variance ``1 / (Sigma_k^{-1})_{dd}`` is below ``h_d^2 / 12``, where
       ``h_d`` is the smallest gap between distinct values of feature ``d``
       (``h^2/12`` is the variance of rounding to a grid of step ``h``). Such a
       component resolves individual grid values, i.e. it sits on tied values -- the
       failure mode of data like Old Faithful (waiting times in whole minutes). For
       continuous data ``h_d`` is tiny and this rule is inactive.

    Parameters
    ----------
    fit : EMResult
    X : array-like of shape (n_samples, n_features)
        The data the fit was made on.
    var_rtol : float, default=1e-6
        Threshold of rule 2.

    Returns
    -------
    str or None
        A readable reason, or None when the fit is not degenerate.

    Examples
    --------
    >>> import numpy as np
    >>> from bayesgmm.em import fit_em
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> degeneracy_reason(fit_em(X, 2, prior=None, random_seed=0), X) is None
    True
    """
    X = np.asarray(X, dtype=np.float64)
    n, D = X.shape
    reasons = []
    sizes = n * np.asarray(fit.weights)
    m = _min_component_size(fit.covariance_type, D)
    small = np.flatnonzero(sizes < m)
    if small.size:
        reasons.append(
            f"component(s) {small.tolist()} hold {np.round(sizes[small], 2).tolist()} points, "
            f"fewer than the {m} a {fit.covariance_type} covariance needs"
        )
    cov = fit.covariance_matrices()
    sd = X.std(axis=0)
    eig = np.linalg.eigvalsh(cov / np.outer(sd, sd)[None])[:, 0]
    flat = np.flatnonzero(eig < var_rtol)
    if flat.size:
        reasons.append(
            f"component(s) {flat.tolist()} collapsed: smallest standardised covariance "
            f"eigenvalue {eig[flat].min():.3g} < {var_rtol:g}"
        )
    h = _resolution(X)
    cond_var = 1.0 / np.diagonal(np.linalg.inv(cov), axis1=1, axis2=2)  # (K, D)
    narrow = cond_var < (h**2 / 12.0)[None]
    if narrow.any():
        k, d = np.argwhere(narrow)[0]
        reasons.append(
            f"component {int(k)} is narrower than the data's resolution in feature "
            f"{fit.feature_names[d]!r} (conditional sd {math.sqrt(cond_var[k, d]):.3g} < "
            f"h/sqrt(12) = {h[d] / math.sqrt(12.0):.3g}; it sits on tied values)"
        )
    return "; ".join(reasons) or None


def bic_table(
    X: ArrayLike,
    k_range: Iterable[int] = range(1, 6),
    covariance_types: Sequence[str] = COVARIANCE_TYPES,
    *,
    prior: str | None = None,
    n_init: int = 10,
    random_seed: int = 0,
    var_rtol: float = _VAR_RTOL,
    progress: bool = False,
) -> pd.DataFrame:
    """BIC and ICL of the EM fit for every K and covariance family (a fast pre-screen).

    Sign convention (mclust's): ``BIC = 2 logL - df ln n`` and
    ``ICL = BIC + 2 sum_i log max_k p(z_i = k | x_i)``; **higher is better**.
    scikit-learn's ``GaussianMixture.bic`` is ``-BIC`` (lower is better).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k_range : iterable of int, default=range(1, 6)
    covariance_types : sequence of {'full', 'tied', 'diag', 'spherical'}
        mclust's names: full = VVV, tied = EEE, diag = VVI, spherical = VII.
    prior : None or 'default', default=None
        None: maximum likelihood (mclust's default); ``'default'``: MAP under
        :meth:`EMPrior.default` (as mclust's ``priorControl``), with BIC still computed
        from the log-likelihood at the MAP.
    n_init : int, default=10
        EM starts per fit.
    random_seed : int, default=0
        Master seed; each (family, K) gets its own seed derived from it.
    var_rtol : float, default=1e-6
        Collapse threshold, see :func:`degeneracy_reason`.
    progress : bool, default=False
        Print one line per fit.

    Returns
    -------
    DataFrame
        One row per (covariance_type, K): ``covariance_type``, ``K``,
        ``log_likelihood``, ``n_parameters``, ``bic``, ``icl``, ``n_reseeds`` (EM
        components re-seeded after collapsing in the kept start), ``converged``,
        ``status`` (``"ok"``, ``"degenerate"`` or ``"failed"``) and ``reason``. ``bic``
        and ``icl`` are NaN unless the status is ``"ok"``: degenerate fits are not
        ranked. Pick the best with :func:`best_bic`.

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> table = bic_table(load_faithful(), range(1, 4), ["tied"])
    >>> best = best_bic(table)
    >>> best["covariance_type"], int(best["K"]), round(float(best["bic"]), 1)
    ('tied', 3, -2314.3)
    """
    X, names = check_data(X)
    ks = _check_k_range(k_range)
    cts = list(covariance_types) if not isinstance(covariance_types, str) else [covariance_types]
    bad = [c for c in cts if c not in COVARIANCE_TYPES]
    if not cts or bad:
        raise ConfigError(
            f"covariance_types must be a non-empty subset of {list(COVARIANCE_TYPES)}; got {cts!r}."
        )
    if prior not in (None, "default"):
        raise ConfigError(f"prior must be None (maximum likelihood) or 'default'; got {prior!r}.")
    seed = _check_seed(random_seed)
    rows = []
    for ct in cts:
        for K in ks:
            row: dict[str, Any] = {"covariance_type": ct, "K": K}
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always", ConvergenceWarning)
                    fit = fit_em(
                        X,
                        K,
                        covariance_type=ct,
                        prior=prior,
                        n_init=n_init,
                        random_seed=_child_seed(seed, COVARIANCE_TYPES.index(ct), K),
                        feature_names=names,
                    )
            except DegenerateFitError as exc:
                row.update(status="degenerate", reason=str(exc).split(". ")[0])
            except DataError as exc:
                row.update(status="failed", reason=str(exc))
            else:
                reason = degeneracy_reason(fit, X, var_rtol=var_rtol)
                notes = [str(w.message).split(". ")[0] for w in caught]
                row.update(
                    log_likelihood=fit.log_likelihood,
                    n_parameters=fit.n_parameters(),
                    bic=fit.bic() if reason is None else math.nan,
                    icl=fit.icl() if reason is None else math.nan,
                    n_reseeds=fit.n_reseeds,
                    converged=fit.converged,
                    status="ok" if reason is None else "degenerate",
                    reason=reason or "; ".join(notes),
                )
            rows.append(row)
            _say(
                progress,
                f"bic_table: {ct:>9s} K={K}: {row['status']}"
                + (f", BIC {row['bic']:.2f}" if row["status"] == "ok" else f" ({row['reason']})"),
            )
    columns = [
        "covariance_type", "K", "log_likelihood", "n_parameters", "bic", "icl",
        "n_reseeds", "converged", "status", "reason",
    ]  # fmt: skip
    table = pd.DataFrame(rows).reindex(columns=columns)
    table["reason"] = table["reason"].fillna("")
    return table


def best_bic(table: pd.DataFrame, criterion: str = "bic") -> pd.Series:
    """The row of a :func:`bic_table` with the highest BIC (or ICL) among ``"ok"`` fits.

    Parameters
    ----------
    table : DataFrame from :func:`bic_table`
    criterion : {'bic', 'icl'}

    Returns
    -------
    Series
        The chosen row (``covariance_type``, ``K``, ``bic``, ...).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"covariance_type": ["full", "full"], "K": [1, 2],
    ...                   "bic": [-10.0, float("nan")], "icl": [-10.0, float("nan")],
    ...                   "status": ["ok", "degenerate"]})
    >>> int(best_bic(t)["K"])
    1
    """
    if criterion not in ("bic", "icl"):
        raise ConfigError(f"criterion must be 'bic' or 'icl'; got {criterion!r}.")
    ok = table[(table["status"] == "ok") & table[criterion].notna()]
    if ok.empty:
        raise DegenerateFitError(
            "no fit in the table is usable: every one is degenerate or failed. Try "
            "prior='default' (MAP), fewer components or standardised data."
        )
    return ok.loc[ok[criterion].idxmax()]


# --------------------------------------------------------------------------- #
# PSIS-LOO across K
# --------------------------------------------------------------------------- #


@dataclass
class LOOComparison:
    """Result of :func:`loo_compare`.

    Attributes
    ----------
    table : DataFrame
        Indexed by ``K``: ``elpd``, ``se``, ``p_loo`` (effective parameters),
        ``elpd_diff``, ``dse`` (from ``arviz.compare`` over the ranked fits; 0 for the
        best), ``rank`` (NaN when not ranked), ``weight`` (stacking),
        ``n_high_pareto_k`` (points with Pareto k above ArviZ's threshold
        ``good_k``), ``max_pareto_k``, ``pareto_warning``, ``diagnostics``
        (``"ok"``/``"warn"``/``"fail"``), ``diagnostics_reason``, ``ranked`` and
        ``seconds`` (wall time of the fit).
    fits : dict of int to BayesianGMM
        The fitted estimators.
    loo : dict of int to ELPDData
        ``arviz.loo`` of each fit.
    compare : DataFrame
        ``arviz.compare`` over the ranked fits (keys ``"K=<k>"``).
    """

    table: pd.DataFrame
    fits: dict[int, Any] = field(repr=False)
    loo: dict[int, Any] = field(repr=False)
    compare: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def best(self) -> int:
        """K of the ranked fit with the highest elpd."""
        ranked = self.table[self.table["ranked"]]
        if ranked.empty:
            raise DegenerateFitError(
                "no fit passed the sampling diagnostics, so none is ranked; see the table's "
                "'diagnostics_reason' column (more tuning/draws usually help)."
            )
        return int(ranked["elpd"].idxmax())


def _diagnose(idata: xr.DataTree, reference: Any = None) -> tuple[str, str]:
    """``(verdict, reason)`` of a fit's sampling diagnostics.

    Uses :func:`bayesgmm.diagnostics.diagnose` on the posterior relabelled by
    :func:`bayesgmm.relabel.relabel` (pivot: ``reference``, the EM solution) when those
    modules are available, else :func:`_fallback_diagnose`.
    """
    try:
        from bayesgmm.diagnostics import diagnose
    except ImportError:
        return _fallback_diagnose(idata)
    tree = idata
    if "component" in idata["posterior"].dims and "posterior_raw" not in idata.children:
        try:
            from bayesgmm.relabel import relabel

            tree, _ = relabel(idata, reference=reference)
        except Exception:  # relabelling is a refinement: diagnose the raw draws instead
            tree = idata
    try:
        report = diagnose(tree)
    except Exception as exc:  # a bug there must not hide the fit: check it ourselves
        verdict, reason = _fallback_diagnose(idata)
        note = f"bayesgmm.diagnostics failed ({type(exc).__name__}: {exc}); fallback check used"
        return verdict, f"{reason}; {note}" if reason else note
    bad = report.table[report.table["verdict"] != "ok"]
    reason = "; ".join(f"{check} {r['verdict']}: {r['detail']}" for check, r in bad.iterrows())
    return str(report.verdict), reason


def _fallback_diagnose(idata: xr.DataTree) -> tuple[str, str]:
    """Label-invariant checks used when ``bayesgmm.diagnostics`` is not available.

    Divergences, and R-hat / bulk ESS of the per-draw total log-likelihood, which does
    not change when labels switch (per-component R-hat would flag every label switch)
    but does when chains sit in different modes: ``"fail"`` if R-hat > 1.05 or more
    than 1% divergent transitions; ``"warn"`` if R-hat > 1.01, any divergence, or bulk
    ESS < 100 per chain.
    """
    import arviz as az

    n_chains = idata["posterior"].sizes["chain"]
    n_draws = idata["posterior"].sizes["draw"]
    total = idata["log_likelihood"]["x"].sum("obs").to_dataset(name="total_loglik")
    fail, warn = [], []
    div = (
        int(idata["sample_stats"]["diverging"].sum()) if "diverging" in idata["sample_stats"] else 0
    )
    if div > 0.01 * n_chains * n_draws:
        fail.append(f"{div} divergences")
    elif div:
        warn.append(f"{div} divergences")
    if n_chains > 1:
        rhat = float(az.rhat(total)["total_loglik"])
        if not math.isfinite(rhat) or rhat > 1.05:
            fail.append(f"R-hat of the log-likelihood {rhat:.3f} > 1.05")
        elif rhat > 1.01:
            warn.append(f"R-hat of the log-likelihood {rhat:.3f} > 1.01")
    ess = float(az.ess(total)["total_loglik"])
    if ess < 100 * n_chains:
        warn.append(f"bulk ESS of the log-likelihood {ess:.0f} < {100 * n_chains}")
    verdict = "fail" if fail else "warn" if warn else "ok"
    return verdict, "; ".join(fail + warn)


def loo_compare(
    X: ArrayLike,
    k_range: Iterable[int] = range(1, 6),
    *,
    covariance_type: str = "full",
    priors: Mapping[str, Any] | None = None,
    sampler: Mapping[str, Any] | None = None,
    em: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    progress: bool = True,
) -> LOOComparison:
    """Fit a Bayesian mixture for each K and compare them by PSIS-LOO.

    Each fit is a :class:`~bayesgmm.BayesianGMM` (EM MAP start, then NUTS); the elpd is
    ``arviz.loo`` on its pointwise log-likelihood (variable ``x``), and
    ``arviz.compare`` ranks the fits whose diagnostics did not fail. A fit whose
    diagnostics fail (see below) or that raises stays in the table with its reason
    and ``ranked = False``.

    Diagnostics: :func:`bayesgmm.diagnostics.diagnose` on the posterior relabelled
    (pivot = the EM solution) by :func:`bayesgmm.relabel.relabel`; fits whose verdict
    is ``"fail"`` are not ranked, ``"warn"`` ones are ranked and marked. Without those
    modules, a label-invariant check of divergences and of R-hat / ESS of the total
    log-likelihood is used (``"fail"``: R-hat > 1.05 or > 1% divergent; ``"warn"``:
    R-hat > 1.01, any divergence, or bulk ESS < 100 per chain).

    Compilation: the model's shapes depend on K (weights (K,), means (K, D), ...), and
    the model is built with K fixed, so a compiled model cannot be shared across K;
    every K compiles once. With nutpie (numba) compiling dominates a small fit (about
    25 s to compile against 1 s to sample N = 210, K = 3 on two busy cores);
    ``sampler={"nuts_sampler": "numpyro"}`` compiles faster here.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k_range : iterable of int, default=range(1, 6)
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    priors, em : dict, optional
        Passed to every :class:`~bayesgmm.BayesianGMM`.
    sampler : dict, optional
        Sampler settings for every fit; ``random_seed`` is ignored (each K gets a seed
        derived from ``random_seed``) and ``progressbar`` defaults to False.
    random_seed : int, default=0
        Master seed: the same seed gives the same table.
    progress : bool, default=True
        Print one line per fit (K, time, elpd, Pareto k, diagnostics).

    Returns
    -------
    LOOComparison

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> res = loo_compare(load_faithful(), [1, 2], random_seed=1,  # doctest: +SKIP
    ...                   sampler={"draws": 300, "tune": 300, "chains": 2})
    >>> res.best  # doctest: +SKIP
    2
    """
    import arviz as az

    from bayesgmm.estimator import BayesianGMM

    X_arr, names = check_data(X)
    ks = _check_k_range(k_range, X_arr.shape[0])
    if covariance_type not in COVARIANCE_TYPES:
        raise ConfigError(
            f"unknown covariance_type {covariance_type!r}; valid: {list(COVARIANCE_TYPES)}"
        )
    seed = _check_seed(random_seed)
    if sampler is not None and not isinstance(sampler, Mapping):
        raise ConfigError(f"sampler must be a dict of settings; got {type(sampler).__name__}.")
    base_sampler = {"progressbar": False, **dict(sampler or {})}
    fits: dict[int, Any] = {}
    loos: dict[int, Any] = {}
    rows = []
    for i, K in enumerate(ks, start=1):
        t0 = time.perf_counter()
        row: dict[str, Any] = {"K": K}
        try:
            gmm = BayesianGMM(
                K,
                covariance_type=covariance_type,
                priors=priors,
                sampler={**base_sampler, "random_seed": _child_seed(seed, K)},
                em=em,
            )
            with warnings.catch_warnings():
                # the estimator's own check is per component, so it flags label
                # switching; the label-invariant verdict below replaces it
                warnings.simplefilter("ignore", SamplingWarning)
                gmm.fit(X_arr, feature_names=names)
                loo = az.loo(gmm.idata_, var_name="x")
        except (DegenerateFitError, DataError) as exc:
            row.update(diagnostics="fail", diagnostics_reason=f"fit failed: {exc}")
            rows.append(row)
            _say(progress, f"loo_compare [{i}/{len(ks)}] K={K}: fit failed ({exc})")
            continue
        verdict, reason = _diagnose(gmm.idata_, reference=gmm.em_)
        pareto_k = np.asarray(loo.pareto_k)
        n_high = int((pareto_k > loo.good_k).sum())
        row.update(
            elpd=float(loo.elpd),
            se=float(loo.se),
            p_loo=float(loo.p),
            n_high_pareto_k=n_high,
            max_pareto_k=float(pareto_k.max()),
            pareto_warning=bool(loo.warning),
            diagnostics=verdict,
            diagnostics_reason=reason,
            seconds=time.perf_counter() - t0,
        )
        fits[K], loos[K] = gmm, loo
        rows.append(row)
        _say(
            progress,
            f"loo_compare [{i}/{len(ks)}] K={K}: {row['seconds']:.1f} s, elpd "
            f"{row['elpd']:.1f} (se {row['se']:.1f}), {n_high} Pareto k > {loo.good_k:.2f}, "
            f"diagnostics {verdict}" + (f" ({reason})" if reason else ""),
        )
    columns = [
        "elpd", "se", "p_loo", "elpd_diff", "dse", "rank", "weight", "n_high_pareto_k",
        "max_pareto_k", "pareto_warning", "diagnostics", "diagnostics_reason", "ranked",
        "seconds",
    ]  # fmt: skip
    table = pd.DataFrame(rows).set_index("K").reindex(columns=columns)
    table["ranked"] = table["diagnostics"].isin(["ok", "warn"]) & table["elpd"].notna()
    ranked = [K for K in table.index if table.loc[K, "ranked"]]
    comp = None
    if len(ranked) >= 2:
        comp = az.compare({f"K={K}": loos[K] for K in ranked}, round_to="none")
        for K in ranked:
            r = comp.loc[f"K={K}"]
            table.loc[K, ["elpd_diff", "dse", "rank", "weight"]] = [
                r["elpd_diff"], r["dse"], r["rank"], r["weight"],
            ]  # fmt: skip
    elif len(ranked) == 1:
        table.loc[ranked[0], ["elpd_diff", "dse", "rank", "weight"]] = [0.0, 0.0, 0, 1.0]
    table["diagnostics_reason"] = table["diagnostics_reason"].fillna("")
    return LOOComparison(table=table, fits=fits, loo=loos, compare=comp)


# --------------------------------------------------------------------------- #
# Sparse finite mixture
# --------------------------------------------------------------------------- #


def _posterior_dataset(posterior: Any) -> xr.Dataset:
    if isinstance(posterior, xr.DataTree):
        posterior = posterior["posterior"].to_dataset() if "posterior" in posterior else None
    if not isinstance(posterior, xr.Dataset):
        raise DataError(
            "posterior must be a DataTree with a 'posterior' group or an xarray Dataset; got "
            f"{type(posterior).__name__}."
        )
    missing = [v for v in ("weights", "means", "covariance") if v not in posterior]
    if missing:
        raise DataError(
            f"posterior lacks variable(s) {missing}; it needs 'weights', 'means' and "
            "'covariance' as produced by BayesianGMM."
        )
    return posterior


def count_nonempty(X: ArrayLike, posterior: Any) -> xr.DataArray:
    """Number of non-empty components in each posterior draw.

    For every draw, each point is assigned to its most probable component under that
    draw's parameters (``argmax_k`` of the responsibilities, i.e. of
    ``log w_k + log N(x_i | mu_k, Sigma_k)``), and the components that receive at
    least one point are counted. The count depends only on the *set* of components of a
    draw, not on their order, so it is label-invariant and needs no relabelling.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The data (usually the training data).
    posterior : DataTree or Dataset
        Variables ``weights`` (chain, draw, component), ``means`` (chain, draw,
        component, feature) and ``covariance`` (chain, draw, component, feature,
        feature_bis), as in ``BayesianGMM.idata_``.

    Returns
    -------
    DataArray of int, dims (chain, draw)

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> X = np.array([[0.0], [0.1], [5.0]])
    >>> post = xr.Dataset({
    ...     "weights": (("chain", "draw", "component"), [[[0.5, 0.5, 1e-9]]]),
    ...     "means": (("chain", "draw", "component", "feature"), [[[[0.0], [5.0], [50.0]]]]),
    ...     "covariance": (("chain", "draw", "component", "feature", "feature_bis"),
    ...                    np.ones((1, 1, 3, 1, 1)))})
    >>> count_nonempty(X, post).values.tolist()
    [[2]]
    """
    post = _posterior_dataset(posterior)
    X = np.asarray(X, dtype=np.float64)
    w = post["weights"].transpose("chain", "draw", "component").values
    mu = post["means"].transpose("chain", "draw", "component", ...).values
    cov = post["covariance"].transpose("chain", "draw", "component", ...).values
    n_chain, n_draw, _ = w.shape
    if X.ndim != 2 or X.shape[1] != mu.shape[-1]:
        raise DataError(
            f"X must have shape (n_samples, {mu.shape[-1]}) to match the posterior; got {X.shape}."
        )
    counts = np.empty((n_chain, n_draw), dtype=np.int64)
    for c in range(n_chain):
        for d in range(n_draw):
            lr = log_responsibilities(X, w[c, d], mu[c, d], cov[c, d], "full")
            counts[c, d] = np.unique(np.argmax(lr, axis=1)).size
    return xr.DataArray(
        counts,
        dims=("chain", "draw"),
        coords={k: post[k] for k in ("chain", "draw") if k in post.coords},
        name="n_nonempty",
    )


@dataclass
class SparseMixtureResult:
    """Result of :func:`sparse_mixture`.

    Attributes
    ----------
    counts : DataArray of int, dims (chain, draw)
        Non-empty components per draw (:func:`count_nonempty`).
    distribution : Series
        Posterior probability of each number of non-empty components (index: the
        count; values sum to 1).
    mode : int
        Most probable number of non-empty components.
    concentration : float
        The Dirichlet concentration used.
    estimator : BayesianGMM
        The fitted overfitted mixture.
    """

    counts: xr.DataArray = field(repr=False)
    distribution: pd.Series
    mode: int
    concentration: float
    estimator: Any = field(repr=False)


def sparse_mixture(
    X: ArrayLike,
    n_components: int = 8,
    *,
    concentration: float = SPARSE_CONCENTRATION,
    covariance_type: str = "full",
    priors: Mapping[str, Any] | None = None,
    sampler: Mapping[str, Any] | None = None,
    em: Mapping[str, Any] | None = None,
    random_seed: int = 0,
) -> SparseMixtureResult:
    """Fit a deliberately overfitted sparse finite mixture and count its non-empty components.

    The weights get a symmetric ``Dirichlet(concentration)`` prior with a small
    concentration, so superfluous components are emptied rather than used to split
    clusters: Rousseau & Mengersen (2011) show that with a concentration below
    ``d/2`` (``d`` = parameters per component) the extra components' weights go to
    zero; Malsiner-Walli, Frühwirth-Schnatter & Grün (2016, *Statistics and Computing*
    26, 303-324) recommend a very small fixed value such as ``e0 = 0.01`` (or a
    Gamma hyperprior on it) for clustering. The fixed value 0.01 is used here.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int, default=8
        The deliberately generous number of components.
    concentration : float, default=0.01
        Dirichlet concentration ``e0 > 0`` of every component's weight.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    priors : dict, optional
        Other prior overrides (a ``weights`` entry here is an error: use
        ``concentration``).
    sampler, em : dict, optional
        As for :class:`~bayesgmm.BayesianGMM`; ``random_seed`` overrides the sampler's.
    random_seed : int, default=0

    Returns
    -------
    SparseMixtureResult

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> res = sparse_mixture(load_faithful(), 6, random_seed=1,  # doctest: +SKIP
    ...                      sampler={"draws": 300, "tune": 300, "chains": 2})
    >>> res.mode  # doctest: +SKIP
    2
    """
    from bayesgmm.estimator import BayesianGMM
    from bayesgmm.priors import Prior

    if isinstance(concentration, bool) or not isinstance(concentration, int | float):
        raise ConfigError(f"concentration must be a positive number; got {concentration!r}.")
    if not (math.isfinite(concentration) and concentration > 0):
        raise ConfigError(f"concentration must be a positive number; got {concentration!r}.")
    if priors is not None and "weights" in priors:
        raise ConfigError(
            "sparse_mixture sets the weights prior itself; pass `concentration` instead of "
            "priors['weights']."
        )
    seed = _check_seed(random_seed)
    if sampler is not None and not isinstance(sampler, Mapping):
        raise ConfigError(f"sampler must be a dict of settings; got {type(sampler).__name__}.")
    gmm = BayesianGMM(
        n_components,
        covariance_type=covariance_type,
        priors={**dict(priors or {}), "weights": Prior("Dirichlet", a=float(concentration))},
        sampler={"progressbar": False, **dict(sampler or {}), "random_seed": seed},
        em=em,
    )
    with warnings.catch_warnings():
        # per-component R-hat is meaningless for emptied components that wander
        # over their prior; the label-invariant count is what is reported
        warnings.simplefilter("ignore", SamplingWarning)
        gmm.fit(X)
    X_arr, _ = check_data(X)
    counts = count_nonempty(X_arr, gmm.idata_)
    values, freq = np.unique(counts.values, return_counts=True)
    dist = pd.Series(freq / freq.sum(), index=pd.Index(values, name="n_nonempty"), name="prob")
    return SparseMixtureResult(
        counts=counts,
        distribution=dist,
        mode=int(values[np.argmax(freq)]),
        concentration=float(concentration),
        estimator=gmm,
    )


# --------------------------------------------------------------------------- #
# Plot
# --------------------------------------------------------------------------- #


def plot_selection(
    loo: LOOComparison | pd.DataFrame | None = None,
    bic: pd.DataFrame | None = None,
    *,
    criterion: str = "bic",
):
    """Plot the candidates: elpd ± se against K, and BIC curves per covariance family.

    Parameters
    ----------
    loo : LOOComparison or its ``table``, optional
        Fits that were not ranked (failed diagnostics) are drawn as open red markers.
    bic : DataFrame from :func:`bic_table`, optional
        Degenerate or failed fits are marked with an ``x`` at the bottom of the panel.
    criterion : {'bic', 'icl'}, default='bic'

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from bayesgmm.datasets import load_faithful
    >>> fig = plot_selection(bic=bic_table(load_faithful(), range(1, 4), ["tied", "diag"]))
    >>> len(fig.axes)
    1
    """
    import matplotlib.pyplot as plt

    if loo is None and bic is None:
        raise ConfigError("plot_selection needs a LOO comparison, a BIC table, or both.")
    if criterion not in ("bic", "icl"):
        raise ConfigError(f"criterion must be 'bic' or 'icl'; got {criterion!r}.")
    panels = [p for p in (loo, bic) if p is not None]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    axes = list(axes[0])
    if loo is not None:
        table = loo.table if isinstance(loo, LOOComparison) else loo
        ax = axes.pop(0)
        ks = np.asarray(table.index, dtype=int)
        ranked = table["ranked"].to_numpy(dtype=bool)
        ax.errorbar(ks, table["elpd"], yerr=table["se"], fmt="-", color="0.6", zorder=1)
        ax.errorbar(
            ks[ranked], table["elpd"][ranked], yerr=table["se"][ranked], fmt="o",
            color="C0", capsize=3, label="ranked",
        )  # fmt: skip
        if (~ranked).any():
            ax.plot(
                ks[~ranked], table["elpd"][~ranked], "o", mfc="none", color="C3",
                label="diagnostics failed (not ranked)",
            )  # fmt: skip
        ax.set(xlabel="K (components)", ylabel="elpd (PSIS-LOO) ± se", title="LOO")
        ax.set_xticks(ks)
        ax.legend(loc="lower right", fontsize="small")
    if bic is not None:
        ax = axes.pop(0)
        for i, (ct, rows) in enumerate(bic.groupby("covariance_type", sort=False)):
            ax.plot(rows["K"], rows[criterion], "o-", color=f"C{i}", label=ct)
        bad = bic[bic["status"] != "ok"]
        if not bad.empty:
            ax.plot(
                bad["K"], np.full(len(bad), np.nanmin(bic[criterion])), "x", color="k",
                label="degenerate / failed",
            )  # fmt: skip
        name = criterion.upper()
        ax.set(
            xlabel="K (components)",
            ylabel=f"{name} = 2 logL - penalty (higher is better)",
            title=f"{name} at the EM solution",
        )
        ax.set_xticks(sorted(bic["K"].unique()))
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig
