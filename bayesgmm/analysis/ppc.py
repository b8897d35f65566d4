"""Posterior predictive draws, posterior predictive checks and cluster plots.

* :func:`posterior_predictive` replicates the observed dataset once per posterior draw
  from the marginalised mixture (pick a component with the draw's weights, then its
  Gaussian) into the DataTree's ``posterior_predictive`` group: variable ``x`` with
  dims (chain, draw, obs, feature).
* :func:`plot_ppc` overlays per-feature densities (or histograms, ECDFs) of replicated
  and observed data, with a legend saying which is which; :func:`plot_loo_pit` checks
  calibration with the LOO-PIT ECDF difference and its simultaneous confidence band.
  Both are drawn with matplotlib and return a :class:`matplotlib.figure.Figure`.
  Observations are vectors, so each feature gets its own panel; the PSIS weights come
  from the joint pointwise log-likelihood of each observation (leave out the whole
  point), the PIT values from each feature's marginal (:func:`loo_pit`, with ArviZ).
* :func:`check_fit` does all of that in one call. The cluster figures are in
  :mod:`bayesgmm.analysis.clusters`.

Plots need matplotlib (``pip install -e '.[plot]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayesgmm.core.draws import (
    missing_of,
    posterior_dataset,
    thin,
    training_noise,
    training_weights,
)
from bayesgmm.core.generate import replicate
from bayesgmm.exceptions import ConfigError, DataError

__all__ = [
    "check_fit",
    "loo_pit",
    "plot_loo_pit",
    "plot_ppc",
    "posterior_predictive",
]


def _refuse_weighted(idata, what: str) -> None:
    """A frequency-weighted fit's rows are not its data's distribution, nor are a fit's
    partially observed rows: ``what`` (which compares rows one by one with replicated
    data) is refused with the reason."""
    if training_weights(idata) is not None:
        raise DataError(
            f"{what} is not available for a fit with sample_weight: it compares the "
            "unweighted rows with replicated data (or leaves one row out at a time), which "
            "misrepresents frequency-weighted data. Expand the rows (np.repeat(X, w, "
            "axis=0)) to check such a fit."
        )
    if training_noise(idata) is not None:
        raise DataError(
            f"{what} is not available for a fit with measurement errors (noise_cov): its "
            "replicates are of the true values, not of data measured with each row's errors."
        )
    if isinstance(idata, xr.DataTree) and missing_of(idata) == "marginalize":
        raise DataError(
            f"{what} is not available for a fit with missing values (missing='marginalize'): "
            "it compares each row, all its coordinates, with replicated complete data, and "
            "values missing at random need not follow the model's marginals where they are "
            "observed. Compare the model with the complete rows instead, or with held-out "
            "values through gmm.impute()."
        )


def _require_tree(idata, groups: Sequence[str]) -> xr.DataTree:
    if not isinstance(idata, xr.DataTree):
        raise DataError(
            f"expected the fit's xarray.DataTree (e.g. BayesianGMM.idata_); got "
            f"{type(idata).__name__}."
        )
    missing = [g for g in groups if g not in idata.children]
    if missing:
        raise DataError(
            f"the DataTree lacks group(s) {missing}; it needs {list(groups)} (fit the model "
            "with BayesianGMM.fit, which records them)."
        )
    return idata


def posterior_predictive(
    idata: xr.DataTree, *, random_seed=None, max_draws: int | None = 1000
) -> xr.DataTree:
    """Add replicated datasets to ``idata`` as its ``posterior_predictive`` group.

    Parameters
    ----------
    idata : xarray.DataTree
        With ``posterior`` and ``observed_data`` (variable ``x``, dims obs, feature).
    random_seed : int or numpy Generator, optional
    max_draws : int or None, default=1000
        Replicate for about this many posterior draws (evenly thinned within chains);
        ``None`` uses every draw. Memory: ``8 * draws * n_obs * n_features`` bytes.

    Returns
    -------
    xarray.DataTree
        ``idata`` itself (modified in place), with ``posterior_predictive["x"]`` of dims
        (chain, draw, obs, feature) sharing the posterior's chain and draw coordinates.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from bayesgmm.core.draws import example_posterior
    >>> obs = xr.Dataset({"x": (("obs", "feature"), np.zeros((4, 2)))},
    ...                  coords={"feature": ["a", "b"]})
    >>> dt = xr.DataTree.from_dict({"posterior": example_posterior(), "observed_data": obs})
    >>> posterior_predictive(dt, random_seed=0)["posterior_predictive"]["x"].dims
    ('chain', 'draw', 'obs', 'feature')
    """
    _require_tree(idata, ["posterior", "observed_data"])
    obs = idata["observed_data"].to_dataset()
    if "x" not in obs:
        raise DataError("observed_data has no variable 'x'.")
    x_obs = obs["x"].transpose("obs", "feature")
    post = thin(posterior_dataset(idata), max_draws)
    n_obs = x_obs.sizes["obs"]
    if post.sizes["feature"] != x_obs.sizes["feature"]:
        raise DataError(
            f"the posterior has {post.sizes['feature']} features but observed_data has "
            f"{x_obs.sizes['feature']}."
        )
    x_rep = replicate(post, n_obs, random_seed=random_seed, data=x_obs.to_numpy())
    coords = {"chain": post["chain"].to_numpy(), "draw": post["draw"].to_numpy()}
    coords.update({d: x_obs[d].to_numpy() for d in ("obs", "feature") if d in x_obs.coords})
    idata["posterior_predictive"] = xr.Dataset(
        {"x": (("chain", "draw", "obs", "feature"), x_rep)}, coords=coords
    )
    return idata


def _per_feature_tree(idata: xr.DataTree, with_log_likelihood: bool) -> xr.DataTree:
    """One variable per feature in posterior_predictive / observed_data (/ log_likelihood)."""
    groups = ["posterior_predictive", "observed_data"]
    if with_log_likelihood:
        groups.append("log_likelihood")
    _require_tree(idata, groups)
    pp = idata["posterior_predictive"].to_dataset()["x"]
    obs = idata["observed_data"].to_dataset()["x"]
    features = _variable_names([str(f) for f in pp["feature"].to_numpy()])
    pieces: dict[str, xr.Dataset] = {
        "posterior_predictive": xr.Dataset(
            {f: pp.isel(feature=j, drop=True) for j, f in enumerate(features)}
        ),
        "observed_data": xr.Dataset(
            {f: obs.isel(feature=j, drop=True) for j, f in enumerate(features)}
        ),
    }
    if with_log_likelihood:
        ll = idata["log_likelihood"].to_dataset()["x"]
        ll = ll.sel(chain=pp["chain"], draw=pp["draw"])  # same (possibly thinned) draws
        pieces["log_likelihood"] = xr.Dataset({f: ll for f in features})
        pieces["posterior"] = (
            idata["posterior"].to_dataset()[["weights"]].sel(chain=pp["chain"], draw=pp["draw"])
        )
    return xr.DataTree.from_dict(pieces)


def _variable_names(features: list[str]) -> list[str]:
    """Feature names usable as DataTree variable names (which may not contain "/").

    A "/" becomes the look-alike division slash U+2215, so plot titles still read as the
    column's name; an empty name becomes its position; names stay distinct.
    """
    out: list[str] = []
    for j, name in enumerate(features):
        safe = name.replace("/", "\u2215") or f"feature {j}"
        while safe in out:
            safe = f"{safe} ({j})"
        out.append(safe)
    return out


def _ensure_pp(idata, random_seed, max_draws) -> xr.DataTree:
    if "posterior_predictive" not in _require_tree(idata, ["posterior"]).children:
        posterior_predictive(idata, random_seed=random_seed, max_draws=max_draws)
    return idata


def _panels(features: list[str], figsize, title: str):
    """One panel per feature (2 columns up to 4 features, then 3), a title on top."""
    import matplotlib.pyplot as plt

    n = len(features)
    ncols = min(n, 2 if n <= 4 else 3)
    nrows = -(-n // ncols)
    width, height = figsize or (4.2 * ncols, 0.9 + 3.0 * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    for ax in axes.flat[n:]:
        ax.remove()
    fig.suptitle(title, fontsize=10, y=1 - 0.08 / height, va="top")
    fig.subplots_adjust(
        left=0.7 / width,
        right=1 - 0.15 / width,
        top=1 - 0.95 / height,
        bottom=0.6 / height,
        hspace=0.75 / ((height - 1.55) / nrows - 0.75),
        wspace=0.75 / ((width - 0.85) / ncols - 0.75),
    )
    return fig, list(axes.flat[:n]), (width, height)


def _top_legend(fig, handles, size) -> None:
    _, height = size
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 1 - 0.32 / height),
        ncol=len(handles),
        fontsize=8,
        frameon=False,
    )


def _curve(kind: str, x_obs: np.ndarray, lo: float, hi: float):
    """A function drawing one dataset's density / histogram / ECDF on common support."""
    from bayesgmm.analysis.trace import kde_on_grid

    if kind == "kde":
        grid = np.linspace(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo), 200)
        return lambda ax, x, **kw: ax.plot(grid, kde_on_grid(x, grid), **kw)
    if kind == "hist":
        edges = np.histogram_bin_edges(x_obs, bins="auto", range=(lo, hi))
        return lambda ax, x, **kw: ax.stairs(np.histogram(x, edges)[0], edges, **kw)
    return lambda ax, x, **kw: ax.ecdf(x, **kw)


