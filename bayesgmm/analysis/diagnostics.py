"""Sampling diagnostics with verdicts and advice, built on ArviZ 1 (arviz-stats).

:func:`diagnose` checks the *relabelled* component parameters (see
:mod:`bayesgmm.core.relabel`) and the sampler's statistics, and returns a
:class:`DiagnosticsReport`: one row per check with its value, the thresholds, a verdict
(``ok`` / ``warn`` / ``fail``) and what to do about it.

Thresholds (``C`` chains):

=============== ====================== ====================== ==================
check           ok                     warn                   fail
=============== ====================== ====================== ==================
r_hat           max <= 1.01            max <= 1.05            max > 1.05
ess_bulk        min >= 100 C           min >= 50 C            min < 50 C
ess_tail        min >= 100 C           min >= 50 C            min < 50 C
mcse            max MCSE/sd <= 0.1     <= 0.2                 > 0.2
divergences     none                   < 1 % of draws         >= 1 % of draws
tree_depth      <= 1 % saturated       <= 10 % saturated      > 10 % saturated
e_bfmi          min >= 0.3             min >= 0.2             min < 0.2
modes           max z <= 1             max z <= 3             max z > 3
=============== ====================== ====================== ==================

R-hat is ArviZ's rank-normalised split R-hat; ESS bulk and tail are ArviZ's; MCSE is
the Monte Carlo standard error of the posterior mean relative to the posterior sd.
``modes`` compares chains: ``z`` is the largest distance between one chain's mean and
the median of the chain means, in units of the pooled within-chain sd, over the total
log-likelihood and every relabelled parameter. Chains exploring one posterior give
``z`` of order ``1 / sqrt(ESS per chain)``; a chain that merged two clusters or sits in
another local mode gives ``z`` of many units. When the fit found chains in different
modes (label-invariantly, :mod:`bayesgmm.analysis.modes`), the row instead names the
modes, their chains and shares, and what was done: ``warn`` when they were stacked,
``fail`` when they were only recorded (``multimodal="report"``).

An approximate fit (minibatch ADVI, :mod:`bayesgmm.inference.advi`; ``attrs["inference"] ==
"advi"``) has independent draws from a fitted approximation, for which R-hat, ESS and
MCSE mean nothing. Its report checks the optimisation's loss (the negative ELBO per
step, group ``variational``) instead, comparing the mean loss over tenths of the run
(``se``: standard error of the difference of two tenths' means):

=============== ===================================== ==================================
check           ok                                    fail
=============== ===================================== ==================================
elbo_trend      last two tenths differ by             by more than 5 x that
                <= max(3 se, 1 nat)                   (warn in between)
elbo_progress   last tenth not worse than the first   worse by more than 5 x that
                by more than max(3 se, 1 nat)         (warn in between)
=============== ===================================== ==================================
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field

import arviz_stats as azs  # ArviZ's statistics alone (not its plots: matplotlib)
import numpy as np
import pandas as pd
import xarray as xr

from bayesgmm.analysis.advice import ADVICE, OK_ADVICE
from bayesgmm.core.config import RHAT_OK, RHAT_WARN
from bayesgmm.core.relabel import draw_log_likelihood
from bayesgmm.exceptions import ConfigError, DataError

_RHAT_RULE = f"<= {RHAT_OK} (warn <= {RHAT_WARN})"

__all__ = ["DEFAULT_VARS", "DiagnosticsReport", "diagnose", "flat_parameters"]

DEFAULT_VARS = ("weights", "noise_weight", "means", "sds", "correlation")
#: Fewest draws per chain for which R-hat, ESS and MCSE are computed.
MIN_DRAWS = 4
VERDICTS = ("ok", "warn", "fail")


@dataclass
class DiagnosticsReport:
    """The result of :func:`diagnose`.

    Attributes
    ----------
    table : pandas.DataFrame
        Index ``check``; columns ``value``, ``threshold``, ``verdict``, ``detail``,
        ``advice``.
    parameters : pandas.DataFrame
        Per-parameter ``r_hat``, ``ess_bulk``, ``ess_tail``, ``mcse_mean``, ``sd`` of
        the checked (relabelled) parameters.
    n_chains, n_draws : int
    relabelled : bool
        Whether the checked posterior was relabelled (has ``posterior_raw``).
    notes : list of str
    inference : {"nuts", "advi"}
        ``"advi"``: an approximate variational fit, checked by its ELBO (no R-hat, ESS
        or MCSE; ``parameters`` then has ``mean`` and ``sd`` only).
    """

    table: pd.DataFrame
    parameters: pd.DataFrame
    n_chains: int
    n_draws: int
    relabelled: bool
    notes: list[str] = field(default_factory=list)
    inference: str = "nuts"

    @property
    def verdict(self) -> str:
        """The worst verdict over all checks: ``"ok"``, ``"warn"`` or ``"fail"``."""
        return max(self.table["verdict"], key=VERDICTS.index, default="ok")

    @property
    def failed(self) -> list[str]:
        """Checks whose verdict is not ``ok``."""
        return [c for c, v in self.table["verdict"].items() if v != "ok"]

    def _header(self) -> str:
        what = "relabelled" if self.relabelled else "raw (NOT relabelled)"
        if self.inference == "advi":
            return (
                f"bayesgmm diagnostics: {self.verdict.upper()} (approximate: variational fit, "
                f"no MCMC diagnostics; {self.n_draws} independent draws, {what} parameters)"
            )
        return (
            f"bayesgmm diagnostics: {self.verdict.upper()} "
            f"({self.n_chains} chains x {self.n_draws} draws, {what} parameters)"
        )

    def __str__(self) -> str:
        lines = [self._header()]
        width = max(len(c) for c in self.table.index)
        for check, row in self.table.iterrows():
            mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}[row["verdict"]]
            lines.append(f"  [{mark}] {check:<{width}}  {row['detail']}   (ok: {row['threshold']})")
        advice = [(c, r["advice"]) for c, r in self.table.iterrows() if r["verdict"] != "ok"]
        if advice:
            lines.append("What to do:")
            lines.extend(f"  - {c}: {a}" for c, a in advice)
        lines.extend(f"Note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<DiagnosticsReport verdict={self.verdict!r} failed={self.failed}>"

    def _repr_html_(self) -> str:
        colour = {"ok": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e"}
        rows = []
        for check, r in self.table.iterrows():
            c = colour[r["verdict"]]
            advice = "" if r["verdict"] == "ok" else html.escape(r["advice"])
            rows.append(
                f"<tr><td>{html.escape(str(check))}</td>"
                f"<td style='color:{c};font-weight:bold'>{r['verdict']}</td>"
                f"<td>{html.escape(r['detail'])}</td><td>{html.escape(r['threshold'])}</td>"
                f"<td>{advice}</td></tr>"
            )
        notes = "".join(f"<p><i>{html.escape(n)}</i></p>" for n in self.notes)
        return (
            f"<div><b style='color:{colour[self.verdict]}'>{html.escape(self._header())}</b>"
            "<table><thead><tr><th>check</th><th>verdict</th><th>value</th><th>ok when</th>"
            f"<th>advice</th></tr></thead><tbody>{''.join(rows)}</tbody></table>{notes}</div>"
        )


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def grade(value: float, ok, warn, higher_is_better: bool) -> str:
    if not np.isfinite(value):
        return "fail"
    if higher_is_better:
        return "ok" if value >= ok else "warn" if value >= warn else "fail"
    return "ok" if value <= ok else "warn" if value <= warn else "fail"


def flat_parameters(post: xr.Dataset, var_names: Sequence[str]) -> xr.DataArray:
    """Every scalar of ``var_names`` as one (chain, draw, param) array, constants dropped."""
    pieces = []
    for name in var_names:
        da = post[name]
        other = [d for d in da.dims if d not in ("chain", "draw")]
        arr = da.transpose("chain", "draw", *other).to_numpy()
        arr = arr.reshape(arr.shape[0], arr.shape[1], -1)
        if other:
            idx = np.array(np.meshgrid(*[da[d].to_numpy() for d in other], indexing="ij")).reshape(
                len(other), -1
            )
            labels = [f"{name}[{', '.join(str(v) for v in col)}]" for col in idx.T]
        else:
            labels = [name]
        if name == "correlation":  # keep the strictly lower triangle: the rest is 1 or mirrored
            D = da.sizes["feature"]
            tri = np.zeros((D, D), dtype=bool)
            tri[np.tril_indices(D, k=-1)] = True
            keep = np.broadcast_to(tri, da.shape[2:]).flatten()
        else:
            keep = np.ones(arr.shape[-1], dtype=bool)
        if arr.shape[0] * arr.shape[1] > 1:  # a single draw is all "constant"
            keep &= arr.reshape(-1, arr.shape[-1]).std(axis=0) > 0
        pieces.append((arr[..., keep], [lab for lab, k in zip(labels, keep, strict=True) if k]))
    if not pieces or sum(p[0].shape[-1] for p in pieces) == 0:
        raise DataError(f"the variables {list(var_names)} have no non-constant values to check.")
    values = np.concatenate([p[0] for p in pieces], axis=-1)
    labels = [lab for p in pieces for lab in p[1]]
    return xr.DataArray(values, dims=("chain", "draw", "param"), coords={"param": labels})


def _param_table(flat: xr.DataArray, enough: bool) -> pd.DataFrame:
    C = flat.sizes["chain"]
    return pd.DataFrame(
        {
            "mean": flat.mean(("chain", "draw")).to_numpy(),
            "sd": flat.std(("chain", "draw")).to_numpy(),
            "r_hat": azs.rhat(flat).to_numpy() if C > 1 and enough else np.nan,
            "ess_bulk": azs.ess(flat).to_numpy() if enough else np.nan,
            "ess_tail": azs.ess(flat, method="tail").to_numpy() if enough else np.nan,
            "mcse_mean": azs.mcse(flat).to_numpy() if enough else np.nan,
        },
        index=pd.Index(flat["param"].to_numpy(), name="param"),
    )


def _pooled_modes(idata: xr.DataTree, var_names):
    """Each kept mode's draws as (chain, draw, param) and its stacking weight, when the
    stacked posterior pooled several modes (None otherwise)."""
    if "modes" not in idata.children or "posterior_chains" not in idata.children:
        return None
    if idata["posterior"].sizes["chain"] > 1:
        return None
    from bayesgmm.analysis.modes import MIN_WEIGHT, mode_posterior

    modes = idata["modes"].to_dataset()
    chains = idata["posterior_chains"].to_dataset()
    index, weight = modes["mode_index"].values, modes["weight"].values
    kept = [(int(i), float(w)) for i, w in zip(index, weight, strict=True) if w >= MIN_WEIGHT]
    return [(flat_parameters(mode_posterior(chains, modes, i), var_names), w) for i, w in kept]


def _per_mode_table(pooled, params: pd.DataFrame):
    """The stacked posterior's checks from each mode's own chains: R-hat the worst over
    the modes with two or more chains; ESS and MCSE of the stacked mean, a weighted sum
    of the modes' independent means (``1 / ESS = sum_m w_m**2 / ESS_m``, weights
    renormalised over the kept modes)."""
    tables = [_param_table(f, f.sizes["draw"] >= MIN_DRAWS) for f, _ in pooled]
    w = np.array([weight for _, weight in pooled])
    w = w / w.sum()
    out = params.copy()
    out["r_hat"] = pd.concat([t["r_hat"] for t in tables], axis=1).max(axis=1)
    for col in ("ess_bulk", "ess_tail"):
        inv = sum(wm**2 / t[col] for wm, t in zip(w, tables, strict=True))
        out[col] = 1.0 / inv
    out["mcse_mean"] = np.sqrt(
        sum(wm**2 * t["mcse_mean"] ** 2 for wm, t in zip(w, tables, strict=True))
    )
    return out, min(f.sizes["draw"] for f, _ in pooled) >= MIN_DRAWS


def _stat(stats: xr.Dataset, *names: str) -> xr.DataArray | None:
    for n in names:
        if n in stats:
            return stats[n]
    return None


def _bfmi(idata: xr.DataTree) -> np.ndarray | None:
    if "sample_stats" not in idata.children or "energy" not in idata["sample_stats"]:
        return None
    out = azs.bfmi(idata)
    if isinstance(out, xr.DataTree):
        out = out["sample_stats"].to_dataset() if "sample_stats" in out.children else out.ds
    if isinstance(out, xr.Dataset):
        out = out["energy"]
    return np.atleast_1d(np.asarray(out, dtype=float))


def _mode_z(idata: xr.DataTree, flat: xr.DataArray) -> tuple[float, str, dict[str, float]]:
    """Largest |chain mean - median chain mean| / pooled within-chain sd."""
    details = []
    series = {}
    total = draw_log_likelihood(idata)
    if total is not None:
        series["log-likelihood"] = total[..., None]
    series["parameters"] = flat.to_numpy()
    worst, worst_what = 0.0, ""
    z_by = {}
    for what, arr in series.items():
        means = arr.mean(axis=1)  # (C, P)
        pooled = np.sqrt(arr.var(axis=1, ddof=1).mean(axis=0))  # (P,)
        pooled = np.where(pooled > 0, pooled, np.inf)
        z = np.abs(means - np.median(means, axis=0)) / pooled  # (C, P)
        c, p = np.unravel_index(np.argmax(z), z.shape)
        details.append(f"{what}: {z.max():.2f}")
        z_by[what] = float(z.max())
        if z.max() > worst:
            label = "" if what == "log-likelihood" else f" ({flat['param'].values[p]})"
            worst, worst_what = float(z.max()), f"chain {int(c)}, {what}{label}"
    return worst, f"max z {worst:.2f} at {worst_what}; " + ", ".join(details), z_by


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #


def diagnose(
    idata: xr.DataTree,
    var_names: Sequence[str] | None = None,
    *,
    max_treedepth: int = 10,
) -> DiagnosticsReport:
    """Convergence and sampler diagnostics with a verdict and advice per check.

    Parameters
    ----------
    idata : xarray.DataTree
        Sampler output, ideally relabelled by :func:`bayesgmm.relabel` (its
        ``posterior`` group is what is checked; per-component checks on a raw posterior
        are meaningless when labels switched, and the report says so).
    var_names : sequence of str, optional
        Posterior variables to check; default ``weights``, ``means``, ``sds`` and (for
        full/tied covariances) the strictly lower triangle of ``correlation``.
    max_treedepth : int, default=10
        The sampler's maximum tree depth, used when the backend reports depths but no
        saturation flag (NumPyro). nutpie and PyMC report the flag.

    Returns
    -------
    DiagnosticsReport
        ``.table`` (DataFrame), ``.verdict`` (worst of ok/warn/fail), printable with
        ``print(report)`` and rendered as HTML in notebooks.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> post = xr.Dataset({"means": (("chain", "draw", "component"),
    ...                              rng.normal(size=(4, 500, 2)) + [0.0, 5.0])})
    >>> report = diagnose(xr.DataTree.from_dict({"posterior": post}))
    >>> report.table.loc["r_hat", "verdict"], report.table.loc["modes", "verdict"]
    ('ok', 'ok')
    """
    if not isinstance(idata, xr.DataTree) or "posterior" not in idata.children:
        raise DataError(
            "diagnose needs an xarray.DataTree with a 'posterior' group "
            "(e.g. BayesianGMM(...).fit(X).idata_)."
        )
    post = idata["posterior"].to_dataset()
    if var_names is None:
        var_names = [v for v in DEFAULT_VARS if v in post]
        if not var_names:
            var_names = list(post.data_vars)
    else:
        var_names = [var_names] if isinstance(var_names, str) else list(var_names)
        missing = [v for v in var_names if v not in post]
        if missing:
            raise ConfigError(
                f"var_names {missing} are not in the posterior; available: {list(post.data_vars)}."
            )
    flat = flat_parameters(post, var_names)
    C, S = flat.sizes["chain"], flat.sizes["draw"]
    notes: list[str] = []
    relabelled = "posterior_raw" in idata.children
    if idata.attrs.get("inference") == "advi":
        from bayesgmm.analysis.variational import diagnose_variational

        return diagnose_variational(idata, flat, relabelled)
    if not relabelled and "component" in post.dims:
        notes.append(
            "the posterior was not relabelled: per-component R-hat and ESS are meaningless if "
            "labels switched (use bayesgmm.relabel first)."
        )

    enough = S >= MIN_DRAWS  # ArviZ's R-hat, ESS and MCSE need a few draws per chain
    params = _param_table(flat, enough)
    pooled = _pooled_modes(idata, var_names)
    if pooled is not None:  # stacked modes pooled into one sequence: check each mode's chains
        params, enough = _per_mode_table(pooled, params)
        C, S = idata["posterior_chains"].sizes["chain"], idata["posterior_chains"].sizes["draw"]
        notes.append(
            "the stacked posterior pools several modes into one sequence: R-hat is the worst "
            "over the modes, each on its own chains; ESS and MCSE are those of the stacked "
            "mean, from each mode's by its stacking weight."
        )
    rows = []

    def add(check, value, threshold, verdict, detail):
        advice = ADVICE[check] if verdict != "ok" else OK_ADVICE
        rows.append((check, value, threshold, verdict, detail, advice))

    if not enough:
        too_few = (
            f"Only {S} draw{'s' if S != 1 else ''} per chain: R-hat, ESS and MCSE need at least "
            f"{MIN_DRAWS}. Raise draws (default 1000) to check convergence; the fit itself is kept."
        )
        for check, threshold in (
            ("r_hat", _RHAT_RULE),
            ("ess_bulk", f">= {100 * C} (warn >= {50 * C})"),
            ("ess_tail", f">= {100 * C} (warn >= {50 * C})"),
            ("mcse", "MCSE/sd <= 0.1 (warn <= 0.2)"),
        ):
            rows.append((check, np.nan, threshold, "fail", f"needs >= {MIN_DRAWS} draws", too_few))
    elif C > 1 and params["r_hat"].isna().all():  # pooled modes, each of one chain
        add("r_hat", np.nan, _RHAT_RULE, "warn", "no mode has 2 whole chains")
        rows[-1] = (*rows[-1][:5], "Each mode was visited by one chain: run more chains.")
    elif C > 1:
        worst = params["r_hat"].idxmax() if params["r_hat"].notna().any() else "-"
        v = float(params["r_hat"].max(skipna=False))
        verdict = grade(v, RHAT_OK, RHAT_WARN, False)
        add("r_hat", v, _RHAT_RULE, verdict, f"max {v:.3f} ({worst})")
    else:
        add("r_hat", np.nan, _RHAT_RULE, "warn", "needs >= 2 chains")
        rows[-1] = (*rows[-1][:5], "Run at least 2 (better 4) chains to check convergence.")
    for check in ("ess_bulk", "ess_tail") if enough else ():
        v = float(params[check].min(skipna=False))
        add(
            check,
            v,
            f">= {100 * C} (warn >= {50 * C})",
            grade(v, 100 * C, 50 * C, True),
            f"min {v:.0f} ({params[check].idxmin() if np.isfinite(v) else '-'})",
        )
    if enough:
        rel = params["mcse_mean"] / params["sd"]
        v = float(rel.max(skipna=False))
        add(
            "mcse",
            v,
            "MCSE/sd <= 0.1 (warn <= 0.2)",
            grade(v, 0.1, 0.2, False),
            f"max MCSE/sd {v:.3f}",
        )

    stats = idata["sample_stats"].to_dataset() if "sample_stats" in idata.children else None
    div = _stat(stats, "diverging") if stats is not None else None
    if div is not None:
        n_div = int(div.sum())
        frac = n_div / (C * S)
        verdict = "ok" if n_div == 0 else "warn" if frac < 0.01 else "fail"
        add(
            "divergences",
            float(n_div),
            "0 (warn < 1% of draws)",
            verdict,
            f"{n_div} of {C * S} draws ({100 * frac:.1f}%)",
        )
    else:
        notes.append("no divergence statistics in sample_stats.")
    if stats is not None:
        flag = _stat(stats, "maxdepth_reached", "reached_max_treedepth")
        if flag is None:
            depth = _stat(stats, "tree_depth", "depth")
            flag = depth >= max_treedepth if depth is not None else None
        if flag is not None:
            frac = float(flag.mean())
            add(
                "tree_depth",
                frac,
                "<= 1% saturated (warn <= 10%)",
                grade(frac, 0.01, 0.10, False),
                f"{100 * frac:.1f}% of draws hit max depth",
            )
    bfmi = _bfmi(idata) if enough else None
    if bfmi is not None:
        v = float(np.min(bfmi))
        add(
            "e_bfmi",
            v,
            ">= 0.3 (warn >= 0.2)",
            grade(v, 0.3, 0.2, True),
            "per chain " + ", ".join(f"{b:.2f}" for b in bfmi),
        )
    if "modes" in idata.children:  # chains in different modes, found and handled at fit
        modes = idata["modes"]
        action = modes.attrs.get("action", "reported")
        n_modes = int(modes.sizes.get("mode_index", 0))
        advice = ADVICE["modes_stacked" if action == "stacked" else "modes"]
        rows.append(
            (
                "modes",
                float(n_modes),
                "1 mode",
                "warn" if action == "stacked" else "fail",
                f"{n_modes} modes: {modes.attrs.get('description', '')}",
                advice,
            )
        )
    elif C > 1 and S > 1:
        z, detail, z_by = _mode_z(idata, flat)
        add("modes", z, "max z <= 1 (warn <= 3)", grade(z, 1.0, 3.0, False), detail)
        if z > 3 and z_by.get("log-likelihood", np.inf) <= 1 and not relabelled:
            notes.append(
                "chains disagree in the component parameters but not in the log-likelihood: "
                "most likely the same mode with permuted labels; relabel the posterior first."
            )
    table = pd.DataFrame(
        rows, columns=["check", "value", "threshold", "verdict", "detail", "advice"]
    ).set_index("check")
    return DiagnosticsReport(table, params, C, S, relabelled, notes)
