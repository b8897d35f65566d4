"""Figures of assignment uncertainty: the points the posterior cannot place, and which
points it puts together.

:func:`plot_uncertainty` shows the data coloured by most probable cluster, sized and
faded by membership uncertainty (``1 - max_k p(z_i = k | data)``), with the most uncertain
points circled and named, beside those uncertainties sorted with their 94% HDIs over the
posterior draws (from :func:`bayesgmm.core.predict.assignments_table`).
:func:`plot_coclustering` draws the posterior co-clustering matrix ``P(z_i = z_j | data)``
(:func:`bayesgmm.core.predict.co_clustering`) ordered by cluster. Both are
label-invariant in what they show, apart from the colours.

Plots need matplotlib (``pip install -e '.[plot]'``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from bayesgmm.analysis.clusters import NOISE_COLOUR, component_colours, two_features
from bayesgmm.core.checks import integer
from bayesgmm.core.predict import assignments_table, co_clustering, predict_proba
from bayesgmm.core.summaries import draws_and_data, interval_label
from bayesgmm.exceptions import ConfigError

__all__ = ["plot_coclustering", "plot_uncertainty"]


def _row_names(posterior, X, n: int) -> list[str]:
    """Names of the points: a DataFrame's index, the DataTree's ``obs`` labels for the
    training data, else the row numbers."""
    index = X.index if isinstance(X, pd.DataFrame) else None
    if index is None and X is None and isinstance(posterior, xr.DataTree):
        if "observed_data" in posterior.children and "obs" in posterior["observed_data"].coords:
            index = posterior["observed_data"]["obs"].to_numpy()
    if index is None or len(index) != n:
        index = range(n)
    return [str(v) for v in index]


def plot_uncertainty(
    posterior,
    X=None,
    *,
    features: Sequence | None = None,
    n_label: int = 10,
    prob: float = 0.94,
    max_draws: int | None = None,
):
    """Membership uncertainty: where the uncertain points are, and how uncertain they are.

    Left, the data on two ``features`` coloured by most probable cluster, each point's
    size and opacity growing with its uncertainty ``1 - max_k p_ik`` (posterior-mean
    membership probabilities ``p_ik``); the ``n_label`` most uncertain points are circled
    and named by their row (the DataFrame's index when ``X`` is a DataFrame). Right, every
    point's uncertainty, most uncertain first, with its ``prob`` highest-density interval
    over the posterior draws (the interval of ``1 - p_ik`` for the most probable ``k``;
    ranks on a log scale);
    the dotted line is ``1 - 1/K``, no information at all.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
        Defaults to the DataTree's training data.
    features : pair of int or str, optional
        The two features of the left panel; by default the two that separate the
        components most, as in :func:`~bayesgmm.plot_clusters` (with one feature, it is
        plotted against the uncertainty).
    n_label : int, default=10
        How many of the most uncertain points to name.
    prob : float in (0, 1), default=0.94
        Probability of the intervals.
    max_draws : int, optional
        Use about this many posterior draws (faster on big data).

    Returns
    -------
    matplotlib.figure.Figure
        Two axes: the data, the sorted uncertainties.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> X = [[0.0, 0.1], [3.0, 2.9], [1.5, 1.5], [1.4, 1.6]]
    >>> fig = plot_uncertainty(example_posterior(), X, n_label=2)
    >>> sorted(t.get_text() for t in fig.axes[0].texts)
    ['2', '3']
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D

    if not integer(0)(n_label):
        raise ConfigError(f"n_label must be an integer >= 0; got {n_label!r}.")
    draws, data = draws_and_data(posterior, X, max_draws)
    rows = None if X is None else data  # None: the training rows, labels and errors too
    table = assignments_table(posterior, rows, prob=prob, kind="hdi", max_draws=max_draws)
    N, (K, D) = data.shape[0], draws.shape[1:]
    names = _row_names(posterior, X, N)
    colours = component_colours(K)
    comps = draws.row_coords  # (a background-noise component's last: cluster -1)
    cluster = np.where(table["cluster"].to_numpy() < 0, len(comps) - 1, table["cluster"])
    u = table["uncertainty"].to_numpy()
    col = interval_label(prob, "hdi")
    lower = np.column_stack([table[f"prob_{c}_{col}_lower"] for c in comps])[np.arange(N), cluster]
    upper = np.column_stack([table[f"prob_{c}_{col}_upper"] for c in comps])[np.arange(N), cluster]
    u_max = 1.0 - 1.0 / len(comps)
    strength = np.clip(u / max(u_max, 1e-12), 0.0, 1.0)
    rgba = np.array([to_rgba(colours(k % colours.N) if k < K else NOISE_COLOUR) for k in cluster])
    rgba[:, 3] = 0.35 + 0.65 * strength
    sizes = 8.0 + 90.0 * strength
    order = np.argsort(-u, kind="stable")
    top = order[: min(int(n_label), N)]

    fig, (ax, ax_u) = plt.subplots(1, 2, figsize=(12, 5), width_ratios=(1.1, 1.0))
    if D == 1:
        x, y, xlabel, ylabel = data[:, 0], u, draws.feature_names[0], "uncertainty"
    else:
        i, j = two_features(features, draws)
        x, y = data[:, i], data[:, j]
        xlabel, ylabel = draws.feature_names[i], draws.feature_names[j]
    ax.scatter(x, y, c=rgba, s=sizes, linewidths=0)
    ax.scatter(x[top], y[top], s=sizes[top] + 40, facecolors="none", edgecolors="black",
               linewidths=1.0)  # fmt: skip
    for t in top:
        ax.annotate(names[t], (x[t], y[t]), xytext=(4, 4), textcoords="offset points",
                    fontsize=8)  # fmt: skip
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    title = "most probable cluster; size and opacity = uncertainty"
    hidden = int((np.isnan(x) | np.isnan(y)).sum())  # fits with missing values
    if hidden:
        title += f"\n{hidden} points missing a coordinate shown here are not drawn"
    if D > 2:
        title = f"projection on ({xlabel}, {ylabel}) of {D} features\n{title}"
    ax.set_title(title, fontsize="medium")
    handles = [Line2D([], [], linestyle="", marker="o", color=colours(k % colours.N),
                      label=f"component {c}") for k, c in enumerate(comps[:K])]  # fmt: skip
    if len(comps) > K:
        handles.append(Line2D([], [], linestyle="", marker="o", color=NOISE_COLOUR, label="noise"))
    handles.append(Line2D([], [], linestyle="", marker="o", markerfacecolor="none",
                          color="black", label=f"{len(top)} most uncertain"))  # fmt: skip
    ax.legend(handles=handles, loc="best", fontsize="small")

    rank = np.arange(1, N + 1)
    point_colours = rgba[order].copy()
    point_colours[:, 3] = 1.0
    if len(top):
        ax_u.axvspan(0.5, len(top) + 0.5, color="0.92", zorder=0, label="named on the left")
    thin = N > 60  # many intervals side by side: lighter, so they do not merge into a block
    ax_u.vlines(rank, 1.0 - upper[order], 1.0 - lower[order], colors=point_colours,
                alpha=0.25 if thin else 0.5, linewidth=0.6 if thin else 1.0,
                label=f"{prob:.0%} HDI over draws")  # fmt: skip
    ax_u.scatter(rank, u[order], c=point_colours, s=10, linewidths=0, label="posterior mean")
    ax_u.axhline(
        u_max,
        color="0.4",
        linestyle=":",
        linewidth=1.0,
        label="1 - 1/K" if len(comps) == K else "1 - 1/(K + 1)",
    )
    ax_u.set_xscale("log")  # the few uncertain points spread out, the certain tail compressed
    ax_u.set_xlim(0.8, N * 1.25)
    ax_u.set_ylim(-0.02, 1.0)
    ax_u.set_xlabel("points, most uncertain first (rank, log scale)")
    ax_u.set_ylabel("uncertainty, 1 - max membership probability")
    ax_u.set_title(f"sorted uncertainty with {prob:.0%} HDI", fontsize="medium")
    ax_u.legend(loc="upper right", fontsize="small")
    fig.suptitle(f"Membership uncertainty of {N} points (posterior mean over draws)")
    fig.tight_layout()
    return fig


def plot_coclustering(
    posterior,
    X=None,
    *,
    max_points: int = 500,
    random_seed=0,
    max_draws: int | None = 1000,
):
    """Heat map of the posterior co-clustering matrix ``P(z_i = z_j | data)``.

    Points are ordered by most probable cluster (posterior-mean membership), then by
    certainty within each cluster, most certain first; lines mark the clusters'
    boundaries and the ticks name the clusters and their sizes. Blocks on the diagonal
    are the clusters; light off-diagonal blocks are points the posterior puts together
    sometimes. With more than ``max_points`` points, a random subsample of
    ``max_points`` is shown and the title says so.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
        Defaults to the DataTree's training data.
    max_points : int, default=500
        Show at most this many points.
    random_seed : int, optional
        Which points the subsample keeps.
    max_draws : int or None, default=1000
        Posterior draws used (see :func:`bayesgmm.core.predict.co_clustering`).

    Returns
    -------
    matplotlib.figure.Figure
        The heat map's axes (its image holds the ordered matrix) and the colour bar's.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> X = [[3.0, 2.9], [0.0, 0.1], [2.8, 3.1]]
    >>> fig = plot_coclustering(example_posterior(), X)
    >>> fig.axes[0].images[0].get_array().shape
    (3, 3)
    """
    import matplotlib.pyplot as plt

    if not integer(1)(max_points):
        raise ConfigError(f"max_points must be an integer >= 1; got {max_points!r}.")
    draws, data = draws_and_data(posterior, X, max_draws)
    N, K = data.shape[0], draws.shape[1]
    keep = np.arange(N)
    if N > max_points:
        rng = np.random.default_rng(random_seed)
        keep = np.sort(rng.choice(N, size=int(max_points), replace=False))
    sub = None if X is None and keep.size == N else data[keep]  # None: the training rows
    cc = co_clustering(posterior, sub, max_points=len(keep), max_draws=max_draws)
    proba = predict_proba(posterior, sub, max_draws=max_draws)
    cluster, certainty = proba.argmax(axis=1), proba.max(axis=1)
    order = np.lexsort((-certainty, cluster))
    fig, ax = plt.subplots(figsize=(7.0, 6.0))
    im = ax.imshow(cc[np.ix_(order, order)], vmin=0.0, vmax=1.0, cmap="viridis",
                   interpolation="nearest")  # fmt: skip
    counts = np.bincount(cluster, minlength=proba.shape[1])  # (a background's last)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    for b in bounds[1:-1]:
        if 0 < b < len(keep):
            ax.axhline(b - 0.5, color="white", linewidth=1.0)
            ax.axvline(b - 0.5, color="white", linewidth=1.0)
    colours = component_colours(K)
    present = np.flatnonzero(counts)
    centres = (bounds[present] + bounds[present + 1] - 1) / 2.0
    comps = draws.row_coords
    ticks = [f"{'cluster ' if k < K else ''}{comps[k]} (n={counts[k]})" for k in present]
    ax.set_xticks(centres, ticks, fontsize="small")
    ax.set_yticks(centres, ticks, fontsize="small", rotation=90, va="center")
    for axis in (ax.get_xticklabels(), ax.get_yticklabels()):
        for label, k in zip(axis, present, strict=True):
            label.set_color(colours(k % colours.N) if k < K else NOISE_COLOUR)
    ax.set_xlabel("points by most probable cluster, then certainty")
    ax.set_ylabel("points (same order)")
    fig.colorbar(im, ax=ax, label="P(same cluster)")
    title = "Posterior co-clustering P(z_i = z_j | data)"
    if len(keep) < N:
        title += f"\nrandom subsample of {len(keep)} of {N} points"
    ax.set_title(title, fontsize="medium")
    fig.tight_layout()
    return fig