def plot_ppc(
    idata: xr.DataTree,
    *,
    kind: str = "kde",
    num_samples: int = 50,
    random_seed=None,
    max_draws: int | None = 1000,
    figsize: tuple[float, float] | None = None,
):
    """Per-feature overlays: replicated datasets against the observed data.

    One panel per feature (x label: the feature's name): a thin line per replicated
    dataset (each from one posterior draw) and the observed data as a thick black line,
    with a legend saying which is which. Draws the posterior predictive first if
    ``idata`` has none (see :func:`posterior_predictive`).

    Parameters
    ----------
    idata : xarray.DataTree
    kind : {"kde", "hist", "ecdf"}, default="kde"
        Kernel density (y label "density"), step histogram on common bins ("count") or
        empirical CDF ("ECDF").
    num_samples : int, default=50
        Replicated datasets drawn as lines (at most as many as there are).
    random_seed : int, optional
        For the replicated data (when drawn here) and the choice of lines.
    max_draws : int or None, default=1000
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes per feature (an arviz-plots ``PlotCollection`` before issue 17);
        ``fig.savefig(path)`` writes it.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np, xarray as xr
    >>> from bayesgmm.core.draws import example_posterior
    >>> obs = xr.Dataset({"x": (("obs", "feature"), np.random.default_rng(0).normal(size=(30, 2)))},
    ...                  coords={"feature": ["a", "b"]})
    >>> dt = xr.DataTree.from_dict({"posterior": example_posterior(), "observed_data": obs})
    >>> fig = plot_ppc(dt, random_seed=0, num_samples=5)
    >>> [ax.get_xlabel() for ax in fig.axes], fig.axes[0].get_ylabel()
    (['a', 'b'], 'density')
    """
    from matplotlib.lines import Line2D

    ylabels = {"kde": "density", "hist": "count", "ecdf": "ECDF"}
    if kind not in ylabels:
        raise ConfigError(f"unknown kind {kind!r} for plot_ppc; valid: {list(ylabels)}.")
    _refuse_weighted(idata, "The posterior predictive check")
    _ensure_pp(idata, random_seed, max_draws)
    pp = idata["posterior_predictive"].to_dataset()["x"].transpose(..., "obs", "feature")
    obs = idata["observed_data"].to_dataset()["x"].transpose("obs", "feature").to_numpy()
    rep = pp.to_numpy().reshape(-1, *obs.shape)
    rng = np.random.default_rng(random_seed)
    n_lines = min(num_samples, rep.shape[0])
    rep = rep[np.sort(rng.choice(rep.shape[0], size=n_lines, replace=False))]
    features = [str(f) for f in pp["feature"].to_numpy()]
    fig, axes, size = _panels(
        features, figsize, f"Posterior predictive check ({ylabels[kind]} per feature)"
    )
    for j, ax in enumerate(axes):
        x_obs, x_rep = obs[:, j], rep[:, :, j]
        lo, hi = np.percentile(np.concatenate([x_obs, x_rep.ravel()]), [0.2, 99.8])
        lo, hi = min(lo, x_obs.min()), max(hi, x_obs.max())
        draw = _curve(kind, x_obs, lo, hi)
        for r in x_rep:
            draw(ax, r, color="C0", lw=0.6, alpha=0.3)
        draw(ax, x_obs, color="black", lw=1.8)
        ax.set_xlabel(features[j], fontsize=9)
        ax.set_ylabel(ylabels[kind], fontsize=9)
        ax.set_title(features[j], fontsize=9)
        ax.tick_params(labelsize=8)
    handles = [
        Line2D([], [], color="black", lw=1.8, label="observed data"),
        Line2D([], [], color="C0", lw=1, label=f"replicated datasets ({n_lines} posterior draws)"),
    ]
    _top_legend(fig, handles, size)
    return fig


