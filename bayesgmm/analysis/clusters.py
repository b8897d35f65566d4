"""Cluster figures: the data coloured by most probable cluster, with uncertainty and ellipses.

:func:`plot_clusters` shows the data coloured by most probable cluster, faded (or sized)
by assignment uncertainty, with component ellipses from the posterior mean and from a
spread of posterior draws, on two features; with one feature, a histogram with the
components' weighted densities and the points as a rug. :func:`plot_pairs` draws the same
on every pair of features (up to six), with each feature's histogram on the diagonal.

Axis limits come from the data and the posterior-mean ellipses only: a stray draw's
ellipse (a chain in another mode) is drawn, and clipped, but never widens the axes.

Plots need matplotlib (``pip install -e '.[plot]'``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np

from bayesgmm.core.checks import integer, is_int
from bayesgmm.core.draws import training_data
from bayesgmm.core.predict import predict_proba
from bayesgmm.core.summaries import draws_and_data
from bayesgmm.exceptions import ConfigError

__all__ = ["plot_clusters", "plot_pairs"]

_MARGIN = 0.05  # of the data's span, around the data
_ELLIPSE_REACH = 0.5  # mean ellipses widen the axes by at most this much of the span


def _one_feature(f, names: list[str]) -> int:
    if is_int(f):
        if not -len(names) <= f < len(names):
            raise ConfigError(f"feature index {f} out of range for {len(names)} features.")
        return int(f) % len(names)
    if str(f) in names:
        return names.index(str(f))
    raise ConfigError(f"unknown feature {f!r}; features are {names}.")


def _feature_index(features, names: list[str]) -> tuple[int, int]:
    if len(features) != 2:
        raise ConfigError(f"features must name exactly two features; got {features!r}.")
    i, j = (_one_feature(f, names) for f in features)
    if i == j:
        raise ConfigError("features must be two different features.")
    return i, j


def _check_style(uncertainty, n_ellipse_draws) -> None:
    if uncertainty not in ("alpha", "size"):
        raise ConfigError(f"uncertainty must be 'alpha' or 'size'; got {uncertainty!r}.")
    if not integer(0)(n_ellipse_draws):
        raise ConfigError(f"n_ellipse_draws must be an integer >= 0; got {n_ellipse_draws!r}.")


#: The colour of a background-noise component's points.
NOISE_COLOUR = "dimgray"


def component_colours(K: int):
    """The colour map of ``K`` components (``colours(k % colours.N)`` is component k's)."""
    import matplotlib.pyplot as plt

    return plt.get_cmap("tab10" if K <= 10 else "tab20")


def _style(draws, proba, uncertainty, n_ellipse_draws, random_seed):
    """Component colours, point colours and sizes (opacity or size = certainty) and the
    draws that give the faint ellipses."""
    from matplotlib.colors import to_rgba

    S, K, _ = draws.shape
    colours = component_colours(K)
    cluster, certainty = proba.argmax(axis=1), proba.max(axis=1)
    # a background-noise component's points (its column last) in grey
    rgba = np.array([to_rgba(colours(k % colours.N) if k < K else NOISE_COLOUR) for k in cluster])
    lo = 1.0 / proba.shape[1]  # certainty of a uniform guess
    strength = np.clip((certainty - lo) / max(1.0 - lo, 1e-12), 0.0, 1.0)
    sizes = np.full(proba.shape[0], 14.0)
    if uncertainty == "alpha":
        rgba[:, 3] = 0.1 + 0.9 * strength
    else:
        sizes = 2.0 + 28.0 * strength
    rng = np.random.default_rng(random_seed)
    picks = rng.choice(S, size=min(int(n_ellipse_draws), S), replace=False)
    return colours, rgba, sizes, picks


def _limits(draws, X, n_std) -> np.ndarray:
    """(D, 2) axis limits: the data's range and the posterior-mean ellipses' extents (the
    latter at most half the data's span beyond it), with a 5% margin; not the draws'.
    Missing values (NaN) are left out."""
    lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    mu = draws.means.mean(axis=0)
    sd = np.sqrt(np.clip(np.diagonal(draws.covariance.mean(axis=0), axis1=1, axis2=2), 0, None))
    e_lo = np.maximum((mu - n_std * sd).min(axis=0), lo - _ELLIPSE_REACH * span)
    e_hi = np.minimum((mu + n_std * sd).max(axis=0), hi + _ELLIPSE_REACH * span)
    return np.stack(
        [np.minimum(lo, e_lo) - _MARGIN * span, np.maximum(hi, e_hi) + _MARGIN * span], axis=1
    )


def _component_labels(draws) -> list[str]:
    w = np.exp(draws.log_weights).mean(axis=0)
    return [f"component {c} (w={x:.2f})" for c, x in zip(draws.coords["component"], w, strict=True)]


def _noise_handles(draws) -> list:
    """The legend's entry for a background-noise component's points (none without one)."""
    if draws.log_noise_weight is None:
        return []
    from matplotlib.lines import Line2D

    w0 = np.exp(draws.log_noise_weight).mean()
    return [Line2D([], [], color=NOISE_COLOUR, marker="o", linestyle="none", markersize=4,
                   label=f"noise (w={w0:.2f})")]  # fmt: skip


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


def _draw_pair(ax, draws, X, i, j, rgba, sizes, colours, picks, n_std, limits, labels=None):
    """Scatter of features ``i`` (x) and ``j`` (y) with faint per-draw and bold
    posterior-mean ellipses on one axes; ``labels`` name the bold ellipses."""
    ax.scatter(X[:, i], X[:, j], c=rgba, s=sizes, linewidths=0)
    pair = np.ix_([i, j], [i, j])
    K = draws.shape[1]
    for s in picks:
        for k in range(K):
            _ellipse(ax, draws.means[s, k, [i, j]], draws.covariance[s, k][pair], n_std,
                     color=colours(k % colours.N), alpha=0.15, linewidth=0.6)  # fmt: skip
    mean_means = draws.means.mean(axis=0)
    mean_cov = draws.covariance.mean(axis=0)
    for k in range(K):
        label = None if labels is None else labels[k]
        _ellipse(ax, mean_means[k, [i, j]], mean_cov[k][pair], n_std,
                 color=colours(k % colours.N), linewidth=2.0, label=label)  # fmt: skip
        ax.plot(*mean_means[k, [i, j]], marker="x", color="black", markersize=7)
    ax.set_xlim(*limits[i])
    ax.set_ylim(*limits[j])


def _box(posterior, draws, X):
    """The box of a background-noise component (None without one), from the fit's
    training data (``X`` when the posterior has none)."""
    from bayesgmm.core.generate import background_box

    train = training_data(posterior)
    return background_box(posterior, draws, X if train is None else train)


def _draw_marginal(ax, draws, x, f, colours, picks, limits, labels=None, box=None) -> float:
    """Histogram of feature ``f`` (values ``x``) with each component's weighted marginal
    density (posterior mean, bold; the draws ``picks``, faint), a background-noise
    component's (uniform on its ``box``'s side, grey) and the mixture (dashed); the y limit
    comes from the histogram and the bold curves. Returns that limit."""
    from scipy.stats import norm

    K = draws.shape[1]
    grid = np.linspace(*limits[f], 400)
    x = x[~np.isnan(x)]  # a point missing this feature is not in its histogram
    heights, _, _ = ax.hist(x, bins="auto", density=True, color="0.85", edgecolor="white",
                            label=None if labels is None else "data")  # fmt: skip
    weights = np.exp(draws.log_weights)
    sds = np.sqrt(draws.covariance[:, :, f, f])
    for s in picks:
        for k in range(K):
            dens = weights[s, k] * norm.pdf(grid, draws.means[s, k, f], sds[s, k])
            ax.plot(grid, dens, color=colours(k % colours.N), alpha=0.15, linewidth=0.6)
    w, mu, sd = weights.mean(axis=0), draws.means[:, :, f].mean(axis=0), sds.mean(axis=0)
    total = np.zeros_like(grid)
    for k in range(K):
        dens = w[k] * norm.pdf(grid, mu[k], sd[k])
        total += dens
        ax.plot(grid, dens, color=colours(k % colours.N), linewidth=2.0,
                label=None if labels is None else labels[k])  # fmt: skip
    if box is not None:  # the background's marginal: uniform on the box's side
        lo, hi = box[0][f], box[1][f]
        w0 = np.exp(draws.log_noise_weight).mean()
        flat = np.where((grid >= lo) & (grid <= hi), w0 / (hi - lo), 0.0)
        total += flat
        ax.plot(grid, flat, color=NOISE_COLOUR, linewidth=2.0)
    ax.plot(grid, total, color="black", linewidth=1.2, linestyle="--",
            label=None if labels is None else "mixture")  # fmt: skip
    top = 1.08 * max(float(np.max(heights, initial=0.0)), float(total.max()), 1e-300)
    ax.set_xlim(*limits[f])
    ax.set_ylim(0.0, top)
    return top


def plot_clusters(
    posterior,
    X=None,
    *,
    features: Sequence | None = None,
    n_ellipse_draws: int = 30,
    n_std: float = 2.0,
    uncertainty: str = "alpha",
    random_seed=0,
    ax=None,
):
    """Data coloured by most probable cluster, with assignment uncertainty and ellipses.

    With more than two features this is the projection on two features (the ellipses
    are the components' marginals on them), and the title says so;
    :func:`plot_pairs` shows every pair. Axis limits come from the data and the
    posterior-mean ellipses, never from the faint per-draw ellipses.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
        Defaults to the DataTree's training data.
    features : pair of int or str, optional
        The two features to show; by default the two along which the posterior-mean
        components are furthest apart relative to their spread (between- over
        within-component variance; the only two when D = 2). With one feature the figure
        is a histogram with each component's weighted density and the points as a rug.
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

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> fig = plot_clusters(example_posterior(), [[0.0, 0.1], [3.0, 2.9], [1.4, 1.6]])
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
    ('a', 'b')
    """
    import matplotlib.pyplot as plt

    _check_style(uncertainty, n_ellipse_draws)
    training = X is None  # the training rows: with their known labels and errors
    draws, X = draws_and_data(posterior, X, None)
    proba = predict_proba(posterior, None if training else X)
    D = draws.shape[2]
    colours, rgba, sizes, picks = _style(draws, proba, uncertainty, n_ellipse_draws, random_seed)
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 5))
    else:
        fig = ax.figure
    limits = _limits(draws, X, n_std)
    labels = _component_labels(draws)
    how = "opacity" if uncertainty == "alpha" else "size"
    if D == 1:
        box = _box(posterior, draws, X)
        top = _draw_marginal(ax, draws, X[:, 0], 0, colours, picks, limits, labels, box)
        rug = 120.0 if uncertainty == "alpha" else 4.0 * sizes  # a tick 120 long at most
        ax.scatter(X[:, 0], np.full(X.shape[0], -0.04 * top), c=rgba, marker="|", s=rug,
                   linewidths=1.2)  # fmt: skip
        ax.set_ylim(-0.08 * top, top)
        ax.set_xlabel(draws.feature_names[0])
        ax.set_ylabel("density")
        ax.set_title(f"most probable cluster (rug, {how} = certainty); component densities")
        handles = ax.get_legend_handles_labels()[0] + _noise_handles(draws)
        ax.legend(handles=handles, loc="best", fontsize="small")
        return fig
    i, j = two_features(features, draws)
    _draw_pair(ax, draws, X, i, j, rgba, sizes, colours, picks, n_std, limits, labels)
    names = draws.feature_names
    ax.set_xlabel(names[i])
    ax.set_ylabel(names[j])
    title = f"most probable cluster; {how} = certainty; ellipses {n_std:g} sd"
    if D > 2:
        title = f"projection on ({names[i]}, {names[j]}) of {D} features; plot_pairs: all\n{title}"
    ax.set_title(title, fontsize="medium")
    handles = ax.get_legend_handles_labels()[0] + _noise_handles(draws)
    ax.legend(handles=handles, loc="best", fontsize="small")
    return fig


