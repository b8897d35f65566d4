"""The report (report.html and its files): scrolling tables, one labelled interval (94% HDI),
the same assignments.csv layout for every fit, the clusters against known labels, and a
recorded seed that reruns the fit.

Three reports are written here (iris with labels; Old Faithful over the iris report, which
removes the labels files; a tiny command-line run), shared by module-scoped fixtures.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from bayesgmm.analysis.report import (
    FIGURES,
    OPTIONAL_FILES,
    RECORD_FILE,
    REPORT_FILES,
    ReportFigure,
    compare_labels,
    write_report,
)
from bayesgmm.cli import main
from bayesgmm.cli.specs import ModelSpec
from bayesgmm.core.agreement import adjusted_rand_index, contingency
from bayesgmm.core.config import SamplerConfig, available_samplers, resolve_seed
from bayesgmm.exceptions import ConfigError, DataError

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


class _Page(HTMLParser):
    """Every <table>: whether it sits inside a class="scroll" container, and its header."""

    VOID = ("img", "br", "hr", "meta", "link", "input")

    def __init__(self):
        super().__init__()
        self.stack: list[str] = []
        self.tables: list[dict] = []
        self._in_th = False

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        if tag == "table":
            scroll = any("scroll" in c.split() for c in self.stack)
            self.tables.append({"scroll": scroll, "header": []})
        self._in_th = tag == "th" and bool(self.tables)
        self.stack.append(" ".join(classes))

    def handle_endtag(self, tag):
        self._in_th = False
        if self.stack:
            self.stack.pop()

    def handle_data(self, data):
        if self._in_th and data.strip():
            self.tables[-1]["header"].append(data.strip())


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def iris_species():
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    return pd.Series(iris.target_names[iris.target], name="species")


@pytest.fixture(scope="module")
def iris_report(iris_fit, iris_species, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "iris"
    write_report(iris_fit, out, labels=iris_species)
    return out


@pytest.fixture(scope="module")
def faithful_report(faithful_fit, iris_report, tmp_path_factory):
    """Old Faithful's report (no ``data``, as the demo writes it), written over a copy of
    the iris report: its labels files, which this report does not write, go."""
    out = tmp_path_factory.mktemp("report") / "faithful"
    shutil.copytree(iris_report, out)
    write_report(faithful_fit, out)
    return out


def _page(out) -> str:
    return (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("which", ["faithful_report", "iris_report"])
def test_every_table_scrolls_inside_the_page(which, request):
    out = request.getfixturevalue(which)
    tables = _parse(_page(out)).tables
    assert len(tables) >= 3 and all(t["scroll"] for t in tables), tables


@pytest.mark.parametrize("which", ["faithful_report", "iris_report"])
def test_intervals_are_94_percent_hdis_and_say_so(which, request):
    out = request.getfixturevalue(which)
    page = _page(out)
    headers = [t["header"] for t in _parse(page).tables]
    summary = next(h for h in headers if "ess_bulk" in h)
    assert {"hdi94_lb", "hdi94_ub"} <= set(summary)
    assign = next(h for h in headers if "uncertainty" in h)
    assert {"prob_0_hdi94_lower", "prob_0_hdi94_upper"} <= set(assign)
    assert not any(c.endswith(("_lower", "_upper")) and "hdi94" not in c for c in assign)
    assert page.count("94% HDI") >= 3 and "eti89" not in page and "89%" not in page
    csv = pd.read_csv(out / "summary.csv", index_col=0)
    assert {"hdi94_lb", "hdi94_ub"} <= set(csv.columns)
    assert "hdi94_lb" in (out / "summary.txt").read_text()
    rows = pd.read_csv(out / "assignments.csv")
    assert {"prob_1_hdi94_lower", "prob_1_hdi94_upper"} <= set(rows.columns)
    lo, hi = rows["prob_1_hdi94_lower"], rows["prob_1_hdi94_upper"]
    assert (lo >= 0).all() and (lo <= hi).all() and (hi <= 1).all()


def test_assignments_have_the_same_layout_in_every_report(faithful_report, iris_report):
    faithful = pd.read_csv(faithful_report / "assignments.csv")
    iris = pd.read_csv(iris_report / "assignments.csv")
    assert list(faithful.columns[:4]) == ["obs", "row", "eruptions", "waiting"]
    assert list(iris.columns[:7]) == ["obs", "row", *FEATURES, "species"]
    # then the same columns, in the same order (K=2 and K=3)
    rest_f, rest_i = list(faithful.columns[4:]), list(iris.columns[7:])
    assert rest_f[:5] == rest_i[:5] == [
        "cluster", "max_prob", "uncertainty", "entropy", "mean_draw_entropy",
    ]  # fmt: skip
    assert rest_f == [c for c in rest_i if not c.startswith("prob_2")]
    # the data columns are the training data, rows numbered from 0
    from bayesgmm import load_faithful

    np.testing.assert_allclose(faithful[["eruptions", "waiting"]], load_faithful(), rtol=1e-12)
    assert faithful["row"].tolist() == list(range(272))


@pytest.mark.parametrize("which", ["faithful_report", "iris_report"])
def test_the_page_states_the_seed_and_the_load_api(which, request):
    out = request.getfixturevalue(which)
    fit = request.getfixturevalue(which.replace("_report", "_fit"))
    page = _page(out)
    seed = fit.sampler_config_.random_seed
    assert f"random_seed {seed} (sampler={{&#x27;random_seed&#x27;: {seed}}} reruns" in page
    assert "random_seed None" not in page
    assert 'bayesgmm.load("model")' in page and "BayesianGMM.load" not in page


def test_the_clusters_are_compared_with_known_labels(iris_report, iris_species):
    from sklearn.metrics import adjusted_rand_score

    assign = pd.read_csv(iris_report / "assignments.csv")
    assert (assign["species"] == iris_species).all()
    table = pd.read_csv(iris_report / "labels.csv", index_col="cluster")
    assert table.index.tolist() == [0, 1, 2]
    assert set(table.columns) == {"setosa", "versicolor", "virginica"}
    assert table.to_numpy().sum() == 150 and (table.sum(axis=0) == 50).all()
    expected = adjusted_rand_score(iris_species, assign["cluster"])
    first = (iris_report / "labels.txt").read_text().splitlines()[0]
    assert first.startswith("adjusted Rand index of the clusters against 'species': ")
    assert f"{expected:.3f}" in first and "(150 points)" in first
    page = _page(iris_report)
    assert "Clusters against species" in page and f"{expected:.3f}" in page
    record = json.loads((iris_report / RECORD_FILE).read_text())["files"]
    assert {"labels.csv", "labels.txt"} <= set(record)


def test_a_report_without_labels_removes_an_earlier_reports_labels(faithful_report):
    for name in OPTIONAL_FILES:
        assert not (faithful_report / name).exists(), name
    record = json.loads((faithful_report / RECORD_FILE).read_text())["files"]
    assert set(record) == set(REPORT_FILES)
    assert "Clusters against" not in _page(faithful_report)


def test_figures_are_one_table_entry_each(faithful_report):
    assert all(isinstance(f, ReportFigure) for f in FIGURES)
    names = [f.name for f in FIGURES]
    expected = {"pairs.png", "uncertainty.png", "coclustering.png", "ppc.png", "loo_pit.png"}
    assert expected | {"trace.png"} <= set(names) <= set(REPORT_FILES)
    page = _page(faithful_report)
    assert page.count("data:image/png;base64,") == len(FIGURES)
    for figure in FIGURES:
        assert f"<h2>{figure.title}</h2>" in page
        assert (faithful_report / figure.name).read_bytes()[:4] == b"\x89PNG"


def test_compare_labels_keeps_empty_clusters_and_leaves_missing_labels_out():
    labels = pd.Series(["a", "a", "b", None, "b"], name="kind")
    got = compare_labels(np.array([0, 0, 2, 2, 2]), labels, 3)
    assert got.table.index.tolist() == [0, 1, 2] and got.table.columns.tolist() == ["a", "b"]
    assert got.table.to_numpy().tolist() == [[2, 0], [0, 0], [0, 2]]
    assert got.ari == 1.0 and got.n_points == 4 and got.n_missing == 1
    assert "1 without a label left out" in got.text()


def test_adjusted_rand_index_matches_scikit_learn():
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(17)
    for n in (1, 2, 3, 10, 200):
        for _ in range(6):
            a, b = rng.integers(0, 4, n), rng.integers(0, 3, n)
            assert adjusted_rand_index(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    names = np.array(["x", "y", "z"])[rng.integers(0, 3, 50)]
    clusters = rng.integers(0, 3, 50)
    assert adjusted_rand_index(clusters, names) == pytest.approx(
        adjusted_rand_score(clusters, names), abs=1e-12
    )
    same = rng.integers(0, 5, 40)
    assert adjusted_rand_index(same, (same + 2) % 5) == 1.0  # the names do not matter
    assert adjusted_rand_index(np.arange(5), np.arange(5)) == 1.0  # all singletons
    table, rows, cols = contingency([1, 1, 0], ["b", "a", "a"])  # rows: a, columns: b
    assert table.tolist() == [[1, 0], [1, 1]] and rows.tolist() == [0, 1]
    assert cols.tolist() == ["a", "b"]
    with pytest.raises(DataError, match="same points"):
        adjusted_rand_index([0, 1], [0, 1, 1])


def test_a_missing_seed_is_drawn_once_and_a_given_one_kept():
    assert resolve_seed(SamplerConfig(random_seed=7)).random_seed == 7
    drawn = {resolve_seed(SamplerConfig()).random_seed for _ in range(5)}
    assert len(drawn) > 1 and all(isinstance(s, int) and s >= 0 for s in drawn)
    SamplerConfig(random_seed=drawn.pop()).validate()  # a valid seed setting


# --------------------------------------------------------------------------- #
# Model specs: the label column
# --------------------------------------------------------------------------- #


def _spec(tmp_path, **data):
    pd.DataFrame(
        {"a": [0.0, 0.1, np.nan, 5.0], "b": [1.0, 1.2, 1.1, 6.0], "kind": ["x", "x", "y", "y"]}
    ).to_csv(tmp_path / "d.csv", index=False)
    d = {"data": {"path": str(tmp_path / "d.csv"), "missing": "drop", **data}}
    return ModelSpec.from_dict({**d, "model": {"components": 2}})


def test_a_spec_label_column_is_read_aligned_and_not_fitted(tmp_path):
    loaded = _spec(tmp_path, labels="kind").load_data()
    assert list(loaded.X.columns) == ["a", "b"]  # every column but the labels
    assert (
        loaded.labels.tolist() == ["x", "x", "y"] and (loaded.labels.index == loaded.X.index).all()
    )
    assert any("labels: column 'kind'" in n for n in loaded.notes)
    assert _spec(tmp_path, columns=["a", "b"]).load_data().labels is None


@pytest.mark.parametrize(
    ("data", "error", "needle"),
    [
        ({"labels": "kind", "columns": ["a", "kind"]}, ConfigError, "also in data.columns"),
        ({"labels": 3}, ConfigError, "'data.labels' = 3"),
        ({"labels": "nope"}, DataError, "label column 'nope'"),
    ],
)
def test_a_bad_label_column_is_refused(tmp_path, data, error, needle):
    with pytest.raises(error, match=needle):
        _spec(tmp_path, **data).load_data()


def test_the_bundled_penguins_spec_compares_with_species():
    from pathlib import Path

    from bayesgmm.cli.specs import load_spec

    spec = load_spec(Path(__file__).parents[2] / "models" / "penguins.toml")
    assert spec.data.labels == "species"
    loaded = spec.load_data()
    assert loaded.labels.nunique() == 3 and len(loaded.labels) == len(loaded.X) == 342


# --------------------------------------------------------------------------- #
# The command line: labels on the console, and the recorded seed reruns the fit
# --------------------------------------------------------------------------- #

BACKEND = ["--sampler", "numpyro"] if "numpyro" in available_samplers() else []
# faithful_fit's settings: its compiled sampler serves this run (a new length would recompile)
TINY = ["--draws", "200", "--tune", "300", "--chains", "2", "--target-ess", "0", "--quiet"]


def test_a_run_prints_the_ari_and_its_recorded_seed_reruns_the_fit(tmp_path, capsys):
    from sklearn.metrics import adjusted_rand_score

    from bayesgmm import BayesianGMM, load, load_faithful

    # Old Faithful (the structure faithful_fit compiled already) with a label column
    df = load_faithful().assign(kind=lambda d: np.where(d["waiting"] > 68, "long", "short"))
    df.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "s.toml").write_text(
        f'[data]\npath = "{tmp_path / "d.csv"}"\nlabels = "kind"\n[model]\ncomponents = 2\n'
    )
    out = tmp_path / "o"
    code = main(["run", str(tmp_path / "s.toml"), "--out", str(out), *TINY, *BACKEND])  # no seed
    stdout = capsys.readouterr().out
    assert code == 0
    line = next(x for x in stdout.splitlines() if x.startswith("adjusted Rand index"))
    ari = adjusted_rand_score(df["kind"], pd.read_csv(out / "assignments.csv")["cluster"])
    assert line.endswith(f"against 'kind': {ari:.3f} (272 points)")
    saved = load(out / "model")
    seed = saved.sampler_config_.random_seed
    assert isinstance(seed, int)
    page = _page(out)
    assert f"random_seed {seed} (none was given: drawn at random and recorded" in page
    # rerun from Python with the recorded settings: the same posterior, draw for draw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = BayesianGMM(2, sampler=saved.sampler_config_.to_dict()).fit(
            df[["eruptions", "waiting"]]
        )
    for name in ("weights", "means", "sds", "correlation"):
        np.testing.assert_array_equal(again.posterior[name], saved.posterior[name])


def test_a_figure_that_cannot_be_drawn_is_named_with_the_reason(
    faithful_fit, faithful_report, tmp_path, monkeypatch
):
    # LOO-PIT needs a few draws per point's tail (PSIS): a fit of 3 draws cannot have it,
    # and the report must still be written, saying which figure is missing and why
    import bayesgmm.analysis.report as report

    def boom(g, seed):
        raise ValueError("n_draws_tail must be at least 5")

    figures = tuple(replace(f, draw=boom) if f.name == "loo_pit.png" else f for f in report.FIGURES)
    monkeypatch.setattr(report, "FIGURES", figures)
    out = tmp_path / "again"
    shutil.copytree(faithful_report, out)  # an earlier report's loo_pit.png is there
    write_report(faithful_fit, out)
    page = _page(out)
    assert "Not drawn: ValueError: n_draws_tail must be at least 5" in page
    assert page.count("data:image/png;base64,") == len(FIGURES) - 1
    assert not (out / "loo_pit.png").exists() and (out / "trace.png").is_file()
    assert "loo_pit.png" not in json.loads((out / RECORD_FILE).read_text())["files"]


def test_the_posterior_predictive_is_drawn_once_per_report(faithful_fit, tmp_path, monkeypatch):
    # the PPC and the LOO-PIT figures both need replicated datasets: one set, made once
    # (on a copy of the tree: the fit's own tree and the saved model get none)
    import bayesgmm.analysis.ppc as ppc
    import bayesgmm.analysis.report as report

    calls = []
    replicate = ppc.replicate
    monkeypatch.setattr(ppc, "replicate", lambda *a, **k: calls.append(1) or replicate(*a, **k))
    needed = [f for f in report.FIGURES if f.name in ("ppc.png", "loo_pit.png")]
    monkeypatch.setattr(report, "FIGURES", tuple(needed))
    out = tmp_path / "pp"
    write_report(faithful_fit, out, random_seed=1)
    assert len(needed) == 2 and len(calls) == 1
    assert (out / "ppc.png").is_file() and (out / "loo_pit.png").is_file()
    assert "posterior_predictive" not in faithful_fit.idata_.children
