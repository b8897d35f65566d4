"""BIC and ICL at the EM solution: a fast pre-screen of K and of covariance families.

:func:`bic_table` fits EM for every K and family -- any name the family table knows
(:mod:`bayesgmm.core.families`), or all of mclust's fourteen models -- in **mclust's sign
convention** ``BIC = 2 logL - df ln n`` (**higher is better**; ``convention="sklearn"``
gives scikit-learn's ``-BIC``, lower is better). Degenerate fits (collapsed components,
whose likelihood is unbounded) are reported with their reason, not ranked
(:func:`degeneracy_reason`). The BIC plot is :func:`bayesgmm.analysis.bic_plot.plot_bic`;
the Bayesian comparisons (PSIS-LOO, sparse mixtures) are in :mod:`bayesgmm.workflows`.
"""

from __future__ import annotations

import math
import warnings
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bayesgmm.core.background import check_noise, check_noise_init, guess_noise, noise_turn
from bayesgmm.core.checks import check_k_range, check_seed, child_seed, integer, say
from bayesgmm.core.data import check_data
from bayesgmm.core.em import fit_em
from bayesgmm.core.em_result import EMResult
from bayesgmm.core.families import (
    COVARIANCE_TYPES,
    EM_COVARIANCE_TYPES,
    MCLUST_MODELS,
    UNIVARIATE_MODELS,
    family,
)
from bayesgmm.exceptions import ConfigError, ConvergenceWarning, DataError, DegenerateFitError

__all__ = ["N_INIT", "best_bic", "bic_table", "degeneracy_reason", "sweep_families"]

_VAR_RTOL = 1e-6  # smallest eigenvalue of a standardised component covariance
#: Default EM starts per (family, K) of :func:`bic_table` (see its Notes for the measurement).
N_INIT = 200
_SHORT_ITER = 10  # iterations of each short run
_N_REFINE = 5  # best short runs continued to convergence (more if those are degenerate)
_N_ANY = 3  # and the first few starts, whatever their rank after the short runs
_CONVENTIONS = ("mclust", "sklearn")
_COLUMNS = [
    "covariance_type", "mclust", "K", "log_likelihood", "n_parameters", "bic", "icl",
    "n_reseeds", "converged", "n_starts", "n_best", "status", "reason",
]  # fmt: skip


def _resolution(X: np.ndarray) -> np.ndarray:
    """Smallest gap between distinct values of each column (the recording resolution)."""
    out = np.empty(X.shape[1])
    for j in range(X.shape[1]):
        gaps = np.diff(np.unique(X[:, j]))
        out[j] = gaps.min() if gaps.size else 0.0
    return out


def _below(value: float, bound: int) -> str:
    """``value`` (< ``bound``) shown with two decimals, rounded down so that it reads as
    less than ``bound`` (1.996 is "1.99", never "2.0")."""
    return f"{math.floor(value * 100.0) / 100.0:.2f}"


def degeneracy_reason(fit: EMResult, X: ArrayLike, *, var_rtol: float = _VAR_RTOL) -> str | None:
    """Why an EM fit is degenerate (its likelihood is driven by a collapsing component).

    A Gaussian mixture's likelihood is unbounded: a component can shrink onto a few
    points, a line, or tied (repeated) values, and its density there grows without
    limit. Such a fit has a spuriously high log-likelihood and BIC, so it must not be
    ranked (mclust reports it as ``NA``). A fit is called degenerate when a component

    1. holds fewer points than its covariance needs, ``m = D + 1`` (a covariance per
       component with correlations), ``2`` (diagonal, spherical) or ``1`` (a shared
       covariance): both its responsibility mass ``n w_k`` **and** the number of
       distinct points assigned to it (MAP) are below ``m``. With fewer, the maximum
       likelihood covariance of that component is singular and only the soft spill of
       other points' responsibilities keeps it finite. (A component on two distinct
       points in one dimension has enough, even when its mass is 1.99.)
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
    >>> from bayesgmm.core.em import fit_em
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> degeneracy_reason(fit_em(X, 2, prior=None, random_seed=0), X) is None
    True
    """
    X = np.asarray(X, dtype=np.float64)
    return _degeneracy(fit, X, _resolution(X), var_rtol)