def _pair_features(features, draws, max_features) -> tuple[list[int], str]:
    """Indices of the features to show and a note when they were chosen automatically."""
    names, D = draws.feature_names, draws.shape[2]
    if features is not None:
        if isinstance(features, (str, int, np.integer)) or len(features) == 0:
            raise ConfigError(f"features must be a non-empty list of features; got {features!r}.")
        idx = [_one_feature(f, names) for f in features]
        if len(set(idx)) != len(idx):
            raise ConfigError(f"features must be different features; got {features!r}.")
        return idx, ""
    if D <= max_features:
        return list(range(D)), ""
    # the features along which the posterior-mean components are furthest apart, relative
    # to their spread: between-component over within-component variance
    w = np.exp(draws.log_weights).mean(axis=0)
    mu = draws.means.mean(axis=0)
    var = np.diagonal(draws.covariance.mean(axis=0), axis1=1, axis2=2)
    between = w @ (mu - w @ mu) ** 2
    score = between / np.maximum(w @ var, 1e-300)
    idx = sorted(np.argsort(-score, kind="stable")[:max_features].tolist())
    return idx, (f"showing the {max_features} of {D} features that separate the components "
                 "most (pass features=[...] to choose)")  # fmt: skip


def two_features(features, draws) -> tuple[int, int]:
    """The pair of features a 2-D cluster figure shows: ``features`` when given, else the
    two that separate the posterior-mean components most (in the data's order)."""
    if features is not None:
        return _feature_index(features, draws.feature_names)
    idx, _ = _pair_features(None, draws, 2)
    return idx[0], idx[1]


