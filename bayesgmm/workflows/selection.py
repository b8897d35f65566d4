"""Choosing the number of components K by PSIS-LOO over Bayesian fits, and its plot.

* :func:`loo_compare` -- fits :class:`~bayesgmm.BayesianGMM` for each K (and each
  covariance family, when several are given), estimates the expected log predictive
  density by PSIS-LOO (``arviz.loo`` / ``arviz.compare`` on the
  pointwise log-likelihood ``x``) and reports Pareto-k warnings and sampler diagnostics;
  fits whose diagnostics fail are shown but not ranked.
* :func:`plot_selection` draws the elpd (with standard errors) and the BIC curves of
  :func:`bayesgmm.bic_table` (the EM pre-screen, :mod:`bayesgmm.core.bic`).

Sparse mixtures, the third tool, are in :mod:`bayesgmm.workflows.sparse`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from bayesgmm.analysis.bic_plot import family_style, mclust_sign
from bayesgmm.analysis.diagnostics import diagnose
from bayesgmm.core.background import check_noise, check_noise_init
from bayesgmm.core.bic import best_bic, sweep_families
from bayesgmm.core.checks import check_k_range, check_mapping, check_seed, child_seed, say
from bayesgmm.core.data import check_data
from bayesgmm.core.families import family
from bayesgmm.core.missing import check_missing
from bayesgmm.core.noise import check_noise_cov
from bayesgmm.core.relabel import relabel
from bayesgmm.estimator import estimator
from bayesgmm.exceptions import ConfigError, DataError, DegenerateFitError, SamplingWarning

__all__ = ["LOOComparison", "loo_compare", "plot_selection"]


@dataclass
class LOOComparison:
    """Result of :func:`loo_compare`.

    Attributes
    ----------
    table : DataFrame
        Indexed by ``K`` (by ``covariance_type`` and ``K`` when several families were
        compared): ``elpd``, ``se``, ``p_loo`` (effective parameters),
        ``elpd_diff``, ``dse`` (from ``arviz.compare`` over the ranked fits; 0 for the
        best), ``rank`` (NaN when not ranked), ``weight`` (stacking),
        ``n_high_pareto_k`` (points with Pareto k above ArviZ's threshold
        ``good_k``), ``max_pareto_k``, ``pareto_warning``, ``diagnostics``
        (``"ok"``/``"warn"``/``"fail"``), ``diagnostics_reason``, ``ranked`` and
        ``seconds`` (wall time of the fit). ``table.attrs["noise"]``: the fits'
        background-noise component (False: none; see :func:`loo_compare`).
    fits : dict of int (or of ``(covariance_type, K)``) to BayesianGMM
        The fitted estimators, keyed as the table's index.
    loo : dict of int (or of ``(covariance_type, K)``) to ELPDData
        ``arviz.loo`` of each fit.
    compare : DataFrame
        ``arviz.compare`` over the ranked fits (keys ``"K=<k>"``, or
        ``"<covariance_type>,K=<k>"`` across families).
    """

    table: pd.DataFrame
    fits: dict[int, Any] = field(repr=False)
    loo: dict[int, Any] = field(repr=False)
    compare: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def best(self) -> int | tuple[str, int]:
        """K of the ranked fit with the highest elpd (``(covariance_type, K)`` when
        several families were compared)."""
        ranked = self.table[self.table["ranked"]]
        if ranked.empty:
            raise DegenerateFitError(
                "no fit passed the sampling diagnostics, so none is ranked; see the table's "
                "'diagnostics_reason' column (more tuning/draws usually help)."
            )
        best = ranked["elpd"].idxmax()
        return (str(best[0]), int(best[1])) if isinstance(best, tuple) else int(best)


def _diagnose(idata: xr.DataTree, reference: Any = None) -> tuple[str, str]:
    """``(verdict, reason)`` of a fit's sampling diagnostics: :func:`diagnose` on the
    posterior relabelled (pivot: ``reference``, the EM solution) by :func:`relabel`."""
    tree = idata
    if "component" in idata["posterior"].dims and "posterior_raw" not in idata.children:
        tree, _ = relabel(idata, reference=reference)
    report = diagnose(tree)
    bad = report.table[report.table["verdict"] != "ok"]
    reason = "; ".join(f"{check} {r['verdict']}: {r['detail']}" for check, r in bad.iterrows())
    return str(report.verdict), reason


def _psis_loo(idata):
    """ArviZ's PSIS-LOO of a fit; too few draws for Pareto smoothing (its tails need
    several draws each) are a :class:`ConfigError` that says how many to take."""
    import arviz_stats as azs

    post = idata["posterior"]
    n = post.sizes["chain"] * post.sizes["draw"]
    try:
        return azs.loo(idata, var_name="x")
    except (ValueError, IndexError) as exc:
        if n >= 100:
            raise
        raise ConfigError(
            f"PSIS-LOO cannot compare fits of {n} posterior draws ({exc}); take at least "
            "100 in all (e.g. sampler={'draws': 100}, or --draws 100 on the command line)."
        ) from exc


def loo_compare(
    X: ArrayLike,
    k_range: Iterable[int] = range(1, 6),
    *,
    covariance_type: str | Sequence[str] = "full",
    priors: Mapping[str, Any] | None = None,
    sampler: Mapping[str, Any] | None = None,
    em: Mapping[str, Any] | None = None,
    random_seed: int = 0,
    progress: bool = True,
    missing: str = "error",
    noise_cov=None,
    noise: bool | float = False,
    noise_init: ArrayLike | None = None,
) -> LOOComparison:
    """Fit a Bayesian mixture for each K (and family) and compare them by PSIS-LOO.

    Each fit is a :class:`~bayesgmm.BayesianGMM` (EM MAP start, then NUTS); the elpd is
    ``arviz.loo`` on its pointwise log-likelihood (variable ``x``), and
    ``arviz.compare`` ranks the fits whose diagnostics did not fail. A fit whose
    diagnostics fail (see below) or that raises stays in the table with its reason
    and ``ranked = False``.

    Diagnostics: :func:`bayesgmm.diagnose` on the posterior relabelled (pivot = the EM
    solution) by :func:`bayesgmm.relabel`; fits whose verdict is ``"fail"`` are not
    ranked, ``"warn"`` ones are ranked and marked.

    Compilation: the model's shapes depend on K (weights (K,), means (K, D), ...), and
    the model is built with K fixed, so a compiled model cannot be shared across K;
    every K compiles once. With nutpie (numba) compiling dominates a small fit (about
    25 s to compile against 1 s to sample N = 210, K = 3 on two busy cores);
    ``sampler={"nuts_sampler": "numpyro"}`` compiles faster here.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k_range : iterable of int, default=range(1, 6)
    covariance_type : str, sequence of str or 'mclust', default='full'
        One family (the table is indexed by K), or several -- any of scikit-learn's and
        mclust's names, ``'mclust'`` for all fourteen -- compared with each other over
        every K (indexed by ``covariance_type`` and ``K``). PSIS-LOO compares the
        families' predictive densities directly: no parameter count enters, unlike BIC.
    priors, em : dict, optional
        Passed to every :class:`~bayesgmm.BayesianGMM`.
    sampler : dict, optional
        Sampler settings for every fit; ``random_seed`` is ignored (each K gets a seed
        derived from ``random_seed``) and ``progressbar`` defaults to False.
    random_seed : int, default=0
        Master seed: the same seed gives the same table.
    progress : bool, default=True
        Print one line per fit (K, time, elpd, Pareto k, diagnostics).
    missing : {"error", "marginalize"}, default="error"
        NaN in ``X``: an error, or values missing at random (every fit marginalises them;
        PSIS-LOO then leaves out one row's observed values at a time).
    noise_cov : array-like, optional
        Known measurement errors of the rows (as :meth:`BayesianGMM.fit` takes them):
        every fit deconvolves them, and each row's log-likelihood is with its own errors.
    noise : bool or float, default=False
        A background-noise component in every fit (as :class:`~bayesgmm.BayesianGMM`
        takes it): True for a uniform density over the data's bounding box (the same box
        for every K), or its volume. Every fit's pointwise log-likelihood then includes
        the background, so the Ks compare as K Gaussians plus the same background, as
        mclust's ``Mclust(..., initialization = list(noise = ...))`` compares them by BIC.
    noise_init : array-like of bool, shape (n_samples,), optional
        With ``noise``: the points guessed to be noise, where every fit's EM starts
        begin (as :meth:`BayesianGMM.fit <bayesgmm.BayesianGMM.fit>` takes it).

    Returns
    -------
    LOOComparison

    Examples
    --------
    >>> from bayesgmm.core.datasets import load_faithful
    >>> res = loo_compare(load_faithful(), [1, 2], random_seed=1,  # doctest: +SKIP
    ...                   sampler={"draws": 300, "tune": 300, "chains": 2})
    >>> res.best  # doctest: +SKIP
    2
    """
    import arviz_stats as azs

    X_arr, names = check_data(X, missing=check_missing(missing))
    noise_cov = check_noise_cov(noise_cov, X_arr)
    background = check_noise(noise, X_arr)  # a bad value or an empty box: refused up front
    ks = check_k_range(k_range, X_arr.shape[0])
    noise_init = check_noise_init(noise_init, X_arr.shape[0], max(ks), background)
    several = not isinstance(covariance_type, str) or covariance_type == "mclust"
    families = sweep_families(covariance_type, X_arr.shape[1]) if several else [covariance_type]
    for name in families:
        family(name).check_n_features(X_arr.shape[1])
    seed = check_seed(random_seed)
    check_mapping(sampler, "sampler")
    base_sampler = {"progressbar": False, **dict(sampler or {})}
    fits: dict[int, Any] = {}
    loos: dict[int, Any] = {}
    rows = []
    candidates = [(ct, K) for ct in families for K in ks]
    for i, (ct, K) in enumerate(candidates, start=1):
        t0 = time.perf_counter()
        key: Any = (ct, K) if several else K
        label = (f"{ct}, K={K}" if several else f"K={K}") + (" + noise" if noise else "")
        where = f"loo_compare [{i}/{len(candidates)}] {label}"
        row: dict[str, Any] = {"covariance_type": ct, "K": K}
        try:
            gmm = estimator.BayesianGMM(
                K,
                covariance_type=ct,
                priors=priors,
                sampler={**base_sampler, "random_seed": child_seed(seed, K)},
                em=em,
                missing=missing,
                noise=noise,
            )
            with warnings.catch_warnings():
                # the estimator's own check is per component, so it flags label
                # switching; the label-invariant verdict below replaces it
                warnings.simplefilter("ignore", SamplingWarning)
                extra = {name: value for name, value in
                         (("noise_cov", noise_cov), ("noise_init", noise_init))
                         if value is not None}  # fmt: skip
                gmm.fit(X_arr, feature_names=names, **extra)
                loo = _psis_loo(gmm.idata_)
        except (DegenerateFitError, DataError) as exc:
            row.update(diagnostics="fail", diagnostics_reason=f"fit failed: {exc}")
            rows.append(row)
            say(progress, f"{where}: fit failed ({exc})")
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
        fits[key], loos[key] = gmm, loo
        rows.append(row)
        say(
            progress,
            f"{where}: {row['seconds']:.1f} s, elpd "
            f"{row['elpd']:.1f} (se {row['se']:.1f}), {n_high} Pareto k > {loo.good_k:.2f}, "
            f"diagnostics {verdict}" + (f" ({reason})" if reason else ""),
        )
    columns = [
        "elpd", "se", "p_loo", "elpd_diff", "dse", "rank", "weight", "n_high_pareto_k",
        "max_pareto_k", "pareto_warning", "diagnostics", "diagnostics_reason", "ranked",
        "seconds",
    ]  # fmt: skip
    index = ["covariance_type", "K"] if several else "K"
    table = pd.DataFrame(rows).set_index(index).reindex(columns=columns)
    table["ranked"] = table["diagnostics"].isin(["ok", "warn"]) & table["elpd"].notna()
    table.attrs["noise"] = noise  # every fit's background (False: none)
    ranked = [key for key in table.index if table.loc[key, "ranked"]]

    def name(key) -> str:
        return f"{key[0]},K={key[1]}" if several else f"K={key}"

    comp = None
    if len(ranked) >= 2:
        comp = azs.compare({name(key): loos[key] for key in ranked}, round_to="none")
        for key in ranked:
            r = comp.loc[name(key)]
            table.loc[key, ["elpd_diff", "dse", "rank", "weight"]] = [
                r["elpd_diff"], r["dse"], r["rank"], r["weight"],
            ]  # fmt: skip
    elif len(ranked) == 1:
        table.loc[ranked[0], ["elpd_diff", "dse", "rank", "weight"]] = [0.0, 0.0, 0, 1.0]
    table["diagnostics_reason"] = table["diagnostics_reason"].fillna("")
    return LOOComparison(table=table, fits=fits, loo=loos, compare=comp)


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
        Drawn in the table's own sign convention (``bic.attrs["convention"]``, mclust's
        when absent): higher is better for ``"mclust"``, lower for ``"sklearn"``, as the
        axis label says. The best usable fit (:func:`~bayesgmm.core.bic.best_bic`) is
        ringed; degenerate or failed fits are marked with an ``x`` at the worst end of
        the panel.
    criterion : {'bic', 'icl'}, default='bic'

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> from bayesgmm.core.bic import bic_table
    >>> from bayesgmm.core.datasets import load_faithful
    >>> fig = plot_selection(bic=bic_table(load_faithful(), range(1, 4), ["tied", "diag"]))
    >>> len(fig.axes)
    1
    >>> fig.axes[0].get_ylabel()
    'BIC = 2 logL - penalty (higher is better)'
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
        _plot_loo_panel(axes.pop(0), table)
    if bic is not None:
        _plot_bic_panel(axes.pop(0), bic, criterion)
    fig.tight_layout()
    return fig


def _plot_loo_panel(ax: Any, table: pd.DataFrame) -> None:
    """The LOO panel of :func:`plot_selection`: elpd ± se over K, one line per family
    (offset a little along K, so that their error bars do not hide each other) when the
    table compares several (index ``covariance_type``, ``K``)."""
    several = isinstance(table.index, pd.MultiIndex)
    groups = (
        list(table.groupby(level="covariance_type", sort=False)) if several else [(None, table)]
    )
    width = 0.3 if len(groups) > 1 else 0.0
    failed = False
    for i, (ct, rows) in enumerate(groups):
        ks = np.asarray(rows.index.get_level_values("K"), dtype=float)
        ks = ks + (width * (i / (len(groups) - 1) - 0.5) if len(groups) > 1 else 0.0)
        ranked = rows["ranked"].to_numpy(dtype=bool)
        style = {"marker": "o", "color": "C0"} if ct is None else family_style(i)
        ax.errorbar(ks, rows["elpd"], yerr=rows["se"], fmt="-", color=style["color"] if
                    several else "0.6", alpha=0.5 if several else 1.0, zorder=1)  # fmt: skip
        ax.errorbar(
            ks[ranked], rows["elpd"][ranked], yerr=rows["se"][ranked], fmt=style["marker"],
            color=style["color"], capsize=3, label=ct or "ranked",
        )  # fmt: skip
        if (~ranked).any():
            ax.plot(ks[~ranked], rows["elpd"][~ranked], style["marker"], mfc="none", color="C3",
                    ms=9, label=None if failed else "diagnostics failed (not ranked)")  # fmt: skip
            failed = True
    ks = sorted(set(np.asarray(table.index.get_level_values("K"), dtype=int)))
    ax.set(xlabel="K (components)", ylabel="elpd (PSIS-LOO) ± se", title="LOO")
    ax.set_xticks(ks)
    ax.legend(loc="lower right", fontsize="small", ncol=2 if len(groups) > 6 else 1)


def _plot_bic_panel(ax: Any, bic: pd.DataFrame, criterion: str) -> None:
    """The BIC panel of :func:`plot_selection`, in the table's sign convention."""
    higher = mclust_sign(bic) > 0
    for i, (ct, rows) in enumerate(bic.groupby("covariance_type", sort=False)):
        ax.plot(rows["K"], rows[criterion], "-", label=ct, **family_style(i))
    usable = (bic["status"] == "ok") & bic[criterion].notna()
    if usable.any():
        best = best_bic(bic, criterion)
        ax.plot(
            [best["K"]], [best[criterion]], "o", ms=14, mfc="none", mec="k", label="best",
        )  # fmt: skip
    bad = bic[bic["status"] != "ok"]
    if not bad.empty:
        worst = np.nanmin(bic[criterion]) if higher else np.nanmax(bic[criterion])
        ax.plot(
            bad["K"], np.full(len(bad), worst), "x", color="k", label="degenerate / failed",
        )  # fmt: skip
    name = criterion.upper()
    ylabel = (
        f"{name} = 2 logL - penalty (higher is better)"
        if higher
        else f"{name} = penalty - 2 logL (lower is better)"
    )
    ax.set(xlabel="K (components)", ylabel=ylabel, title=f"{name} at the EM solution")
    ax.set_xticks(sorted(bic["K"].unique()))
    ax.legend(fontsize="small", ncol=2 if bic["covariance_type"].nunique() > 6 else 1)
