"""The BIC plot (bayesgmm.analysis.bic_plot): one line per family over K, mclust's sign and
names, degenerate fits as gaps, the best ringed."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from bayesgmm.analysis.bic_plot import plot_bic
from bayesgmm.core.bic import bic_table
from bayesgmm.core.datasets import load_faithful
from bayesgmm.exceptions import ConfigError


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def table(convention: str = "mclust") -> pd.DataFrame:
    """A hand-made bic_table: two families x K = 1..3, VVV at K = 3 degenerate."""
    bic = [-10.0, -6.0, -8.0, -10.0, -7.0, math.nan]
    t = pd.DataFrame(
        {
            "covariance_type": ["tied"] * 3 + ["full"] * 3,
            "mclust": ["EEE"] * 3 + ["VVV"] * 3,
            "K": [1, 2, 3] * 2,
            "bic": bic,
            "icl": [b - 1.0 for b in bic],
            "status": ["ok"] * 5 + ["degenerate"],
        }
    )
    if convention == "sklearn":
        t[["bic", "icl"]] *= -1.0
    t.attrs["convention"] = convention
    return t


def family_lines(fig):
    return [ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")]


@pytest.mark.parametrize("convention", ["mclust", "sklearn"])
def test_one_line_per_family_in_mclusts_sign(convention):
    fig = plot_bic(table(convention))
    lines = family_lines(fig)
    assert [ln.get_label() for ln in lines] == ["EEE", "VVV"]
    assert lines[0].get_xdata().tolist() == [1, 2, 3]
    assert lines[0].get_ydata().tolist() == [-10.0, -6.0, -8.0]  # higher is better
    y = lines[1].get_ydata()
    assert y[:2].tolist() == [-10.0, -7.0] and np.isnan(y[2])  # the degenerate fit: a gap
    ring = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "_best"]
    assert len(ring) == 1 and ring[0].get_xdata().tolist() == [2]
    assert ring[0].get_ydata().tolist() == [-6.0]
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["EEE", "VVV"]
    assert "EEE, K = 2" in ax.get_title() and "1 degenerate" in ax.get_title()
    assert "higher is better" in ax.get_ylabel()
    assert "background" not in ax.get_title()
    noisy = table(convention)
    noisy.attrs["noise"] = True  # bic_table(..., noise=True)
    title = plot_bic(noisy).axes[0].get_title()
    assert "each K with a background-noise component" in title


def test_icl_into_given_axes():
    fig, ax = plt.subplots()
    assert plot_bic(table(), "icl", ax=ax, title="ICL") is fig
    assert family_lines(fig)[0].get_ydata().tolist() == [-11.0, -7.0, -9.0]
    assert ax.get_title() == "ICL"


def test_plot_of_a_real_table(tmp_path):
    t = bic_table(load_faithful(), range(1, 4), ["tied", "VVE", "spherical"], n_init=5)
    fig = plot_bic(t)
    assert [ln.get_label() for ln in family_lines(fig)] == ["EEE", "VVE", "VII"]
    fig.savefig(tmp_path / "bic.png")
    assert (tmp_path / "bic.png").stat().st_size > 10_000


def test_bad_tables():
    with pytest.raises(ConfigError, match="criterion"):
        plot_bic(table(), "aic")
    with pytest.raises(ConfigError, match="no column"):
        plot_bic(table().drop(columns="status"))
    with pytest.raises(ConfigError, match="empty"):
        plot_bic(table().iloc[:0])
    bad = table()
    bad.attrs["convention"] = "R"
    with pytest.raises(ConfigError, match="convention"):
        plot_bic(bad)