def loo_pit(idata: xr.DataTree, *, random_seed=None, max_draws: int | None = 1000) -> xr.Dataset:
    """LOO-PIT values per observation and feature (uniform when the model is calibrated).

    Returns
    -------
    xarray.Dataset
        One variable per feature, dim ``obs``.
    """
    from arviz_stats import loo_pit as _loo_pit

    _refuse_weighted(idata, "LOO-PIT")

    _ensure_pp(idata, random_seed, max_draws)
    return _loo_pit(_per_feature_tree(idata, with_log_likelihood=True))


def plot_loo_pit(
    idata: xr.DataTree,
    *,
    prob: float = 0.94,
    random_seed=None,
    max_draws: int | None = 1000,
    n_simulations: int = 1000,
    figsize: tuple[float, float] | None = None,
):
    """LOO-PIT ECDF difference with a simultaneous band, one panel per feature.

    For each feature: the ECDF of the LOO-PIT values (:func:`loo_pit`) minus the uniform
    CDF, against the PIT value, with the ``prob`` simultaneous confidence band of that
    difference for ``n_obs`` uniform values (Säilynoja et al. 2022, through
    ``arviz_stats.ecdf_utils.ecdf_pit``). A calibrated model's curve stays inside the band
    (with probability ``prob`` over the whole curve); a curve above zero at low PIT
    values and below it at high ones (too many PIT values near 0 and 1) means predictive
    distributions that are too narrow, the mirror image (values bunched near 0.5) too
    wide ones, and a one-signed hump shifted ones.

    The band treats the PIT values as independent; LOO-PIT values are only nearly so
    (ArviZ therefore also offers a dependence-aware uniformity test, ``plot_loo_pit`` with
    ``method="pot_c"``). Data rounded to a coarse grid (Old Faithful's waiting times are
    whole minutes) make ties that show up as small steps.

    Parameters
    ----------
    idata : xarray.DataTree
        Needs ``log_likelihood`` (recorded by ``fit``); draws the posterior predictive
        first if missing.
    prob : float, default=0.94
        Simultaneous coverage of the band.
    random_seed : int, optional
    max_draws : int or None, default=1000
    n_simulations : int, default=1000
        Simulations used to calibrate the band (seeded: the band is reproducible).
    figsize : (float, float), optional

    Returns
    -------
    matplotlib.figure.Figure
        One axes per feature, each with the band (a ``fill_between`` artist) and the curve
        (an arviz-plots ``PlotCollection`` without a band before issue 17).
    """
    from arviz_stats.ecdf_utils import ecdf_pit
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not 0 < prob < 1:
        raise ConfigError(f"prob must be in (0, 1); got {prob}.")
    pit = loo_pit(idata, random_seed=random_seed, max_draws=max_draws)
    features = [str(f) for f in idata["observed_data"]["x"]["feature"].to_numpy()]
    names = list(pit.data_vars)  # the features' variable names (see _variable_names)
    n_obs = pit.sizes["obs"]
    # the band depends only on n_obs and prob: computed once for all features
    grid, _, lower, upper = ecdf_pit(
        np.linspace(0, 1, n_obs), prob, n_simulations, rng=np.random.default_rng(214)
    )
    band = f"{prob:.0%} simultaneous band"
    fig, axes, size = _panels(
        features, figsize, f"LOO-PIT calibration: ECDF difference with {band}"
    )
    for ax, name, feature in zip(axes, names, features, strict=True):
        values = np.sort(pit[name].to_numpy())
        ecdf = np.searchsorted(values, grid, side="right") / n_obs
        ax.fill_between(
            grid, lower - grid, upper - grid, step="post", color="0.6", alpha=0.35, lw=0
        )
        ax.axhline(0, color="0.4", lw=0.8, ls="--")
        ax.step(grid, ecdf - grid, where="post", color="C0", lw=1.4)
        inner = slice(1, -1)  # the band is pinned at 0 and 1, where PIT values may sit
        outside = np.mean(
            (ecdf[inner] < lower[inner] - 1e-12) | (ecdf[inner] > upper[inner] + 1e-12)
        )
        if outside > 0:
            ax.text(
                0.02,
                0.95,
                f"leaves the band (at {outside:.1%} of PIT values)",
                transform=ax.transAxes,
                fontsize=8,
                va="top",
                color="C3",
            )
        ax.set_title(feature, fontsize=9)
        ax.set_xlabel(f"LOO-PIT value ({feature})", fontsize=9)
        ax.set_ylabel("ECDF \u2212 uniform CDF", fontsize=9)
        ax.set_xlim(0, 1)
        ax.tick_params(labelsize=8)
    handles = [
        Line2D([], [], color="C0", lw=1.4, label=f"LOO-PIT ECDF difference ({n_obs} observations)"),
        Patch(color="0.6", alpha=0.35, label=band),
    ]
    _top_legend(fig, handles, size)
    return fig


