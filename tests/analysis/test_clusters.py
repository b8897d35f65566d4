"""Cluster figures (bayesgmm.analysis.clusters, bayesgmm.analysis.uncertainty_plots).

A small synthetic DataTree (posterior draws around a known two-component truth and data
simulated from it) checks the drawing rules exactly; the session fixtures ``faithful_fit``
(D=2) and ``iris_fit`` (D=4) check the figures' structure on real fits.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.collections import PathCollection

from bayesgmm.analysis.clusters import plot_clusters, plot_pairs
from bayesgmm.analysis.uncertainty_plots import plot_coclustering, plot_uncertainty
from bayesgmm.core.draws import training_data
from bayesgmm.core.predict import co_clustering, predict_proba
from bayesgmm.exceptions import ConfigError, DataError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CENTRES = np.array([[0.0, 0.0], [5.0, 2.0]])
COV = np.array([[[1.0, 0.4], [0.4, 0.8]], [[0.6, -0.2], [-0.2, 1.2]]])
WEIGHTS = np.array([0.4, 0.6])
FEATURES = ["height", "width"]
IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def make_tree(seed: int = 0, n_obs: int = 120, n_chain: int = 2, n_draw: int = 60, far=None):
    """Data from a known mixture and posterior-like draws around the truth; ``far`` moves
    the means of one draw (chain 0, draw 0) by that much (a stray chain)."""
    rng = np.random.default_rng(seed)
    comp = rng.choice(2, size=n_obs, p=WEIGHTS)
    chol = np.linalg.cholesky(COV)[comp]
    X = CENTRES[comp] + np.einsum("nij,nj->ni", chol, rng.normal(size=(n_obs, 2)))
    shape = (n_chain, n_draw)
    w = rng.dirichlet(100 * WEIGHTS, size=shape)
    mu = CENTRES + 0.1 * rng.normal(size=(*shape, 2, 2))
    if far is not None:
        mu[0, 0] += far
    cov = COV * np.exp(0.05 * rng.normal(size=(*shape, 2, 1, 1)))
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        },
        coords={"chain": np.arange(n_chain), "draw": np.arange(n_draw), "component": [0, 1],
                "feature": FEATURES, "feature_bis": FEATURES},
    )  # fmt: skip
    observed = xr.Dataset({"x": (("obs", "feature"), X)},
                          coords={"obs": np.arange(n_obs), "feature": FEATURES})  # fmt: skip
    return xr.DataTree.from_dict({"posterior": post, "observed_data": observed})


def assert_png(path, min_bytes: int = 5_000) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes


def grid_position(ax) -> tuple[int, int]:
    spec = ax.get_subplotspec()
    return spec.rowspan.start, spec.colspan.start


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# -- plot_clusters (moved from test_ppc.py) ------------------------------------------------


@pytest.mark.parametrize("uncertainty", ["alpha", "size"])
def test_plot_clusters_renders(tmp_path, uncertainty):
    dt = make_tree()
    fig = plot_clusters(dt, uncertainty=uncertainty, n_ellipse_draws=10)
    ax = fig.axes[0]
    # 10 draws x 2 components faint ellipses + 2 posterior-mean ellipses
    assert len(ax.patches) == 22
    assert ax.get_xlabel() == "height" and ax.get_ylabel() == "width"
    assert "projection" not in ax.get_title()  # D = 2: nothing is hidden
    fig.savefig(tmp_path / "clusters.png")
    assert_png(tmp_path / "clusters.png")


def test_plot_clusters_opacity_tracks_certainty():
    dt = make_tree()
    # points along the segment between the two centres: certain at the ends, not between
    t = np.linspace(0.0, 1.0, 41)[:, None]
    X = (1 - t) * CENTRES[0] + t * CENTRES[1]
    fig = plot_clusters(dt, X, n_ellipse_draws=0)
    alpha = fig.axes[0].collections[0].get_facecolors()[:, 3]
    certainty = predict_proba(dt, X).max(axis=1)
    assert certainty.min() < 0.6 and certainty[0] > 0.99 and certainty[-1] > 0.99
    np.testing.assert_allclose(alpha, 0.1 + 0.9 * (certainty - 0.5) / 0.5)
    assert alpha.min() < 0.3 and alpha[0] > 0.95 and alpha[-1] > 0.95


def test_plot_clusters_feature_pair_by_name_and_errors():
    dt = make_tree()
    fig = plot_clusters(dt, features=("width", "height"), n_ellipse_draws=2)
    assert fig.axes[0].get_xlabel() == "width"
    with pytest.raises(ConfigError, match="unknown feature"):
        plot_clusters(dt, features=("height", "depth"))
    with pytest.raises(ConfigError, match="different"):
        plot_clusters(dt, features=(0, 0))
    with pytest.raises(ConfigError, match="uncertainty"):
        plot_clusters(dt, uncertainty="colour")
    with pytest.raises(DataError, match="features"):
        plot_clusters(dt, np.zeros((3, 3)))


# -- axis limits: a stray draw is drawn but does not stretch the axes ---------------------


def _inside(lim, lo, hi) -> bool:
    span = hi - lo
    return lim[0] >= lo - 0.6 * span and lim[1] <= hi + 0.6 * span


def test_a_far_away_draw_does_not_stretch_the_axes():
    dt = make_tree(far=1e3)
    X = training_data(dt)
    fig = plot_clusters(dt, n_ellipse_draws=120)  # every draw, the stray one included
    ax = fig.axes[0]
    assert len(ax.patches) == 2 * 120 + 2  # the stray draw's ellipses are still drawn
    far = [p for p in ax.patches if p.center[0] > 500]
    assert len(far) == 2
    assert _inside(ax.get_xlim(), X[:, 0].min(), X[:, 0].max())
    assert _inside(ax.get_ylim(), X[:, 1].min(), X[:, 1].max())
    assert ax.get_xlim()[0] < X[:, 0].min() and ax.get_xlim()[1] > X[:, 0].max()
    pairs = plot_pairs(dt, n_ellipse_draws=120)
    for ax in pairs.axes:
        r, c = grid_position(ax)
        assert _inside(ax.get_xlim(), X[:, c].min(), X[:, c].max())
        if r != c:
            assert _inside(ax.get_ylim(), X[:, r].min(), X[:, r].max())


# -- plot_pairs -------------------------------------------------------------------------


def test_plot_pairs_iris_grid_labels_and_one_legend(iris_fit, tmp_path):
    fig = plot_pairs(iris_fit.idata_, n_ellipse_draws=3)
    positions = [grid_position(ax) for ax in fig.axes]
    assert sorted(positions) == [(r, c) for r in range(4) for c in range(r + 1)]
    lower = [ax for ax, (r, c) in zip(fig.axes, positions, strict=True) if r > c]
    diagonal = [ax for ax, (r, c) in zip(fig.axes, positions, strict=True) if r == c]
    assert len(lower) == 6 and len(diagonal) == 4
    for ax in lower:
        (points,) = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert points.get_offsets().shape == (150, 2)
        assert len(ax.patches) == 3 * 3 + 3  # faint + posterior-mean ellipses
    for ax in diagonal:
        assert not any(isinstance(c, PathCollection) for c in ax.collections)
        assert len(ax.patches) > 3 and len(ax.lines) == 3 * 3 + 3 + 1  # histogram, curves
    by_position = dict(zip(positions, fig.axes, strict=True))
    assert [by_position[3, c].get_xlabel() for c in range(4)] == IRIS
    assert [by_position[r, 0].get_ylabel() for r in range(4)] == ["density", *IRIS[1:]]
    assert all(ax.get_legend() is None for ax in fig.axes)
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == 3 and all(t.startswith("component") for t in texts)
    title = fig.get_suptitle()
    assert "projections (marginals)" in title and "4-dimensional" in title
    fig.savefig(tmp_path / "pairs.png")
    assert_png(tmp_path / "pairs.png")


def test_plot_pairs_on_two_features_and_chosen_features(faithful_fit, iris_fit):
    fig = plot_pairs(faithful_fit.idata_, n_ellipse_draws=2)
    assert len(fig.axes) == 3 and len(fig.legends) == 1
    assert len(fig.legends[0].get_texts()) == 2
    fig = plot_pairs(iris_fit.idata_, features=["petal_width", 2], n_ellipse_draws=0)
    assert [ax.get_xlabel() for ax in fig.axes if grid_position(ax)[0] == 1] == [
        "petal_width", "petal_length"]  # fmt: skip
    # beyond max_features: the most separating features, and the title says so
    fig = plot_pairs(iris_fit.idata_, max_features=2, n_ellipse_draws=0)
    assert [ax.get_xlabel() for ax in fig.axes if grid_position(ax)[0] == 1] == IRIS[2:]
    assert "2 of 4 features" in fig.get_suptitle()
    for bad in ("petal_width", ["petal_width", 3], [], ["depth"]):
        with pytest.raises(ConfigError, match="feature"):
            plot_pairs(iris_fit.idata_, features=bad)
    with pytest.raises(ConfigError, match="max_features"):
        plot_pairs(iris_fit.idata_, max_features=0)


def test_plot_clusters_says_it_is_a_projection(iris_fit):
    ax = plot_clusters(iris_fit.idata_, features=(2, 3), n_ellipse_draws=0).axes[0]
    assert "projection on (petal_length, petal_width) of 4 features" in ax.get_title()
    assert "plot_pairs" in ax.get_title()


# -- plot_uncertainty -------------------------------------------------------------------


def test_plot_uncertainty_names_the_most_uncertain_points(iris_fit, tmp_path):
    table = iris_fit.assignments()
    fig = plot_uncertainty(iris_fit.idata_, n_label=7)
    ax, ax_sorted = fig.axes
    named = [t.get_text() for t in ax.texts]
    expected = table["uncertainty"].sort_values(ascending=False, kind="stable").index[:7]
    assert named == [str(i) for i in expected]
    # by default the two features that separate iris's components most: the petal ones
    assert ax.get_xlabel() == "petal_length" and ax.get_ylabel() == "petal_width"
    assert "projection" in ax.get_title()
    legend = [t.get_text() for t in ax_sorted.get_legend().get_texts()]
    assert ax_sorted.get_xlabel() and "94% HDI over draws" in legend
    # the sorted panel: posterior-mean uncertainties, most uncertain first
    (points,) = [c for c in ax_sorted.collections if isinstance(c, PathCollection)]
    np.testing.assert_allclose(points.get_offsets()[:, 1],
                               np.sort(table["uncertainty"].to_numpy())[::-1])  # fmt: skip
    fig.savefig(tmp_path / "uncertainty.png")
    assert_png(tmp_path / "uncertainty.png")


def test_plot_uncertainty_names_points_by_the_dataframe_index(faithful_fit):
    X = pd.DataFrame(training_data(faithful_fit.idata_), columns=faithful_fit.feature_names_in_)
    X.index = [f"eruption {i}" for i in range(len(X))]
    fig = faithful_fit.plot_uncertainty(X, n_label=3, features=("waiting", "eruptions"))
    ax = fig.axes[0]
    assert len(ax.texts) == 3 and all(t.get_text().startswith("eruption ") for t in ax.texts)
    assert ax.get_xlabel() == "waiting"
    assert not plot_uncertainty(faithful_fit.idata_, n_label=0).axes[0].texts
    with pytest.raises(ConfigError, match="n_label"):
        plot_uncertainty(faithful_fit.idata_, n_label=-1)


# -- plot_coclustering ------------------------------------------------------------------


def test_plot_coclustering_is_the_ordered_matrix(iris_fit, tmp_path):
    fig = plot_coclustering(iris_fit.idata_)
    ax, bar = fig.axes
    image = np.asarray(ax.images[0].get_array())
    assert image.shape == (150, 150)
    assert image.min() >= 0.0 and image.max() <= 1.0 + 1e-12
    np.testing.assert_allclose(image, image.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(image), 1.0)
    # ordered by most probable cluster, then by certainty within a cluster
    proba = predict_proba(iris_fit.idata_, max_draws=1000)
    order = np.lexsort((-proba.max(axis=1), proba.argmax(axis=1)))
    cc = co_clustering(iris_fit.idata_, max_draws=1000)
    np.testing.assert_allclose(image, cc[np.ix_(order, order)])
    counts = np.bincount(proba.argmax(axis=1), minlength=3)
    boundaries = sorted({line.get_xdata()[0] for line in ax.lines if line.get_xdata()[0] > 0})
    np.testing.assert_allclose(boundaries, np.cumsum(counts)[:-1] - 0.5)
    assert bar.get_ylabel() == "P(same cluster)"
    assert ax.get_xlabel() and ax.get_ylabel()
    assert "subsample" not in ax.get_title()
    fig.savefig(tmp_path / "coclustering.png")
    assert_png(tmp_path / "coclustering.png")


def test_plot_coclustering_subsamples_and_says_so(faithful_fit):
    ax = plot_coclustering(faithful_fit.idata_, max_points=40, random_seed=1).axes[0]
    assert np.asarray(ax.images[0].get_array()).shape == (40, 40)
    assert "random subsample of 40 of 272 points" in ax.get_title()
    with pytest.raises(ConfigError, match="max_points"):
        plot_coclustering(faithful_fit.idata_, max_points=0)


def test_estimator_methods(faithful_fit):
    assert len(faithful_fit.plot_pairs(n_ellipse_draws=0).axes) == 3
    assert len(faithful_fit.plot_coclustering(max_points=30).axes) == 2


def test_plot_clusters_shows_the_most_separating_pair_unless_told(iris_fit):
    ax = plot_clusters(iris_fit.idata_, n_ellipse_draws=0).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("petal_length", "petal_width")
    ax = plot_clusters(iris_fit.idata_, features=(0, 1), n_ellipse_draws=0).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("sepal_length", "sepal_width")
