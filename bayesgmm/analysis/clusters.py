"""Cluster figures: the data coloured by most probable cluster, with uncertainty and ellipses.

:func:`plot_clusters` shows the data coloured by most probable cluster, faded (or sized)
by assignment uncertainty, with component ellipses from the posterior mean and from a
spread of posterior draws; with one feature, a histogram with the components' weighted
densities and the points as a rug.

Plots need matplotlib (``pip install -e '.[plot]'``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bayesgmm.core.checks import integer, is_int
from bayesgmm.core.predict import predict_proba
from bayesgmm.core.summaries import draws_and_data
from bayesgmm.exceptions import ConfigError

__all__ = ["plot_clusters"]


def _feature_index(features, names: list[str]) -> tuple[int, int]:
    if len(features) != 2:
        raise ConfigError(f"features must name exactly two features; got {features!r}.")
    idx = []
    for f in features:
        if is_int(f):
            if not -len(names) <= f < len(names):
                raise ConfigError(f"feature index {f} out of range for {len(names)} features.")
            idx.append(int(f) % len(names))
        elif str(f) in names:
            idx.append(names.index(str(f)))
        else:
            raise ConfigError(f"unknown feature {f!r}; features are {names}.")
    if idx[0] == idx[1]:
        raise ConfigError("features must be two different features.")
    return idx[0], idx[1]


def _ellipse(ax, mean, cov, n_std, **kwargs):
    from matplotlib.patches import Ellipse

    vals, vecs = np.linalg.eigh(cov)
    vals = np.clip(vals, 0.0, None)
    angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
    ax.add_patch(
        Ellipse(
            mean,
            2 * n_std * np.sqrt(vals[-1]),
            2 * n_std * np.sqrt(vals[0]),
            angle=angle,
            fill=False,
            **kwargs,
        )
    )


def plot_clusters(
    posterior,
    X=None,
    *,
    features: Sequence = (0, 1),
    n_ellipse_draws: int = 30,
    n_std: float = 2.0,
    uncertainty: str = "alpha",
    random_seed=0,
    ax=None,
):
    """Data coloured by most probable cluster, with assignment uncertainty and ellipses.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
        Defaults to the DataTree's training data.
    features : pair of int or str, default=(0, 1)
        The two features to show (the ellipses are the components' marginals on them).
        With one feature the figure is a histogram with each component's weighted
        density and the points as a rug.
    n_ellipse_draws : int, default=30
        Faint ellipses (curves, with one feature) from this many random posterior draws
        show the parameter spread.
    n_std : float, default=2.0
        Ellipse radius in standard deviations (Mahalanobis distance).
    uncertainty : {"alpha", "size"}, default="alpha"
        Show the probability of the most probable cluster by point opacity or by size.
    random_seed : int, optional
        Which draws give the faint ellipses.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    if uncertainty not in ("alpha", "size"):
        raise ConfigError(f"uncertainty must be 'alpha' or 'size'; got {uncertainty!r}.")
    if not integer(0)(n_ellipse_draws):
        raise ConfigError(f"n_ellipse_draws must be an integer >= 0; got {n_ellipse_draws!r}.")
    draws, X = draws_and_data(posterior, X, None)
    proba = predict_proba(posterior, X)
    cluster, certainty = proba.argmax(axis=1), proba.max(axis=1)
    S, K, D = draws.shape
    colours = plt.get_cmap("tab10" if K <= 10 else "tab20")
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    rgba = np.array([to_rgba(colours(k % colours.N)) for k in cluster])
    lo = 1.0 / K  # certainty of a uniform guess
    strength = np.clip((certainty - lo) / max(1.0 - lo, 1e-12), 0.0, 1.0)
    sizes = np.full(X.shape[0], 14.0)
    if uncertainty == "alpha":
        rgba[:, 3] = 0.1 + 0.9 * strength
    else:
        sizes = 2.0 + 28.0 * strength
    rng = np.random.default_rng(random_seed)
    picks = rng.choice(S, size=min(int(n_ellipse_draws), S), replace=False)
    if D == 1:
        return _clusters_1d(ax, draws, X[:, 0], rgba, sizes, colours, picks, uncertainty)
    i, j = _feature_index(features, draws.feature_names)
    ax.scatter(X[:, i], X[:, j], c=rgba, s=sizes, linewidths=0)
    pair = np.ix_([i, j], [i, j])
    for s in picks:
        for k in range(K):
            _ellipse(
                ax,
                draws.means[s, k, [i, j]],
                draws.covariance[s, k][pair],
                n_std,
                color=colours(k % colours.N),
                alpha=0.15,
                linewidth=0.6,
            )
    mean_means = draws.means.mean(axis=0)
    mean_cov = draws.covariance.mean(axis=0)
    weights = np.exp(draws.log_weights).mean(axis=0)
    for k in range(K):
        _ellipse(
            ax,
            mean_means[k, [i, j]],
            mean_cov[k][pair],
            n_std,
            color=colours(k % colours.N),
            linewidth=2.0,
            label=f"component {draws.coords['component'][k]} (w={weights[k]:.2f})",
        )
        ax.plot(*mean_means[k, [i, j]], marker="x", color="black", markersize=7)
    ax.set_xlabel(draws.feature_names[i])
    ax.set_ylabel(draws.feature_names[j])
    ax.set_title(
        f"most probable cluster; {'opacity' if uncertainty == 'alpha' else 'size'} = "
        f"certainty; ellipses {n_std:g} sd"
    )
    ax.legend(loc="best", fontsize="small")
    ax.autoscale_view()
    return fig


def _clusters_1d(ax, draws, x, rgba, sizes, colours, picks, uncertainty):
    """One feature: a histogram of the data, each component's weighted density (posterior
    mean parameters, bold; the draws ``picks``, faint) and the points as a rug coloured
    by most probable cluster, with ``plot_clusters``'s opacity or size for certainty."""
    from scipy.stats import norm

    K = draws.shape[1]
    grid = np.linspace(x.min() - 0.1 * np.ptp(x), x.max() + 0.1 * np.ptp(x), 400)
    ax.hist(x, bins="auto", density=True, color="0.85", edgecolor="white", label="data")
    weights = np.exp(draws.log_weights)
    sds = np.sqrt(draws.covariance[:, :, 0, 0])
    for s in picks:
        for k in range(K):
            dens = weights[s, k] * norm.pdf(grid, draws.means[s, k, 0], sds[s, k])
            ax.plot(grid, dens, color=colours(k % colours.N), alpha=0.15, linewidth=0.6)
    w, mu, sd = weights.mean(axis=0), draws.means[:, :, 0].mean(axis=0), sds.mean(axis=0)
    total = np.zeros_like(grid)
    for k in range(K):
        dens = w[k] * norm.pdf(grid, mu[k], sd[k])
        total += dens
        name = draws.coords["component"][k]
        ax.plot(grid, dens, color=colours(k % colours.N), linewidth=2.0,
                label=f"component {name} (w={w[k]:.2f})")  # fmt: skip
    ax.plot(grid, total, color="black", linewidth=1.2, linestyle="--", label="mixture")
    top = ax.get_ylim()[1]
    rug = 120.0 if uncertainty == "alpha" else 4.0 * sizes  # a tick 120 long at most
    ax.scatter(x, np.full(x.shape, -0.04 * top), c=rgba, marker="|", s=rug, linewidths=1.2)
    ax.set_ylim(-0.08 * top, top)
    ax.set_xlabel(draws.feature_names[0])
    ax.set_ylabel("density")
    how = "opacity" if uncertainty == "alpha" else "size"
    ax.set_title(f"most probable cluster (rug, {how} = certainty); component densities")
    ax.legend(loc="best", fontsize="small")
    return ax.figure
