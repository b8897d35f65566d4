"""BIC and ICL at the EM solution: a fast pre-screen of K and of covariance families.

:func:`bic_table` fits EM for every K and family, in **mclust's sign convention**
``BIC = 2 logL - df ln n`` (**higher is better**; scikit-learn's
``GaussianMixture.bic`` is the negative, lower is better). Degenerate fits (collapsed
components, whose likelihood is unbounded) are reported with their reason, not ranked
(:func:`degeneracy_reason`). The Bayesian comparisons (PSIS-LOO, sparse mixtures) are in
:mod:`bayesgmm.workflows`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bayesgmm.core.checks import check_k_range, check_seed, child_seed, say
from bayesgmm.core.data import check_data
from bayesgmm.core.em import fit_em
from bayesgmm.core.em_result import EMResult
from bayesgmm.core.families import COVARIANCE_TYPES, family
from bayesgmm.exceptions import ConfigError, ConvergenceWarning, DataError, DegenerateFitError

__all__ = ["best_bic", "bic_table", "degeneracy_reason"]

_VAR_RTOL = 1e-6  # smallest eigenvalue of a standardised component covariance


def _resolution(X: np.ndarray) -> np.ndarray:
    """Smallest gap between distinct values of each column (the recording resolution)."""
    out = np.empty(X.shape[1])
    for j in range(X.shape[1]):
        gaps = np.diff(np.unique(X[:, j]))
        out[j] = gaps.min() if gaps.size else 0.0
    return out


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
    >>> from bayesgmm.core.em import fit_em
    >>> X = np.random.default_rng(0).normal(size=(200, 2))
    >>> degeneracy_reason(fit_em(X, 2, prior=None, random_seed=0), X) is None
    True
    """
    X = np.asarray(X, dtype=np.float64)
    n, D = X.shape
    reasons = []
    sizes = n * np.asarray(fit.weights)
    m = family(fit.covariance_type).min_component_size(D)
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
    >>> from bayesgmm.core.datasets import load_faithful
    >>> table = bic_table(load_faithful(), range(1, 4), ["tied"])
    >>> best = best_bic(table)
    >>> best["covariance_type"], int(best["K"]), round(float(best["bic"]), 1)
    ('tied', 3, -2314.3)
    """
    X, names = check_data(X)
    ks = check_k_range(k_range)
    cts = list(covariance_types) if not isinstance(covariance_types, str) else [covariance_types]
    bad = [c for c in cts if c not in COVARIANCE_TYPES]
    if not cts or bad:
        raise ConfigError(
            f"covariance_types must be a non-empty subset of {list(COVARIANCE_TYPES)}; got {cts!r}."
        )
    if prior not in (None, "default"):
        raise ConfigError(f"prior must be None (maximum likelihood) or 'default'; got {prior!r}.")
    seed = check_seed(random_seed)
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
                        random_seed=child_seed(seed, COVARIANCE_TYPES.index(ct), K),
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
            say(
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
