"""Posterior predictive draws, posterior predictive checks and cluster plots.

* :func:`posterior_predictive` replicates the observed dataset once per posterior draw
  from the marginalised mixture (pick a component with the draw's weights, then its
  Gaussian) into the DataTree's ``posterior_predictive`` group: variable ``x`` with
  dims (chain, draw, obs, feature).
* :func:`plot_ppc` overlays per-feature densities of replicated and observed data and
  :func:`plot_loo_pit` checks calibration with LOO-PIT (ArviZ's ``plot_ppc_dist`` and
  ``plot_loo_pit``). Observations are vectors, so each feature gets its own panel; the
  PSIS weights come from the joint pointwise log-likelihood of each observation (leave
  out the whole point), the PIT values from each feature's marginal.
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

from bayesgmm.core.draws import posterior_dataset, thin
from bayesgmm.core.generate import replicate
from bayesgmm.exceptions import DataError

__all__ = [
    "check_fit",
    "loo_pit",
    "plot_loo_pit",
    "plot_ppc",
    "posterior_predictive",
]


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
    x_rep = replicate(post, n_obs, random_seed=random_seed)
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


def plot_ppc(
    idata: xr.DataTree,
    *,
    kind: str = "kde",
    num_samples: int = 50,
    random_seed=None,
    max_draws: int | None = 1000,
    **kwargs: Any,
):
    """Per-feature density overlays: replicated datasets against the observed data.

    Draws the posterior predictive first if ``idata`` has none (see
    :func:`posterior_predictive`). Extra keyword arguments go to ``arviz.plot_ppc_dist``.

    Parameters
    ----------
    idata : xarray.DataTree
    kind : {"kde", "hist", "ecdf"}, default="kde"
    num_samples : int, default=50
        Replicated datasets drawn as lines.
    random_seed : int, optional
        For the replicated data (when drawn here) and the choice of lines.
    max_draws : int or None, default=1000

    Returns
    -------
    arviz_plots.PlotCollection
        One panel per feature; ``.savefig(path)`` writes it.
    """
    import arviz as az

    _ensure_pp(idata, random_seed, max_draws)
    tree = _per_feature_tree(idata, with_log_likelihood=False)
    n_rep = tree["posterior_predictive"].sizes["chain"] * tree["posterior_predictive"].sizes["draw"]
    if random_seed is not None:
        np.random.seed(random_seed)  # noqa: NPY002 - arviz-plots subsamples with the global RNG
    return az.plot_ppc_dist(tree, kind=kind, num_samples=min(num_samples, n_rep), **kwargs)


def loo_pit(idata: xr.DataTree, *, random_seed=None, max_draws: int | None = 1000) -> xr.Dataset:
    """LOO-PIT values per observation and feature (uniform when the model is calibrated).

    Returns
    -------
    xarray.Dataset
        One variable per feature, dim ``obs``.
    """
    from arviz_stats import loo_pit as _loo_pit

    _ensure_pp(idata, random_seed, max_draws)
    return _loo_pit(_per_feature_tree(idata, with_log_likelihood=True))


def plot_loo_pit(
    idata: xr.DataTree, *, random_seed=None, max_draws: int | None = 1000, **kwargs: Any
):
    """LOO-PIT ECDF-difference plot per feature (``arviz.plot_loo_pit``).

    Needs the ``log_likelihood`` group (recorded by ``fit``); draws the posterior
    predictive first if missing. Returns an ``arviz_plots.PlotCollection``.
    """
    import arviz as az

    _ensure_pp(idata, random_seed, max_draws)
    return az.plot_loo_pit(_per_feature_tree(idata, with_log_likelihood=True), **kwargs)


def check_fit(
    idata: xr.DataTree,
    *,
    random_seed=None,
    max_draws: int | None = 1000,
    kind: str = "kde",
    save_dir: str | Path | None = None,
) -> dict[str, Any]:
    """One call: posterior predictive draws, density overlays and LOO-PIT.

    Parameters
    ----------
    idata : xarray.DataTree
        The fit's DataTree (``posterior``, ``observed_data``, ``log_likelihood``).
    random_seed : int, optional
    max_draws : int or None, default=1000
    kind : {"kde", "hist", "ecdf"}, default="kde"
    save_dir : str or Path, optional
        When given, also write ``ppc.png`` and ``loo_pit.png`` there.

    Returns
    -------
    dict
        ``"ppc"`` and ``"loo_pit"`` (PlotCollections) and ``"loo_pit_values"``
        (Dataset per feature).
    """
    _ensure_pp(idata, random_seed, max_draws)
    out: dict[str, Any] = {
        "ppc": plot_ppc(idata, kind=kind, random_seed=random_seed),
        "loo_pit": plot_loo_pit(idata),
        "loo_pit_values": loo_pit(idata),
    }
    if save_dir is not None:
        path = Path(save_dir)
        path.mkdir(parents=True, exist_ok=True)
        out["ppc"].savefig(path / "ppc.png")
        out["loo_pit"].savefig(path / "loo_pit.png")
    return out
