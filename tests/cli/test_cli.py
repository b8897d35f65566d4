"""The command line end to end (fit, run, demo on small settings), the files of the
report, exit codes and one-line messages on bad input, and model-spec validation."""

from __future__ import annotations

import html
import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayesgmm.analysis.report import FIGURES, REPORT_FILES
from bayesgmm.cli import main
from bayesgmm.cli.specs import ModelSpec, load_spec
from bayesgmm.core.config import available_samplers
from bayesgmm.estimator.estimator import load
from bayesgmm.exceptions import ConfigError, DataError

# NumPyro compiles this small model several times faster than nutpie's numba backend here
BACKEND = ["--sampler", "numpyro"] if "numpyro" in available_samplers() else []
SMALL = ["--draws", "60", "--tune", "60", "--chains", "2", "--seed", "1", "--quiet", *BACKEND]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MODELS = Path(__file__).parents[2] / "models"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A small two-cluster CSV with one missing value and one text column."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(11)
    X = np.vstack([rng.normal([0.0, 0.0], 1.0, (40, 2)), rng.normal([7.0, 7.0], 1.0, (40, 2))])
    df = pd.DataFrame(X, columns=["a", "b"])
    df["label"] = ["x"] * 40 + ["y"] * 40
    df.loc[5, "a"] = np.nan
    df.to_csv(d / "small.csv", index=False)
    return d


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _check_report(out_dir, n_rows, columns):
    for name in REPORT_FILES:
        assert (out_dir / name).is_file(), name
    for name in (f.name for f in FIGURES):
        data = (out_dir / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE, name
        assert len(data) > 20_000, name  # a real figure, not an empty canvas
        import matplotlib.image as mpimg

        img = mpimg.imread(out_dir / name)
        assert img.ndim == 3 and min(img.shape[:2]) > 200
        assert float(np.std(img[..., :3])) > 0.02  # not a blank image
    summary = pd.read_csv(out_dir / "summary.csv", index_col=0)
    assert {"mean", "sd", "r_hat", "ess_bulk"} <= set(summary.columns)
    assert any(i.startswith("weights[") for i in summary.index)
    diag = pd.read_csv(out_dir / "diagnostics.csv", index_col=0)
    assert set(diag["verdict"]) <= {"ok", "warn", "fail"}
    assert "r_hat" in diag.index and "divergences" in diag.index
    assert (out_dir / "diagnostics.txt").read_text().startswith("bayesgmm diagnostics:")
    assign = pd.read_csv(out_dir / "assignments.csv")
    assert len(assign) == n_rows
    assert {*columns, "cluster", "max_prob", "uncertainty", "prob_0", "prob_1"} <= set(assign)
    probs = assign[["prob_0", "prob_1"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert np.allclose(assign["uncertainty"], 1.0 - assign["max_prob"])
    page = (out_dir / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(FIGURES) and "Posterior summary" in page
    return assign


@pytest.fixture(scope="module")
def fit_out(data_dir):
    out = data_dir / "fit_report"
    argv = ["fit", data_dir / "small.csv", "--components", "2", "--columns", "a,b"]
    code = main([str(a) for a in [*argv, "--missing", "drop", "--out", out, *SMALL]])
    assert code == 0
    return out


def test_fit_writes_the_full_report(fit_out):
    assign = _check_report(fit_out, 79, ["a", "b"])
    # the row with a missing value (row 5) was dropped and the others keep their numbers
    assert 5 not in set(assign["row"]) and assign["row"].max() == 79
    # the two clusters are recovered: each true group maps to one cluster
    first = assign.loc[assign["row"] < 40, "cluster"]
    second = assign.loc[assign["row"] >= 40, "cluster"]
    assert first.nunique() == 1 and second.nunique() == 1 and first.iloc[0] != second.iloc[0]
    page = (fit_out / "report.html").read_text()
    assert "dropped 1 of 80 rows" in page and "rows 5," in page


def test_report_model_loads_in_a_fresh_process_with_identical_predictions(fit_out, tmp_path):
    gmm = load(fit_out / "model")
    X = np.random.default_rng(3).normal(3.0, 4.0, size=(25, 2))
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from bayesgmm.estimator.estimator import load
        g = load({str(fit_out / "model")!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "p.npy")!r}, g.predict_proba(X))
        np.save({str(tmp_path / "s.npy")!r}, g.score_samples(X))
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "p.npy"), gmm.predict_proba(X))
    assert np.array_equal(np.load(tmp_path / "s.npy"), gmm.score_samples(X))
    # the saved model is the reported one: its assignments are the CSV's
    assign = pd.read_csv(fit_out / "assignments.csv")
    assert np.array_equal(gmm.assignments()["cluster"].to_numpy(), assign["cluster"].to_numpy())


def test_run_with_a_spec_file(data_dir, capsys):
    spec = data_dir / "spec.toml"
    spec.write_text(
        textwrap.dedent(
            """
            name = "small"
            description = "two blobs"
            [data]
            path = "small.csv"          # relative to this file
            columns = ["a", "b"]
            missing = "drop"
            [model]
            components = 2
            covariance = "diag"
            [priors.weights]
            a = 2.0
            [sampler]
            draws = 500                 # overridden by --draws
            """
        )
    )
    out = data_dir / "run_report"
    code, stdout, _ = _run(["run", spec, "--out", out, *SMALL], capsys)
    assert code == 0
    assert "report written to" in stdout
    _check_report(out, 79, ["a", "b"])
    gmm = load(out / "model")
    assert gmm.spec_.covariance_type == "diag"
    assert np.array_equal(gmm.spec_.priors.weights_a, [2.0, 2.0])
    # --draws 60 overrides the spec's 500: the CLI draws rounds of 60 until its ESS target
    post = gmm.idata_["posterior"]
    assert post.sizes["draw"] == 60 * post.attrs["rounds"]
    assert "two blobs" in (out / "report.html").read_text()


def test_demo_writes_the_report(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, _ = _run(["demo", "--out", out, *SMALL], capsys)
    assert code == 0
    assert "Old Faithful" in stdout and "Posterior summary" in stdout
    assert "Relabelling: relabel(stephens" in stdout and "[ok  ] divergences" in stdout
    assert stdout.count("bayesgmm diagnostics:") == 1  # printed once, not again after the report
    _check_report(out, 272, [])
    assert load(out / "model").feature_names_in_ == ["eruptions", "waiting"]


# --------------------------------------------------------------------------- #
# Bad input: exit code 2 and one line on stderr, no traceback, nothing fitted
# --------------------------------------------------------------------------- #


def _expect_user_error(argv, capsys, *needles):
    code, _, err = _run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bayesgmm: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_missing_data_file(tmp_path, capsys):
    argv = ["fit", tmp_path / "nope.csv", "-k", "2", "--out", tmp_path / "o", *SMALL]
    _expect_user_error(argv, capsys, "nope.csv", "not found")
    assert not (tmp_path / "o").exists()


def test_bad_column(data_dir, tmp_path, capsys):
    argv = ["fit", data_dir / "small.csv", "-k", "2", "--columns", "a", "zz", "--out", tmp_path]
    _expect_user_error(argv, capsys, "'zz'", "available")


def test_non_numeric_column(data_dir, tmp_path, capsys):
    argv = ["fit", data_dir / "small.csv", "-k", "2", "--columns", "a,label", "--out", tmp_path]
    _expect_user_error(argv, capsys, "'label'", "not numeric")


def test_missing_values_without_drop(data_dir, tmp_path, capsys):
    argv = ["fit", data_dir / "small.csv", "-k", "2", "--columns", "a", "b", "--out", tmp_path]
    _expect_user_error(argv, capsys, "1 of 80 rows", "rows 5", "drop")


def test_missing_spec_file(tmp_path, capsys):
    _expect_user_error(["run", tmp_path / "no.toml", "--out", tmp_path], capsys, "no.toml")


def test_spec_with_unknown_key(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\npath = "x.csv"\n[model]\ncomponents = 2\ncovarance = "full"\n')
    _expect_user_error(
        ["run", spec, "--out", tmp_path / "o"], capsys, "'model.covarance'", "covariance"
    )


def test_spec_with_wrong_type(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('[data]\npath = "x.csv"\n[model]\ncomponents = "two"\n')
    _expect_user_error(
        ["run", spec, "--out", tmp_path / "o"], capsys, "'model.components'", "integer"
    )


def test_spec_that_is_not_toml(tmp_path, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text("[data\npath = 1\n")
    _expect_user_error(["run", spec, "--out", tmp_path / "o"], capsys, "not valid TOML")


def test_bad_prior_is_a_one_line_user_error(data_dir, tmp_path, capsys):
    spec = data_dir / "badprior.toml"
    spec.write_text(
        '[data]\npath = "small.csv"\ncolumns = ["a", "b"]\nmissing = "drop"\n'
        "[model]\ncomponents = 2\n[priors.sds]\nsigma = -1.0\n"
    )
    _expect_user_error(["run", spec, "--out", tmp_path / "o", *SMALL], capsys, "sds.sigma", "> 0")


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "x.csv", "--out", "o"])  # --components missing
    assert info.value.code == 2
    assert "--components" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["fit"], ["run"], ["demo"], ["classify"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: bayesgmm" in capsys.readouterr().out


def test_installed_entry_point_reports_bad_path_in_one_line(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "bayesgmm.cli", "run", str(tmp_path / "missing.toml"), "--out",
         str(tmp_path)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "missing.toml" in res.stderr
    assert "Traceback" not in res.stderr


# --------------------------------------------------------------------------- #
# Model specs
# --------------------------------------------------------------------------- #


def test_bundled_specs_are_valid():
    faithful = load_spec(MODELS / "faithful.toml")
    assert faithful.components == [2] and faithful.covariance == "full"
    assert faithful.load_data().X.shape == (272, 2)
    penguins = load_spec(MODELS / "penguins.toml")
    assert penguins.data.missing == "drop" and len(penguins.components) > 1
    data = penguins.load_data()
    # penguins rows 3 and 271 have no measurements; they are dropped and reported
    assert data.X.shape == (342, 4) and data.dropped == [3, 271] and data.n_rows == 344
    assert any("dropped 2 of 344 rows" in n and "3, 271" in n for n in data.notes)
    penguins.sampler_config()  # the sampler table is valid


def _spec(**over):
    d = {"data": {"path": "bundled:faithful"}, "model": {"components": 2}}
    for key, value in over.items():
        table, _, name = key.partition("__")
        if name:
            d.setdefault(table, {})[name] = value
        else:
            d[table] = value
    return d


@pytest.mark.parametrize(
    ("over", "needles"),
    [
        ({"model__covariance": "dense"}, ["'model.covariance'", "'full'", "'spherical'"]),
        ({"model__components": 0}, ["'model.components'", ">= 1"]),
        ({"model__components": [2, 2]}, ["'model.components'", "distinct"]),
        ({"model__components": True}, ["'model.components'"]),
        ({"data__missing": "ignore"}, ["'data.missing'", "'drop'"]),
        ({"data__columns": "a,b"}, ["'data.columns'", "list"]),
        ({"data__colums": ["a"]}, ["unknown key 'data.colums'", "columns"]),
        ({"modle": {}}, ["unknown key 'modle'", "model"]),
        ({"priors__weight": {"a": 1.0}}, ["'priors.weight'", "weights"]),
        ({"priors__means": 3.0}, ["'priors.means'", "table"]),
        ({"sampler__draw": 10}, ["draw", "valid"]),
        ({"sampler__chains": "4"}, ["chains", "integer"]),
        ({"em__tol": -1.0}, ["'em.tol'", "> 0"]),
        ({"name": 3}, ["'name'", "string"]),
    ],
)
def test_spec_validation_names_the_key_and_what_is_allowed(over, needles):
    with pytest.raises(ConfigError) as info:
        ModelSpec.from_dict(_spec(**over), source="t.toml")
    msg = str(info.value)
    assert msg.startswith("invalid model spec t.toml")
    for needle in needles:
        assert needle in msg, (needle, msg)


def test_spec_reports_every_problem_at_once():
    d = _spec(model__covariance="dense", data__missing="skip", extra=1)
    del d["data"]["path"]
    with pytest.raises(ConfigError) as info:
        ModelSpec.from_dict(d)
    msg = str(info.value)
    for needle in ("'model.covariance'", "'data.missing'", "'extra'", "'data.path'"):
        assert needle in msg


def test_unknown_bundled_data_set():
    spec = ModelSpec.from_dict(_spec(data={"path": "bundled:iris"}))
    with pytest.raises(ConfigError, match="faithful"):
        spec.load_data()


def test_missing_values_are_an_error_unless_dropped():
    spec = ModelSpec.from_dict(_spec(data={"path": "bundled:penguins", "columns": ["body_mass_g"]}))
    with pytest.raises(DataError, match=r"2 of 344 rows .*rows 3, 271"):
        spec.load_data()


def test_spec_round_trips_through_json_types():
    spec = ModelSpec.from_dict(json.loads(json.dumps(_spec(model={"components": [1, 3]}))))
    assert spec.components == [1, 3]


def test_the_cli_draws_until_its_ess_target_by_default():
    import argparse

    pytest.importorskip("numpyro")

    from bayesgmm.cli.main import MAX_TIME, _with_targets
    from bayesgmm.core.config import SamplerConfig

    args = argparse.Namespace(target_ess=None, max_time=None)
    numpyro = SamplerConfig(nuts_sampler="numpyro", chains=3)
    cfg = _with_targets(numpyro, args)
    assert (cfg.target_ess, cfg.max_time) == (300, MAX_TIME)
    off = _with_targets(numpyro, argparse.Namespace(target_ess=0, max_time=None))
    assert off.target_ess is None
    own = _with_targets(SamplerConfig(nuts_sampler="numpyro", target_ess=50), args)
    assert own.target_ess == 50  # a spec's own target is kept
    pymc = _with_targets(SamplerConfig(nuts_sampler="pymc"), args)
    assert pymc.target_ess is None  # other backends draw exactly `draws`


def test_python_dash_m_runs_the_command_line():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "bayesgmm", "--help"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: bayesgmm" in proc.stdout


def test_one_feature_data_gets_the_whole_report(tmp_path, capsys):
    # a one-column CSV (e.g. galaxy velocities) used to fit, then exit 2 at the cluster plot
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(10, 1, 30), rng.normal(20, 2, 50)])
    (tmp_path / "one.csv").write_text("velocity\n" + "\n".join(f"{v:.3f}" for v in x) + "\n")
    code, _, err = _run(
        ["fit", tmp_path / "one.csv", "-k", "2", "--out", tmp_path / "o", *SMALL], capsys
    )
    assert code == 0, err
    _check_report(tmp_path / "o", 80, ["velocity"])


def test_every_report_table_scrolls_inside_the_page(fit_out):
    from html.parser import HTMLParser

    class Tables(HTMLParser):
        def __init__(self):
            super().__init__()
            self.stack, self.tables = [], []

        def handle_starttag(self, tag, attrs):
            if tag in ("img", "br", "hr", "meta", "link", "input"):
                return  # void elements have no end tag
            if tag == "table":
                self.tables.append("scroll" in (dict(attrs).get("class") or "").split()
                                   or any("scroll" in c for c in self.stack))  # fmt: skip
            self.stack.append(dict(attrs).get("class") or "")

        def handle_endtag(self, tag):
            if self.stack:
                self.stack.pop()

    page = (fit_out / "report.html").read_text()
    parser = Tables()
    parser.feed(page)
    assert len(parser.tables) >= 3 and all(parser.tables), parser.tables
    assert ".scroll{max-width:100%;overflow-x:auto}" in page  # the container scrolls sideways


def test_the_chosen_k_is_printed_on_the_console(data_dir, tmp_path, capsys):
    spec = tmp_path / "k.toml"
    spec.write_text(
        f'[data]\npath = "{data_dir / "small.csv"}"\ncolumns = ["a", "b"]\nmissing = "drop"\n'
        '[model]\ncomponents = [1, 2]\ncovariance = "diag"\n'
    )
    code, stdout, err = _run(["run", spec, "--out", tmp_path / "o", *SMALL], capsys)
    assert code == 0, err
    line = next(x for x in stdout.splitlines() if x.startswith("chosen K ="))
    assert line.startswith("chosen K = 2:") and "K = 1, 2" in line


# --------------------------------------------------------------------------- #
# Help texts, --out defaults and progress output
# --------------------------------------------------------------------------- #


def _help(argv, capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_texts_say_what_each_command_does(capsys):
    top = _help([], capsys)
    demo_entry = top.split("\n    demo")[1].split("options:")[0]
    assert "write" in demo_entry and "report" in demo_entry  # not only a printed summary
    assert "report" in _help(["demo"], capsys).split("options:")[0]
    fit = _help(["fit"], capsys)
    assert "spec" not in fit.lower()  # fit has no model spec
    assert "spec's [sampler] table" in _help(["run"], capsys)


def test_help_lists_only_installed_samplers(capsys, monkeypatch):
    import re

    import bayesgmm.core.config as config

    for command in (["fit"], ["run"], ["demo"]):
        text = _help(command, capsys)
        choices = re.search(r"--sampler \{([^}]*)\}", text).group(1).split(",")
        assert choices == ["auto", *available_samplers()], command
        assert ("blackjax" in text) == ("blackjax" in available_samplers())
    monkeypatch.setattr(config, "available_samplers", lambda: ["pymc"])
    text = _help(["fit"], capsys)
    assert "--sampler {auto,pymc}" in text and "blackjax" not in text and "nutpie" not in text
    with pytest.raises(SystemExit) as info:
        main(["demo", "--sampler", "blackjax"])
    assert info.value.code == 2 and "invalid choice: 'blackjax'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "default"),
    [
        (["fit", "data.csv", "-k", "2"], "out/data"),
        (["run", "spec.toml"], "out/blobs"),
        (["demo"], "out/demo"),
    ],
)
def test_every_command_writes_to_out_name_by_default(argv, default, tmp_path, monkeypatch, capsys):
    # the default report directory holds a file of the user's: every command refuses it
    # (before reading the data or fitting), which shows the default it chose
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.csv").write_text("a,b\n1,2\n3,4\n")
    (tmp_path / "spec.toml").write_text('name = "blobs"\n[data]\npath = "data.csv"\n[model]\n'
                                         "components = 2\n")  # fmt: skip
    (tmp_path / default).mkdir(parents=True)
    (tmp_path / default / "summary.csv").write_text("the user's own file\n")
    assert default in _help(argv[:1], capsys).replace("NAME", default.split("/")[1])
    _expect_user_error(argv, capsys, f"refusing to write the report to {default}")
    assert (tmp_path / default / "summary.csv").read_text() == "the user's own file\n"


def test_an_empty_out_is_no_report_for_demo_only(data_dir, capsys):
    argv = ["fit", data_dir / "small.csv", "-k", "2", "--out", ""]
    _expect_user_error(argv, capsys, "--out ''")


def test_plain_progress_lines_when_stderr_is_not_a_terminal():
    from bayesgmm._logging import PlainProgress

    lines: list[str] = []
    bar = PlainProgress(800, "NUTS[numpyro]", detail="4 chains", write=lines.append)
    for _ in range(16):
        bar.update(50)
    bar.total = 1200  # another round of draws
    bar.set_description("NUTS[numpyro] round 2", refresh=False)
    bar.refresh()
    for _ in range(8):
        bar.update(50)
    bar.close()
    assert lines[0].startswith("NUTS[numpyro]: 12% (100/800 steps, 4 chains), ")
    assert lines[0].endswith(" s")
    assert [line.split(":")[1].split("%")[0].strip() for line in lines] == [
        "12", "25", "31", "43", "50", "62", "75", "81", "93", "100", "70", "83", "91", "100",
    ]  # fmt: skip
    assert not any("\r" in line for line in lines)
    assert lines[9].startswith("NUTS[numpyro]: ") and lines[10].startswith(
        "NUTS[numpyro] round 2: "
    )


def test_a_terminal_gets_a_tqdm_bar_sized_even_when_it_reports_zero(monkeypatch):
    import io

    from bayesgmm import _logging

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.setattr(_logging, "_terminal_size", lambda: (80, 24))
    bar = _logging.progress_bar(100, "NUTS[numpyro]", detail="2 chains")
    bar.update(100)
    bar.close()
    text = sys.stderr.getvalue()
    assert "\r" in text and "100/100" in text and "2 chains" in text


def test_the_bar_says_cached_only_when_the_compiled_sampler_is_reused(capsys, caplog):
    """Two tiny fits of one structure (23 points, K=1, D=1: no other test has it) in one
    process: the first compiles ("compiling" first, no "cached"), the second reuses it. The
    captured stderr is not a terminal: plain lines (logged), no carriage returns."""
    import logging

    pytest.importorskip("numpyro")
    from bayesgmm.estimator.estimator import BayesianGMM

    X = np.random.default_rng(5).normal(size=(23, 1))
    sampler = {"draws": 20, "tune": 20, "chains": 1, "random_seed": 1, "nuts_sampler": "numpyro",
               "progressbar": True}  # fmt: skip
    logs = []
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="bayesgmm"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 20 draws are too few for the diagnostics
            BayesianGMM(1, "spherical", sampler=sampler).fit(X)
        logs.append("\n".join(r.getMessage() for r in caplog.records))
        assert "\r" not in capsys.readouterr().err  # no tqdm bar either
    first, second = logs
    assert "\r" not in first + second
    assert "NUTS[numpyro]: 100% (50/50 steps, 1 chain), " in first and "cached" not in first
    assert first.index("compiling the NUTS sampler") < first.index("compiled in")
    assert first.index("compiled in") < first.index("NUTS[numpyro]:")  # bar after compiling
    assert "NUTS[numpyro, cached]: 100% (" in second and "compil" not in second


def test_relabel_description_counts_iterations_in_the_singular_and_plural():
    from bayesgmm.core.relabel import RelabelInfo

    perms = np.zeros((1, 3, 2), dtype=int)
    one = RelabelInfo("stephens", perms, np.array([0]), n_iter=1, n_points=5)
    assert "stephens; 1 iteration, converged" in str(one)
    assert "2 iterations" in str(RelabelInfo("stephens", perms, np.array([0]), n_iter=2))


def test_fit_with_an_mclust_family_writes_the_report(data_dir, tmp_path, capsys):
    out = tmp_path / "vev"
    argv = ["fit", data_dir / "small.csv", "-k", "2", "--columns", "a,b", "--missing", "drop",
            "--covariance", "VEV", "--out", out, "--target-ess", "0", *SMALL]  # fmt: skip
    code, stdout, _ = _run(argv, capsys)
    assert code in (0, 1), stdout
    assert (out / "report.html").is_file() and (out / "pairs.png").is_file()
    gmm = load(out / "model")
    assert gmm.covariance_type == "VEV"
    page = html.unescape((out / "report.html").read_text())
    assert "covariance 'VEV' (mclust VEV: volume varying, shape equal, orientation varying)" in page


def test_a_spec_takes_mclusts_families_and_the_shape_prior():
    spec = ModelSpec.from_dict(_spec(model__covariance="EVE", priors={"shape": {"sigma": 0.5}}))
    assert spec.covariance == "EVE" and spec.priors == {"shape": {"sigma": 0.5}}
    with pytest.raises(ConfigError, match=r"'priors.shap'.*'shape'"):
        ModelSpec.from_dict(_spec(model__covariance="EVE", priors={"shap": {"sigma": 0.5}}))


def test_fit_with_a_weight_column(tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal([0.0, 0.0], 1.0, (30, 2)), rng.normal([6.0, 6.0], 1.0, (30, 2))])
    df = pd.DataFrame(X, columns=["a", "b"]).assign(n=rng.integers(1, 4, 60))
    df.to_csv(tmp_path / "counts.csv", index=False)
    out = tmp_path / "w"
    argv = ["fit", tmp_path / "counts.csv", "-k", "2", "--weights", "n", "--out", out,
            "--target-ess", "0", *SMALL]  # fmt: skip
    code, _, _ = _run(argv, capsys)
    assert code in (0, 1)
    gmm = load(out / "model")
    assert gmm.feature_names_in_ == ["a", "b"]  # the weight column is not fitted
    np.testing.assert_array_equal(gmm.idata_["constant_data"]["sample_weight"], df["n"])
    page = (out / "report.html").read_text()
    assert "weights: column &#x27;n&#x27; as frequency weights" in page
    assert "Not drawn: DataError: LOO-PIT is not available for a fit with sample_weight" in page
    # a weight column that is not there, or not numeric: one line, exit 2
    for bad in ("m", "a b"):
        code, _, err = _run(["fit", tmp_path / "counts.csv", "-k", "2", "--weights", bad, "--out",
                             tmp_path / "x", *SMALL], capsys)  # fmt: skip
        assert code == 2 and "weight column" in err


def test_a_spec_rejects_weights_that_are_also_fitted():
    with pytest.raises(ConfigError, match=r"'data.weights' = 'waiting' is also in data.columns"):
        ModelSpec.from_dict(
            _spec(
                data={
                    "path": "bundled:faithful",
                    "columns": ["eruptions", "waiting"],
                    "weights": "waiting",
                }
            )
        )


def test_fit_with_missing_values_marginalized(data_dir, tmp_path, capsys):
    out = tmp_path / "m"
    argv = ["fit", data_dir / "small.csv", "-k", "2", "--columns", "a,b", "--missing",
            "marginalize", "--out", out, "--target-ess", "0", *SMALL]  # fmt: skip
    code, _, _ = _run(argv, capsys)
    assert code in (0, 1)
    gmm = load(out / "model")
    X = gmm.state_.idata["observed_data"]["x"].shape
    assert X == (80, 2)  # the row with a missing value is kept
    filled, lo, hi = gmm.impute(return_intervals=True, random_seed=0)
    assert lo[5, 0] < filled[5, 0] < hi[5, 0] and not np.isnan(filled).any()
    assert filled[5, 0] < 3.5  # row 5 is in the cluster around (0, 0)
    page = html.unescape((out / "report.html").read_text())
    assert "1 of 160 values missing, in 1 rows (columns ['a']), marginalised" in page
    assert "Not drawn: DataError: LOO-PIT is not available for a fit with missing values" in page
    assert page.count("Not drawn") == 2  # every other figure is drawn, the pairs plot too
    assert (out / "pairs.png").is_file() and (out / "uncertainty.png").is_file()


def test_a_spec_marginalizes_missing_values_and_drops_empty_rows(tmp_path):
    df = pd.DataFrame({"a": [1.0, np.nan, np.nan, 4.0, 2.0], "b": [1.0, 2.0, np.nan, 3.0, 5.0]})
    df.to_csv(tmp_path / "m.csv", index=False)
    spec = ModelSpec.from_dict(_spec(data={"path": str(tmp_path / "m.csv"),
                                           "missing": "marginalize"}))  # fmt: skip
    data = spec.load_data()
    assert data.dropped == [2] and data.X.shape == (4, 2) and np.isnan(data.X.loc[1, "a"])
    assert any("Dropped 1 row(s) with every value missing (rows 2" in n for n in data.notes)
    df.loc[0, "b"] = np.inf
    df.to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(DataError, match=r"infinite value\(s\) .*row 0, column 'b'"):
        spec.load_data()


def test_fit_with_columns_of_standard_errors(tmp_path, capsys):
    rng = np.random.default_rng(5)
    true = np.vstack([rng.normal([0.0, 0.0], 0.7, (40, 2)), rng.normal([6.0, 3.0], 0.7, (40, 2))])
    sd = rng.uniform(0.2, 1.0, size=true.shape)
    df = pd.DataFrame(true + rng.normal(size=true.shape) * sd, columns=["a", "b"])
    df = df.assign(sd_a=sd[:, 0], sd_b=sd[:, 1])
    df.to_csv(tmp_path / "noisy.csv", index=False)
    out = tmp_path / "e"
    argv = ["fit", tmp_path / "noisy.csv", "-k", "2", "--errors", "sd_a,sd_b", "--out", out,
            "--target-ess", "0", *SMALL]  # fmt: skip
    code, _, _ = _run(argv, capsys)
    assert code in (0, 1)
    gmm = load(out / "model")
    assert gmm.feature_names_in_ == ["a", "b"]  # the error columns are not fitted
    np.testing.assert_allclose(gmm.idata_["constant_data"]["noise_cov"].to_numpy()[:, 1, 1],
                               sd[:, 1] ** 2)  # fmt: skip
    page = html.unescape((out / "report.html").read_text())
    assert "errors: standard errors sd_a of a, sd_b of b; the mixture is deconvolved" in page
    assert "ellipses and component densities are those of the true values" in page
    df.loc[3, "sd_b"] = -1.0
    df.to_csv(tmp_path / "noisy.csv", index=False)
    data = {"path": str(tmp_path / "noisy.csv"), "columns": ["a", "b"], "errors": ["sd_a", "sd_b"]}
    spec = ModelSpec.from_dict(_spec(data=data))
    with pytest.raises(DataError, match=r"negative or non-finite values .*first: row 3"):
        spec.load_data()
    with pytest.raises(ConfigError, match=r"'data.errors' \['a'\] are also in data.columns"):
        ModelSpec.from_dict(_spec(data={"path": "x.csv", "columns": ["a", "b"], "errors": ["a"]}))