def _degeneracy(fit: EMResult, X: np.ndarray, h: np.ndarray, var_rtol: float) -> str | None:
    """:func:`degeneracy_reason` with the resolution ``h`` of ``X`` computed once."""
    n, D = X.shape
    fam = family(fit.covariance_type)
    reasons = []
    mass = n * np.asarray(fit.weights)
    m = fam.min_component_size(D)
    if (mass < m).any():
        labels = fit.predict(X)
        for k in np.flatnonzero(mass < m):
            distinct = len(np.unique(X[labels == k], axis=0))
            if distinct < m:
                reasons.append(
                    f"component {int(k)} holds {_below(mass[k], m)} points of responsibility "
                    f"mass and {distinct} distinct point(s) by MAP assignment, fewer than the "
                    f"{m} a {fam.name} ({fam.mclust}) covariance needs in {D} dimension(s)"
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
    # conditional variances 1 / (Sigma^-1)_dd, with Sigma^-1 = U U^T from the precision factor
    prec_chol = family("full").prec_chol(np.linalg.cholesky(cov))
    cond_var = 1.0 / np.square(prec_chol).sum(axis=2)  # (K, D)
    narrow = cond_var < (h**2 / 12.0)[None]
    if narrow.any():
        k, d = np.argwhere(narrow)[0]
        reasons.append(
            f"component {int(k)} is narrower than the data's resolution in feature "
            f"{fit.feature_names[d]!r} (conditional sd {math.sqrt(cond_var[k, d]):.3g} < "
            f"h/sqrt(12) = {h[d] / math.sqrt(12.0):.3g}; it sits on tied values)"
        )
    return "; ".join(reasons) or None


def sweep_families(covariance_types: Sequence[str] | str, n_features: int) -> list[str]:
    """The family names to sweep (checked): ``"mclust"`` is mclust's fourteen (E and V in
    1-D); a name, or a list of distinct families.

    Examples
    --------
    >>> sweep_families("mclust", 1)
    ['E', 'V']
    """
    if isinstance(covariance_types, str):
        if covariance_types == "mclust":
            return list(UNIVARIATE_MODELS if n_features == 1 else MCLUST_MODELS)
        covariance_types = [covariance_types]
    cts = list(covariance_types)
    valid = f"family names the table knows, {list(EM_COVARIANCE_TYPES)}, or 'mclust'"
    bad = [c for c in cts if not isinstance(c, str) or c not in EM_COVARIANCE_TYPES]
    if not cts or bad:
        raise ConfigError(f"covariance_types must be a non-empty list of {valid}; got {cts!r}.")
    records = [family(c).name for c in cts]
    twice = sorted({c for c, r in zip(cts, records, strict=True) if records.count(r) > 1})
    if twice:
        raise ConfigError(f"covariance_types names the same family twice: {twice}.")
    return cts


def _key(name: str) -> int:
    """A seed key for a family that does not depend on the table's order (aliases share it)."""
    return zlib.crc32(family(name).name.encode())


#: The starts' seedings, in turn: k-means++ on the data and on columns scaled to unit sd
#: (on Old Faithful, EVV's best basins at K = 3, 7, 8 are found only from the latter).
#: Spherical families (EII, VII, E, V) seed on the data only: their fit depends on the
#: columns' units, so seeds in other units start from clusters they cannot represent.
_INITS = ("k-means++", "k-means++-scaled")


def _inits(ct: str) -> tuple[str, ...]:
    return _INITS[:1] if family(ct).mclust[1:] in ("II", "") else _INITS


def _search(X, K, ct, prior, n_init, seed, names, h, var_rtol, noise=False, noise_init=None,
            guess=None):  # fmt: skip
    """Best of ``n_init`` starts: ``_SHORT_ITER`` EM iterations each, then the best few
    continued to convergence (Biernacki, Celeux & Govaert 2003's short-EM strategy); the
    best non-degenerate converged fit is kept. Returns ``(fit, reason, notes, n_best)``.
    With a background and no ``noise_init``, start ``i`` takes ``noise_turn(i)``, from
    ``guess`` (:func:`~bayesgmm.core.background.guess_noise`'s) on its turn, as the starts
    of one :func:`~bayesgmm.fit_em` do."""

    inits = _inits(ct)
    turns = noise is not False and noise is not None and noise_init is None

    def run(i: int, max_iter: int) -> EMResult | None:
        init, start, turn = inits[i % len(inits)], noise_init, noise_turn(i)
        if turns and turn == "guess" and guess is not None and (~guess).sum() >= K:
            start = guess  # (as fit_em's own turns, no guess that leaves too few points)
        elif turns and turn == "random":
            init = "random"
        try:
            return fit_em(
                X, K, covariance_type=ct, prior=prior, n_init=1, max_iter=max_iter,
                init=init, random_seed=child_seed(seed, _key(ct), K, i),
                feature_names=names, noise=noise, noise_init=start,
            )  # fmt: skip
        except DegenerateFitError:
            return None

    if K == 1:  # a single component: every start is the same (closed-form without noise)
        order = [0]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # the short runs stop early
            short = [run(i, _SHORT_ITER) for i in range(n_init)]
        ok = [i for i, f in enumerate(short) if f is not None]
        ranked = sorted(ok, key=lambda i: -short[i].log_posterior)
        # the best short runs, then a few regardless of rank (a basin can lead early)
        order = list(dict.fromkeys(ranked[:_N_REFINE] + ok[:_N_ANY] + ranked[_N_REFINE:]))
    kept: list[tuple[EMResult, str | None, list[str]]] = []
    for i in order[: 4 * (_N_REFINE + _N_ANY)]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            fit = run(i, 1000)
        if fit is not None:
            notes = [str(w.message).split(". ")[0] for w in caught]
            kept.append((fit, _degeneracy(fit, X, h, var_rtol), notes))
        if sum(r is None for _, r, _ in kept) >= _N_REFINE + _N_ANY:
            break
    if not kept:
        raise DegenerateFitError("EM failed in every start (the covariances collapsed)")
    fit, reason, notes = max(kept, key=lambda t: (t[1] is None, t[0].log_posterior))
    n_best = sum(
        (r is None) == (reason is None) and f.log_posterior > fit.log_posterior - 0.01
        for f, r, _ in kept
    )
    return fit, reason, notes, n_best


def bic_table(
    X: ArrayLike,
    k_range: Iterable[int] = range(1, 6),
    covariance_types: Sequence[str] | str = COVARIANCE_TYPES,
    *,
    prior: str | None = None,
    n_init: int = N_INIT,
    random_seed: int = 0,
    var_rtol: float = _VAR_RTOL,
    convention: str = "mclust",
    progress: bool = False,
    noise: bool | float = False,
    noise_init: ArrayLike | None = None,
) -> pd.DataFrame:
    """BIC and ICL of the EM fit for every K and covariance family (a fast pre-screen).

    Sign convention (mclust's, the default): ``BIC = 2 logL - df ln n`` and
    ``ICL = BIC + 2 sum_i log max_k p(z_i = k | x_i)`` (mclust's ``icl()``: the hard,
    MAP classification); **higher is better**. ``convention="sklearn"`` reports
    ``-BIC`` and ``-ICL`` (scikit-learn's ``GaussianMixture.bic``, lower is better).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k_range : iterable of int, default=range(1, 6)
        Numbers of Gaussian components. With ``noise``, 0 may be among them: the
        background alone (every point noise), as mclust's ``G = 0``, whose row is the
        same for every family: ``log_likelihood = n log(1 / V)``, one parameter (the
        volume, as mclust's ``2 n log(1 / V) - log n`` counts it) and ICL = BIC.
    covariance_types : sequence of str or 'mclust', default=COVARIANCE_TYPES
        Any family names of :mod:`bayesgmm.core.families` (scikit-learn's full, tied,
        diag, spherical or mclust's EII ... VVV, E, V); ``'mclust'`` is all fourteen of
        mclust's models (E and V for one feature). The default is the families the
        Bayesian model has.
    prior : None or 'default', default=None
        None: maximum likelihood (mclust's default); ``'default'``: MAP under
        :meth:`EMPrior.default` (as mclust's ``priorControl``), with BIC still computed
        from the log-likelihood at the MAP.
    n_init : int, default=N_INIT (200)
        EM starts per fit (K = 1 needs one). See Notes.
    random_seed : int, default=0
        Master seed; each (family, K) gets its own seed derived from it and the
        family's name, so a fit does not depend on the rest of the sweep.
    var_rtol : float, default=1e-6
        Collapse threshold, see :func:`degeneracy_reason`.
    convention : {'mclust', 'sklearn'}, default='mclust'
        Sign of ``bic`` and ``icl`` (recorded in ``table.attrs["convention"]``, which
        :func:`best_bic` and the BIC plot read).
    progress : bool, default=False
        Print one line per fit.
    noise : bool or float, default=False
        A background-noise component in every fit (as :func:`~bayesgmm.fit_em` takes
        it: True for a uniform density over the data's bounding box, or its volume), as
        mclust's ``mclustBIC(X, initialization = list(noise = ...), Vinv = 1 / V)``:
        the log-likelihood includes the background, ``n_parameters`` counts its weight
        and its volume (two more than without, as mclust counts them) and the ICL's
        classification includes it. The starts take turns as :func:`~bayesgmm.fit_em`'s
        do with a background: seeded from all points (the background at weight 0.1),
        from the points :func:`~bayesgmm.core.background.guess_noise` leaves, and from
        random memberships; with ``noise_init``, every start from it. Recorded in
        ``table.attrs["noise"]``.
    noise_init : array-like of bool, shape (n_samples,), optional
        With ``noise``: the points guessed to be noise (mclust's ``initialization =
        list(noise = ...)``), where every start of every fit begins (see
        :func:`~bayesgmm.fit_em`).

    Returns
    -------
    DataFrame
        One row per (covariance_type, K): ``covariance_type`` (as given), ``mclust``
        (mclust's name of the family), ``K``, ``log_likelihood``, ``n_parameters``,
        ``bic``, ``icl``, ``n_reseeds`` (EM components re-seeded after collapsing in the
        kept start), ``converged``, ``n_starts``, ``n_best`` (how many of the starts run
        to convergence reached the kept log-likelihood, within 0.01: 1 means the best fit
        was found once, and more starts might find a better one), ``status`` (``"ok"``,
        ``"degenerate"`` or ``"failed"``) and ``reason``. ``bic`` and ``icl`` are NaN
        unless the status is ``"ok"``: degenerate fits are not ranked. Pick the best with
        :func:`best_bic`.

    Notes
    -----
    Each start is a k-means++ initialisation (every other one on columns scaled to unit
    sd, ``init='k-means++-scaled'``, except for the spherical families, whose fit depends
    on the units) run for 10 EM iterations; the 5 best of
    those, and the first 3 starts whatever their rank (a basin can lead early: VEV on
    Old Faithful, K = 3), are run to convergence, more when some of them end degenerate.
    The kept fit is the best non-degenerate one, as mclust reports the regular fit. This
    is the short-EM strategy of Biernacki, Celeux & Govaert (2003). On the galaxies data
    (``MASS::galaxies / 1000``, mclust's V, K = 4) one k-means++ start run to
    convergence ends at the optimum log-likelihood -197.45 about once in 20 (10 of 200
    seeds), and the starts that do rank among the best after 10 iterations. With
    ``bic_table(galaxies, [4], ["V"], n_init=n, random_seed=s)``, ``s`` in 0..59, the
    optimum was found by 200 starts for 60 of 60 seeds (0.48 s per fit), by 100 for
    56 of 60 (0.26 s), by 50 for 42 of 60 and by 10 for 16 of 60. mclust's own
    hierarchical start ends at -199.25.

    Examples
    --------
    >>> from bayesgmm.core.datasets import load_faithful
    >>> table = bic_table(load_faithful(), range(1, 4), ["tied"])
    >>> best = best_bic(table)
    >>> best["covariance_type"], best["mclust"], int(best["K"]), round(float(best["bic"]), 1)
    ('tied', 'EEE', 3, -2314.3)
    """
    X, names = check_data(X)
    background = check_noise(noise, X)  # a bad value or an empty box: refused before any fit
    with_zero = background is not None  # K = 0: the background alone (mclust's G = 0)
    ks = check_k_range(k_range, lowest=0 if with_zero else 1,
                       hint="" if with_zero else _ZERO_NEEDS_NOISE)  # fmt: skip
    noise_init = check_noise_init(noise_init, X.shape[0], max(ks), background)
    # the starts' guess of the noise points, the same for every family and K
    guess = guess_noise(X) if background is not None and noise_init is None else None
    cts = sweep_families(covariance_types, X.shape[1])
    if prior not in (None, "default"):
        raise ConfigError(f"prior must be None (maximum likelihood) or 'default'; got {prior!r}.")
    if not integer(1)(n_init):
        raise ConfigError(f"n_init must be {integer(1).allowed}; got {n_init!r}.")
    if convention not in _CONVENTIONS:
        raise ConfigError(f"convention must be one of {list(_CONVENTIONS)}; got {convention!r}.")
    seed = check_seed(random_seed)
    h = _resolution(X)
    sign = 1.0 if convention == "mclust" else -1.0
    rows = []
    for ct in cts:
        for K in ks:
            row: dict[str, Any] = {"covariance_type": ct, "mclust": family(ct).mclust, "K": K}
            row["n_starts"] = 1 if K == 1 else n_init
            if K == 0:  # the background alone: nothing to fit
                row.update(_background_only(X.shape[0], background, sign))
            else:
                try:
                    fit, reason, notes, n_best = _search(
                        X, K, ct, prior, n_init, seed, names, h, var_rtol, noise, noise_init,
                        guess,
                    )  # fmt: skip
                except DegenerateFitError as exc:
                    row.update(status="degenerate", reason=str(exc).split(". ")[0])
                except DataError as exc:
                    row.update(status="failed", reason=str(exc))
                else:
                    row.update(
                        log_likelihood=fit.log_likelihood,
                        n_parameters=fit.n_parameters(),
                        bic=sign * fit.bic() if reason is None else math.nan,
                        icl=sign * fit.icl() if reason is None else math.nan,
                        n_reseeds=fit.n_reseeds,
                        converged=fit.converged,
                        n_best=n_best,
                        status="ok" if reason is None else "degenerate",
                        reason=reason or "; ".join(notes),
                    )
            rows.append(row)
            say(
                progress,
                f"bic_table: {ct:>9s} K={K}: {row['status']}"
                + (f", BIC {row['bic']:.2f}" if row["status"] == "ok" else f" ({row['reason']})"),
            )
    table = pd.DataFrame(rows).reindex(columns=_COLUMNS)
    table["reason"] = table["reason"].fillna("")
    table.attrs["convention"] = convention
    table.attrs["noise"] = noise  # every fit's background (False: none)
    return table


_ZERO_NEEDS_NOISE = (
    "; K = 0 is the background-noise component alone (mclust's G = 0), which needs one: "
    "pass noise=True (or its volume)"
)


def _background_only(n: int, background: float, sign: float) -> dict[str, Any]:
    """The row of K = 0, every point the background's (mclust's G = 0)."""
    loglik = n * background
    bic = sign * (2.0 * loglik - math.log(n))
    return dict(log_likelihood=loglik, n_parameters=1, bic=bic, icl=bic, n_reseeds=0,
                converged=True, n_starts=0, n_best=1, status="ok", reason="")  # fmt: skip


def best_bic(table: pd.DataFrame, criterion: str = "bic") -> pd.Series:
    """The row of a :func:`bic_table` with the best BIC (or ICL) among ``"ok"`` fits:
    the highest in mclust's convention, the lowest in scikit-learn's
    (``table.attrs["convention"]``, mclust's when absent).

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
    convention = table.attrs.get("convention", "mclust")
    if convention not in _CONVENTIONS:
        raise ConfigError(f"table.attrs['convention'] must be one of {list(_CONVENTIONS)}.")
    ok = table[(table["status"] == "ok") & table[criterion].notna()]
    if ok.empty:
        raise DegenerateFitError(
            "no fit in the table is usable: every one is degenerate or failed. Try "
            "prior='default' (MAP), fewer components or standardised data."
        )
    best = ok[criterion].idxmax() if convention == "mclust" else ok[criterion].idxmin()
    return ok.loc[best]
