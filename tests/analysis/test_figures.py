"""Structure of the trace, posterior predictive and LOO-PIT figures on real fits.

Old Faithful (K=2, D=2) and iris (K=3, D=4) from the session fixtures: panels, titles and
labels, legends, correlation rows and the "showing N of M" note. The predictive checks
use a copy of the tree with 100 posterior draws' worth of replicated data.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
import xarray as xr
from matplotlib.collections import PolyCollection

from bayesgmm.analysis.plots import plot_rank
from bayesgmm.analysis.ppc import plot_loo_pit, plot_ppc, posterior_predictive
from bayesgmm.analysis.trace import plot_trace
from bayesgmm.exceptions import ConfigError

IRIS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def predictive(faithful_fit, iris_fit):
    """Per fit name: a copy of its tree with a small posterior predictive group."""
    out = {}
    for name, fit in (("faithful", faithful_fit), ("iris", iris_fit)):
        tree = fit.idata_.copy()
        out[name] = posterior_predictive(tree, random_seed=0, max_draws=100)
    assert "posterior_predictive" not in faithful_fit.idata_.children  # copies only
    return out


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def _legend_texts(fig) -> list[list[str]]:
    return [[t.get_text() for t in legend.get_texts()] for legend in fig.legends]


def test_trace_old_faithful_rows_labels_and_legends(faithful_fit):
    fig = plot_trace(faithful_fit.idata_)
    rows = [
        "weights",
        "means[eruptions]",
        "means[waiting]",
        "sds[eruptions]",
        "sds[waiting]",
        "correlation[eruptions, waiting]",  # the one pair
    ]
    assert len(fig.axes) == 2 * len(rows)
    assert _titles(fig) == [f"{r}: {panel}" for r in rows for panel in ("density", "trace")]
    assert all(ax.get_ylabel() for ax in fig.axes)
    components, chains = _legend_texts(fig)
    assert components == ["component 0", "component 1"]
    assert chains == ["chain 0", "chain 1"]
    assert "colour = component" in fig.get_suptitle()
    # per-feature rows: each axis spans only its own feature's values
    means_eruptions, means_waiting = fig.axes[3], fig.axes[5]
    assert means_eruptions.get_ylim()[1] < 6 < 40 < means_waiting.get_ylim()[0]
    # every component drawn for every chain in every trace panel
    assert all(len(ax.lines) == 2 * 2 for ax in fig.axes[1::2])


def test_trace_iris_has_all_six_correlation_pairs(iris_fit):
    fig = plot_trace(iris_fit.idata_, var_names=["correlation"], kind="trace")
    pairs = [(a, b) for i, a in enumerate(IRIS) for b in IRIS[i + 1 :]]
    assert _titles(fig) == [f"correlation[{a}, {b}]: trace" for a, b in pairs]
    assert _legend_texts(fig)[0] == ["component 0", "component 1", "component 2"]


def test_trace_cap_says_showing_n_of_m(iris_fit):
    # iris: weights + 4 means + 4 sds + 6 correlations = 15 rows
    fig = plot_trace(iris_fit.idata_, max_rows=5, kind="trace")
    assert len(fig.axes) == 5
    note = fig.get_suptitle()
    assert "showing 5 of 15 rows" in note
    assert "correlation 1 of 6" in note  # every quantity keeps a row
    assert {t.split("[")[0].split(":")[0] for t in _titles(fig)} == {
        "weights",
        "means",
        "sds",
        "correlation",
    }
    assert "showing" not in plot_trace(iris_fit.idata_, ["weights"]).get_suptitle()


def test_trace_coords_compact_and_shared_quantities(faithful_fit):
    post = faithful_fit.idata_["posterior"].to_dataset()
    fig = plot_trace(faithful_fit.idata_, ["means"], compact=False, coords={"feature": ["waiting"]})
    assert _titles(fig)[::2] == [
        "means[waiting], component 0: density",
        "means[waiting], component 1: density",
    ]
    # a correlation shared by the components (as for a tied covariance) gets one grey row;
    # no correlation at all (diag, spherical) means no correlation rows
    tied = post[["weights"]].assign(correlation=post["correlation"].isel(component=0, drop=True))
    fig = plot_trace(xr.DataTree.from_dict({"posterior": tied}), kind="trace")
    assert _titles(fig) == ["weights: trace", "correlation[eruptions, waiting]: trace"]
    assert _legend_texts(fig)[0][-1] == "shared by all components"
    diag = xr.DataTree.from_dict({"posterior": post[["weights", "means", "sds"]]})
    assert not any("correlation" in t for t in _titles(plot_trace(diag, kind="trace")))
    with pytest.raises(ConfigError, match="kind"):
        plot_trace(faithful_fit.idata_, kind="rank")
    with pytest.raises(ConfigError, match="not in"):
        plot_trace(faithful_fit.idata_, ["mu"])


def test_plot_rank_still_works(faithful_fit):
    pc = plot_rank(faithful_fit.idata_, ["weights"])
    assert type(pc).__name__ == "PlotCollection"


@pytest.mark.parametrize(
    ("name", "features"), [("faithful", ["eruptions", "waiting"]), ("iris", IRIS)]
)
def test_ppc_one_panel_per_feature_with_legend(predictive, name, features):
    fig = plot_ppc(predictive[name], random_seed=0, num_samples=10)
    assert [ax.get_xlabel() for ax in fig.axes] == features
    assert all(ax.get_ylabel() == "density" for ax in fig.axes)
    (texts,) = _legend_texts(fig)
    assert texts == ["observed data", "replicated datasets (10 posterior draws)"]


@pytest.mark.parametrize(
    ("name", "features"), [("faithful", ["eruptions", "waiting"]), ("iris", IRIS)]
)
def test_loo_pit_one_panel_per_feature_with_band(predictive, name, features):
    fig = plot_loo_pit(predictive[name], n_simulations=200)
    assert _titles(fig) == features
    for ax in fig.axes:
        assert sum(isinstance(c, PolyCollection) for c in ax.collections) == 1  # the band
        assert ax.get_xlabel() and ax.get_ylabel()
    (texts,) = _legend_texts(fig)
    assert "94% simultaneous band" in texts and texts[0].startswith("LOO-PIT ECDF difference")