def plot_pairs(
    posterior,
    X=None,
    *,
    features: Sequence | None = None,
    n_ellipse_draws: int = 20,
    n_std: float = 2.0,
    uncertainty: str = "alpha",
    random_seed=0,
    max_features: int = 6,
):
    """Every pair of features: 2-D projections of the clusters, with each feature's histogram.

    A grid over the chosen features: below the diagonal, the scatter of each pair coloured
    by most probable cluster with the components' ellipses (as :func:`plot_clusters` draws
    them: bold from the posterior mean, faint from posterior draws; the ellipses are the
    components' 2-D marginals); on the diagonal, the feature's histogram with each
    component's weighted marginal density and the mixture's (dashed). The upper triangle is
    left empty and holds the one component legend. Outer axes carry the feature names.

    Parameters
    ----------
    posterior : xarray.DataTree or xarray.Dataset
    X : array-like of shape (n_samples, n_features), optional
        Defaults to the DataTree's training data.
    features : list of int or str, optional
        The features to show, in this order. By default all of them when there are at most
        ``max_features``; beyond, the ``max_features`` features with the largest ratio of
        between-component to within-component variance (posterior-mean parameters), in
        their original order, and the title says so.
    n_ellipse_draws : int, default=20
        Faint ellipses and density curves from this many random posterior draws.
    n_std : float, default=2.0
        Ellipse radius in standard deviations.
    uncertainty : {"alpha", "size"}, default="alpha"
        Show the probability of the most probable cluster by point opacity or by size.
    random_seed : int, optional
        Which draws give the faint ellipses.
    max_features : int, default=6
        The most features shown when ``features`` is not given.

    Returns
    -------
    matplotlib.figure.Figure
        ``n * (n + 1) / 2`` axes for ``n`` features, row by row: the diagonal and the lower
        triangle (the upper triangle's axes are removed); one figure legend.

    Examples
    --------
    >>> from bayesgmm.core.draws import example_posterior
    >>> fig = plot_pairs(example_posterior(), [[0.0, 0.1], [3.0, 2.9], [1.4, 1.6]])
    >>> len(fig.axes), len(fig.legends)
    (3, 1)
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    _check_style(uncertainty, n_ellipse_draws)
    if not integer(1)(max_features):
        raise ConfigError(f"max_features must be an integer >= 1; got {max_features!r}.")
    training = X is None  # the training rows: with their known labels and errors
    draws, X = draws_and_data(posterior, X, None)
    proba = predict_proba(posterior, None if training else X)
    D = draws.shape[2]
    idx, note = _pair_features(features, draws, int(max_features))
    colours, rgba, sizes, picks = _style(draws, proba, uncertainty, n_ellipse_draws, random_seed)
    limits = _limits(draws, X, n_std)
    names = draws.feature_names
    n = len(idx)
    box = _box(posterior, draws, X)
    fig, axes = plt.subplots(n, n, figsize=(1.2 + 2.4 * n, 1.6 + 2.4 * n), squeeze=False)
    for r in range(n):
        for c in range(n):
            ax = axes[r, c]
            if c > r:
                ax.set_axis_off()  # removed once the layout is done
                continue
            if c == r:
                _draw_marginal(ax, draws, X[:, idx[r]], idx[r], colours, picks, limits, box=box)
                ax.set_yticks([])
            else:
                _draw_pair(ax, draws, X, idx[c], idx[r], rgba, sizes, colours, picks, n_std,
                           limits)  # fmt: skip
            if r == n - 1:
                ax.set_xlabel(names[idx[c]])
            else:
                ax.tick_params(labelbottom=False)
            if c == 0:
                ax.set_ylabel("density" if r == 0 else names[idx[r]])
            else:
                ax.tick_params(labelleft=False)
    handles = [Line2D([], [], color=colours(k % colours.N), linewidth=2.0, label=lab)
               for k, lab in enumerate(_component_labels(draws))]  # fmt: skip
    handles += _noise_handles(draws)
    how = "opacity" if uncertainty == "alpha" else "size"
    lines = [
        (f"2-D projections (marginals) of a {D}-dimensional fit: " if D > 2 else "")
        + f"most probable cluster, {how} = certainty",
        f"ellipses {n_std:g} sd (bold: posterior mean; faint: {len(picks)} draws); "
        "diagonal: histogram, weighted component densities, mixture (dashed)",
    ]
    width = int(13 * fig.get_figwidth())  # characters of a line of the title
    text = "\n".join(textwrap.fill(line, width) for line in ([*lines, note] if note else lines))
    fig.suptitle(text, fontsize="medium")
    fig.tight_layout()
    corner = axes[0, n - 1].get_position()  # the empty upper triangle's top right corner
    fig.legend(handles=handles, loc="upper right", fontsize="small",
               bbox_to_anchor=(corner.x1, corner.y1))  # fmt: skip
    for r in range(n):
        for c in range(r + 1, n):
            fig.delaxes(axes[r, c])
    return fig
