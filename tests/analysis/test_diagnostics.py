"""Diagnostics report (verdicts, thresholds, different modes) and trace/rank plots."""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from conftest import sample_from_starts

from bayesgmm.analysis.diagnostics import diagnose
from bayesgmm.analysis.plots import plot_rank, plot_trace
from bayesgmm.core.relabel import relabel
from bayesgmm.exceptions import ConfigError, DataError

ALL_CHECKS = [
    "r_hat",
    "ess_bulk",
    "ess_tail",
    "mcse",
    "divergences",
    "tree_depth",
    "e_bfmi",
    "modes",
]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def good(separated_fit):
    tree, _ = relabel(separated_fit.idata_, reference=separated_fit.em_)
    return tree


def _first_draws(tree: xr.DataTree, n: int) -> xr.DataTree:
    groups = {
        g: tree[g].to_dataset().isel(draw=slice(0, n))
        for g in ("posterior", "posterior_raw", "sample_stats", "log_likelihood")
        if g in tree.children
    }
    return xr.DataTree.from_dict(groups)


# --------------------------------------------------------------------------- #
# real runs
# --------------------------------------------------------------------------- #


def test_good_run_is_ok(good):
    report = diagnose(good)
    assert list(report.table.index) == ALL_CHECKS
    assert report.verdict == "ok", str(report)
    assert report.failed == []
    assert list(report.table.columns) == ["value", "threshold", "verdict", "detail", "advice"]
    assert report.relabelled and report.n_chains == 4 and report.n_draws == 1000
    # the parameters table covers weights, means, sds and the off-diagonal correlations
    params = report.parameters
    assert {"r_hat", "ess_bulk", "ess_tail", "mcse_mean"} <= set(params.columns)
    assert len(params) == 3 + 3 * 2 + 3 * 2 + 3 * 1
    assert params["r_hat"].max() == pytest.approx(report.table.loc["r_hat", "value"])
    text = str(report)
    assert text.startswith("bayesgmm diagnostics: OK") and "What to do" not in text
    assert "<table>" in report._repr_html_()


def test_too_few_draws_fails(good):
    # the first 20 draws of each chain: what the same run with draws=20 would have kept
    report = diagnose(_first_draws(good, 20))
    assert report.verdict == "fail"
    assert report.table.loc["ess_bulk", "verdict"] == "fail"
    assert report.table.loc["ess_tail", "verdict"] == "fail"
    text = str(report)
    assert "FAIL" in text and "raise draws" in text
    assert "raise draws" in report.table.loc["ess_bulk", "advice"]


def test_raw_label_switched_posterior_is_flagged(separated_fit, good):
    # put chains 1-3 of the real run in other labellings: diagnose() on the raw tree fails,
    # and says the log-likelihoods agree (permuted labels, not different modes)
    post = good["posterior"].to_dataset()
    perm = [[0, 1, 2], [2, 1, 0], [1, 0, 2], [2, 0, 1]]
    chains = [
        post.isel(chain=[c]).isel(component=p).drop_vars("component") for c, p in enumerate(perm)
    ]
    swapped = xr.concat(chains, dim="chain").assign_coords(component=[0, 1, 2])
    tree = xr.DataTree.from_dict(
        {
            "posterior": swapped,
            "sample_stats": good["sample_stats"].to_dataset(),
            "log_likelihood": good["log_likelihood"].to_dataset(),
        }
    )
    report = diagnose(tree)
    assert report.table.loc["r_hat", "verdict"] == "fail"
    assert report.table.loc["modes", "verdict"] == "fail"
    assert any("permuted labels" in n for n in report.notes)
    assert "NOT relabelled" in str(report)
    fixed, _ = relabel(tree, reference=separated_fit.em_)
    assert diagnose(fixed).verdict == "ok"


