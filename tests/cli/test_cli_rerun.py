"""A K sweep none of whose fits passes its diagnostics: the comparison it writes is the
report directory's own (a rerun into the directory works), it never sits beside (or
replaces) an earlier report there, and a file of the user's is never overwritten."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_cli import SMALL, _run

from bayesgmm.analysis.report import RECORD_FILE


@pytest.fixture
def sweep(tmp_path):
    """A small two-cluster CSV and a spec comparing K = 1, 2 on it."""
    rng = np.random.default_rng(8)
    X = np.vstack([rng.normal([0.0, 0.0], 1.0, (30, 2)), rng.normal([6.0, 6.0], 1.0, (30, 2))])
    pd.DataFrame(X, columns=["a", "b"]).to_csv(tmp_path / "d.csv", index=False)
    spec = tmp_path / "sweep.toml"
    spec.write_text(f'[data]\npath = "{tmp_path / "d.csv"}"\n[model]\ncomponents = [1, 2]\n')
    return tmp_path / "d.csv", spec


def _failing_sweep(monkeypatch, meanwhile=None) -> list:
    """Replace the sweep by one whose every fit failed its diagnostics (nothing ranked);
    ``meanwhile()`` runs during it. Returns the list of its calls."""
    import bayesgmm.workflows.selection as selection

    calls = []

    def fake(X, components, **kwargs):
        calls.append(components)
        if meanwhile is not None:
            meanwhile()
        table = pd.DataFrame(
            {"elpd": np.nan, "ranked": False, "diagnostics": "fail", "diagnostics_reason": "r_hat"},
            index=pd.Index(components, name="K"),
        )
        return selection.LOOComparison(table=table, fits={}, loo={})

    monkeypatch.setattr(selection, "loo_compare", fake)
    return calls


def _files(out) -> list[str]:
    return sorted(p.name for p in out.iterdir())


def test_a_failed_sweep_can_be_rerun_into_its_directory(sweep, tmp_path, capsys, monkeypatch):
    data, spec = sweep
    out = tmp_path / "o"
    calls = _failing_sweep(monkeypatch)
    for _ in range(2):  # as the message advises: rerun (e.g. with more draws) into DIR
        code, _, err = _run(["run", spec, "--out", out, *SMALL], capsys)
        assert code == 2 and "refusing" not in err, err
        assert f"the comparison is in {out / 'selection.csv'}." in err
        assert _files(out) == [RECORD_FILE, "selection.csv"]
        assert pd.read_csv(out / "selection.csv", index_col="K").index.tolist() == [1, 2]
    assert len(calls) == 2
    # a report into the directory replaces the comparison, which is not of its fit
    code, _, err = _run(["fit", data, "-k", "2", "--out", out, *SMALL], capsys)
    assert code == 0, err
    assert (out / "report.html").is_file() and not (out / "selection.csv").exists()
    # a failed sweep after it leaves that report as it was and prints the comparison
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    code, _, err = _run(["run", spec, "--out", out, *SMALL], capsys)
    assert code == 2 and "holds an earlier report, of another run, left as it was" in err, err
    assert "diagnostics_reason" in err  # the comparison, in the message
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert not (out / "selection.csv").exists() and (out / "model").is_dir()


def test_a_failed_sweep_never_overwrites_a_selection_csv_of_the_users(
    sweep, tmp_path, capsys, monkeypatch
):
    _, spec = sweep
    out = tmp_path / "o"
    out.mkdir()
    (out / "selection.csv").write_text("mine\n")
    calls = _failing_sweep(monkeypatch)
    code, _, err = _run(["run", spec, "--out", out, *SMALL], capsys)
    assert code == 2 and "refusing" in err and "selection.csv" in err
    assert calls == []  # refused before fitting
    assert (out / "selection.csv").read_text() == "mine\n"


def test_a_file_of_the_users_that_appears_during_the_sweep_is_left_alone(
    sweep, tmp_path, capsys, monkeypatch
):
    _, spec = sweep
    out = tmp_path / "o"

    def appear():
        out.mkdir()
        (out / "selection.csv").write_text("mine\n")

    _failing_sweep(monkeypatch, meanwhile=appear)
    code, _, err = _run(["run", spec, "--out", out, *SMALL], capsys)
    assert code == 2 and "no fit passed the sampling diagnostics" in err
    assert "Nothing was written" in err and "refusing" in err
    assert (out / "selection.csv").read_text() == "mine\n"
    assert _files(out) == ["selection.csv"]