def check_fit(
    idata: xr.DataTree,
    *,
    random_seed=None,
    max_draws: int | None = 1000,
    kind: str = "kde",
    prob: float = 0.94,
    save_dir: str | Path | None = None,
) -> dict[str, Any]:
    """One call: posterior predictive draws, density overlays and LOO-PIT with bands.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree (``posterior``, ``observed_data``, ``log_likelihood``).
    random_seed : int, optional
    max_draws : int or None, default=1000
    kind : {"kde", "hist", "ecdf"}, default="kde"
    prob : float, default=0.94
        Coverage of the LOO-PIT figure's simultaneous band.
    save_dir : str or Path, optional
        When given, also write ``ppc.png`` and ``loo_pit.png`` there.

    Returns
    -------
    dict
        ``"ppc"`` and ``"loo_pit"`` (matplotlib Figures, see :func:`plot_ppc` and
        :func:`plot_loo_pit`) and ``"loo_pit_values"`` (Dataset per feature).
    """
    _ensure_pp(idata, random_seed, max_draws)
    out: dict[str, Any] = {
        "ppc": plot_ppc(idata, kind=kind, random_seed=random_seed),
        "loo_pit": plot_loo_pit(idata, prob=prob),
        "loo_pit_values": loo_pit(idata),
    }
    if save_dir is not None:
        path = Path(save_dir)
        path.mkdir(parents=True, exist_ok=True)
        out["ppc"].savefig(path / "ppc.png", dpi=100, bbox_inches="tight")
        out["loo_pit"].savefig(path / "loo_pit.png", dpi=100, bbox_inches="tight")
    return out