@pytest.mark.slow
def test_tune_zero_run_fails(separated_fit):
    from bayesgmm.core.config import SamplerConfig
    from bayesgmm.inference.sampling import sample_posterior

    cfg = SamplerConfig(draws=200, tune=0, chains=4, random_seed=2, progressbar=False, jitter=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = sample_posterior(separated_fit.model_, separated_fit.spec_, separated_fit.em_, cfg)
    tree, _ = relabel(idata, reference=separated_fit.em_)
    report = diagnose(tree)
    assert report.verdict == "fail", str(report)


class _Solution:
    """A hand-made EM-like solution (weights, means, covariance_matrices)."""

    def __init__(self, weights, means, covs):
        self.weights, self.means, self._covs = weights, means, covs

    def covariance_matrices(self):
        return self._covs


@pytest.mark.slow
def test_chains_in_different_modes_are_detected(separated_X):
    """Real NUTS chains of a 2-component model on 3 clusters, in two different local modes.

    Chains 0-1 start where one component covers the left and top clusters, chains 2-3
    where it covers the left cluster only: genuinely different modes, not permuted labels.
    """

    from bayesgmm import build_model, make_spec
    from bayesgmm.inference.starts import em_start

    X, spec = make_spec(separated_X, 2)
    left, top, right = X[:50], X[50:100], X[100:]

    def solution(a, b):
        return _Solution(
            np.array([len(a), len(b)]) / len(X),
            np.vstack([a.mean(0), b.mean(0)]),
            np.stack([np.cov(a.T), np.cov(b.T)]),
        )

    modes = [solution(np.vstack([left, top]), right), solution(left, np.vstack([top, right]))]
    starts = [em_start(modes[c // 2], spec) for c in range(4)]
    model = build_model(X, spec=spec)
    idata = sample_from_starts(model, starts, draws=300, tune=300, random_seed=5)
    for method in ("pivot", "stephens"):
        tree, _ = relabel(idata, method=method)
        report = diagnose(tree)
        row = report.table.loc["modes"]
        assert row["verdict"] == "fail", str(report)
        assert row["value"] > 3
        assert "different modes" in row["advice"]
        assert report.verdict == "fail"


# --------------------------------------------------------------------------- #
# checks and thresholds on synthetic draws (no sampling)
# --------------------------------------------------------------------------- #


def _synthetic(
    rng, C=4, S=500, shift_chain=None, shift=0.0, stats: dict | None = None
) -> xr.DataTree:
    means = rng.normal(size=(C, S, 2)) + np.array([0.0, 5.0])
    loglik = rng.normal(-300, 3, size=(C, S, 10))
    if shift_chain is not None:
        means[shift_chain] += shift
        loglik[shift_chain] -= shift  # total log-lik shifted by about shift sds
    groups = {
        "posterior": xr.Dataset({"means": (("chain", "draw", "component"), means)}),
        "log_likelihood": xr.Dataset({"x": (("chain", "draw", "obs"), loglik)}),
    }
    if stats is not None:
        groups["sample_stats"] = xr.Dataset({k: (("chain", "draw"), v) for k, v in stats.items()})
    return xr.DataTree.from_dict(groups)


def test_chain_in_another_mode_fails_modes_check():
    rng = np.random.default_rng(1)
    assert diagnose(_synthetic(rng)).table.loc["modes", "verdict"] == "ok"
    report = diagnose(_synthetic(rng, shift_chain=2, shift=6.0))
    row = report.table.loc["modes"]
    assert row["verdict"] == "fail" and row["value"] > 3
    assert "chain 2" in row["detail"] and "different modes" in row["advice"]
    assert report.table.loc["r_hat", "verdict"] == "fail"
    assert diagnose(_synthetic(rng, shift_chain=2, shift=0.2)).table.loc["modes", "verdict"] == (
        "ok"
    )


@pytest.mark.parametrize(
    ("n_div", "verdict"), [(0, "ok"), (5, "warn"), (19, "warn"), (20, "fail"), (200, "fail")]
)
def test_divergence_thresholds(n_div, verdict):
    rng = np.random.default_rng(2)
    div = np.zeros((4, 500), dtype=bool)
    div.flat[rng.choice(div.size, n_div, replace=False)] = True  # 20 of 2000 = 1 %
    report = diagnose(_synthetic(rng, stats={"diverging": div}))
    assert report.table.loc["divergences", "value"] == n_div
    assert report.table.loc["divergences", "verdict"] == verdict
    if verdict != "ok":
        assert "target_accept" in report.table.loc["divergences", "advice"]


@pytest.mark.parametrize(
    "names",
    [
        ("depth", "maxdepth_reached"),  # nutpie
        ("tree_depth", "reached_max_treedepth"),  # pymc
        ("tree_depth", None),  # numpyro: depth only
    ],
)
def test_tree_depth_saturation_for_every_backend(names):
    rng = np.random.default_rng(3)
    depth = np.full((4, 500), 4)
    depth[0, :100] = 10  # 100 of 2000 draws = 5 % saturated
    stats = {names[0]: depth}
    if names[1] is not None:
        stats[names[1]] = depth >= 10
    report = diagnose(_synthetic(rng, stats=stats))
    assert report.table.loc["tree_depth", "value"] == pytest.approx(0.05)
    assert report.table.loc["tree_depth", "verdict"] == "warn"


def test_e_bfmi_flags_a_sticky_energy():
    rng = np.random.default_rng(4)
    ok = diagnose(_synthetic(rng, stats={"energy": rng.normal(size=(4, 500))}))
    assert ok.table.loc["e_bfmi", "verdict"] == "ok"
    sticky = np.cumsum(rng.normal(size=(4, 500)), axis=1)  # random walk: BFMI near 0
    bad = diagnose(_synthetic(rng, stats={"energy": sticky}))
    assert bad.table.loc["e_bfmi", "value"] < 0.2
    assert bad.table.loc["e_bfmi", "verdict"] == "fail"


def test_single_chain_cannot_check_convergence():
    rng = np.random.default_rng(5)
    report = diagnose(_synthetic(rng, C=1, S=800))
    assert report.table.loc["r_hat", "verdict"] == "warn"
    assert "2 chains" in report.table.loc["r_hat", "detail"]
    assert "modes" not in report.table.index


def test_report_table_is_a_dataframe_and_verdict_is_the_worst():
    rng = np.random.default_rng(6)
    div = np.zeros((4, 500), dtype=bool)
    div[0, 0] = True
    report = diagnose(_synthetic(rng, stats={"diverging": div}))
    assert isinstance(report.table, pd.DataFrame)
    assert report.verdict == "warn" and report.failed == ["divergences"]
    assert "WARN" in str(report) and "What to do" in str(report)
    assert "warn" in repr(report)


def test_bad_input_raises_clear_errors(good):
    with pytest.raises(ConfigError, match="not in the posterior"):
        diagnose(good, var_names=["nope"])
    with pytest.raises(DataError, match="posterior"):
        diagnose(xr.DataTree())
    with pytest.raises(DataError, match="posterior"):
        diagnose(good["posterior"].to_dataset())


# --------------------------------------------------------------------------- #
# plots
# --------------------------------------------------------------------------- #


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 10_000


def test_trace_plot_renders_png(good, tmp_path):
    fig = plot_trace(good)
    fig.savefig(tmp_path / "trace.png")
    _assert_png(tmp_path / "trace.png")
    # default selection: weights, means, sds and correlations
    titles = {ax.get_title().split("[")[0].split(":")[0] for ax in fig.axes}
    assert titles == {"weights", "means", "sds", "correlation"}
    fig = plot_trace(good, ["weights"], kind="trace", group="posterior_raw")
    assert [ax.get_title() for ax in fig.axes] == ["weights: trace"]
    fig.savefig(tmp_path / "trace_raw.png")
    _assert_png(tmp_path / "trace_raw.png")
    plt.close("all")


def test_rank_plot_renders_png(good, tmp_path):
    pc = plot_rank(good, "weights")
    pc.savefig(tmp_path / "rank.png")
    _assert_png(tmp_path / "rank.png")
    plt.close("all")


def test_plots_reject_bad_arguments(good):
    with pytest.raises(ConfigError, match="not in 'posterior'"):
        plot_trace(good, ["nope"])
    with pytest.raises(ConfigError, match="unknown kind"):
        plot_trace(good, kind="violin")
    with pytest.raises(ConfigError, match="unknown kind"):
        plot_rank(good, kind="violin")
    with pytest.raises(DataError, match="group"):
        plot_rank(good, group="prior")


def test_tied_family_variables_without_component_dim():
    # tied: sds (feature,) and correlation (feature, feature_bis); only the strictly lower
    # triangle of the correlation is checked (the diagonal is constant, the rest mirrored)
    rng = np.random.default_rng(8)
    C, S, D = 4, 300, 3
    corr = np.broadcast_to(np.eye(D), (C, S, D, D)).copy()
    for (a, b), m in zip([(1, 0), (2, 0), (2, 1)], [0.3, 0.0, -0.3], strict=True):
        corr[..., a, b] = corr[..., b, a] = rng.normal(m, 0.05, (C, S))
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), rng.dirichlet([5, 5], (C, S))),
            "sds": (("chain", "draw", "feature"), rng.uniform(1, 2, (C, S, D))),
            "correlation": (("chain", "draw", "feature", "feature_bis"), corr),
        },
        coords={"feature": list("abc"), "feature_bis": list("abc")},
    )
    report = diagnose(xr.DataTree.from_dict({"posterior": post}))
    assert report.parameters.index.tolist() == [
        "weights[0]",
        "weights[1]",
        "sds[a]",
        "sds[b]",
        "sds[c]",
        "correlation[b, a]",
        "correlation[c, a]",
        "correlation[c, b]",
    ]
    assert report.table.loc["r_hat", "verdict"] == "ok"
    assert any("not relabelled" in n for n in report.notes)
