"""Command-line options and the messages about them: bad numbers refused by the parser,
naming the option, before anything is read, printed or fitted; messages and help texts
that name only the options the command has."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
from test_cli import _expect_user_error, _help, _run, _spec

from bayesgmm.cli import main
from bayesgmm.cli.specs import ModelSpec
from bayesgmm.exceptions import DataError


@pytest.fixture
def csv(tmp_path):
    """Two classes of 30 points, two of them with a missing value."""
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(0.0, 1.0, (30, 2)), rng.normal(5.0, 1.0, (30, 2))])
    df = pd.DataFrame(X, columns=["a", "b"]).assign(kind=np.repeat(["p", "q"], 30))
    df.loc[[4, 40], "b"] = np.nan
    df.to_csv(tmp_path / "d.csv", index=False)
    return tmp_path / "d.csv"


BAD = [
    (["--max-time", "0"], "--max-time"),
    (["--max-time", "-5"], "--max-time"),
    (["--max-time", "nan"], "--max-time"),
    (["--draws", "0"], "--draws"),
    (["--tune", "-1"], "--tune"),
    (["--chains", "0"], "--chains"),
    (["--seed", "-1"], "--seed"),
    (["--target-ess", "-3"], "--target-ess"),
    (["--draws", "many"], "--draws"),
]


CASES = [
    pytest.param(command, bad, option, id=f"{command} {' '.join(bad)}")
    for command in ("fit", "run", "demo", "classify")
    for bad, option in BAD
    if command != "classify" or option not in ("--max-time", "--target-ess")  # no rounds
]


@pytest.mark.parametrize(("command", "bad", "option"), CASES)
def test_bad_option_values_are_refused_before_anything_runs(
    command, bad, option, csv, tmp_path, capsys
):
    out = tmp_path / "o"
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'[data]\npath = "{csv}"\ncolumns = ["a", "b"]\nmissing = "drop"\n[model]\ncomponents = 2\n'
    )
    head = {  # every other argument valid: these commands would fit
        "fit": ["fit", csv, "-k", "2", "--columns", "a,b", "--missing", "drop"],
        "run": ["run", spec],
        "demo": ["demo"],
        "classify": ["classify", csv, "--class", "kind", "--missing", "drop"],
    }[command]
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in [*head, "--out", out, *bad]])
    stdout, err = capsys.readouterr()
    assert info.value.code == 2 and stdout == ""  # no plan printed, nothing fitted
    assert f"argument {option}" in err and "must be" in err and "[sampler]" not in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["fit", "demo"])
def test_zero_components_names_the_option(command, csv, capsys):
    argv = {"fit": ["fit", str(csv), "-k", "0"], "demo": ["demo", "-k", "0"]}[command]
    with pytest.raises(SystemExit):
        main(argv)
    stdout, err = capsys.readouterr()
    assert stdout == "" and "argument --components/-k: must be an integer >= 1; got 0" in err


def test_max_time_on_the_command_line_is_kept_as_given():
    from bayesgmm.cli.main import _with_targets
    from bayesgmm.core.config import SamplerConfig

    own = SamplerConfig(nuts_sampler="pymc", target_ess=50, max_time=600.0)
    for target in (None, 80):  # the spec's own target, or the option's
        args = argparse.Namespace(target_ess=target, max_time=5.0)
        assert _with_targets(own, args).max_time == 5.0


def test_a_repeated_column_is_named_as_repeated(csv, tmp_path, capsys):
    argv = ["fit", csv, "-k", "2", "--columns", "a,a", "--out", tmp_path / "o"]
    _expect_user_error(argv, capsys, "['a']", "more than once", "--columns a")
    _, err = capsys.readouterr()
    assert "not numeric" not in err
    spec = ModelSpec.from_dict(_spec(data={"path": str(csv), "columns": ["b", "a", "b"]}))
    with pytest.raises(DataError, match=r'more than once.*columns = \["b", "a"\] in \[data\]'):
        spec.load_data()


def test_columns_that_name_no_column_are_refused(csv, tmp_path, capsys):
    for command in (["fit", csv, "-k", "2"], ["classify", csv, "--class", "kind"]):
        argv = [*command, "--columns", " , ", "--out", tmp_path / "o"]
        _expect_user_error(argv, capsys, "--columns names no column")
    assert not (tmp_path / "o").exists()


def test_missing_values_suggest_only_the_options_of_the_command(csv, tmp_path, capsys):
    argv = ["fit", csv, "-k", "2", "--columns", "a,b", "--out", tmp_path / "o"]
    _expect_user_error(argv, capsys, "--missing drop", "--missing marginalize")
    code, _, err = _run(["classify", csv, "--class", "kind", "--out", tmp_path / "c"], capsys)
    assert code == 2 and "2 of 60 rows" in err and "--missing drop" in err
    assert "marginalize" not in err and "[data]" not in err
    spec = ModelSpec.from_dict(_spec(data={"path": str(csv), "columns": ["a", "b"]}))
    with pytest.raises(DataError, match=r'set missing = "drop" in \[data\] to drop them') as info:
        spec.load_data()
    assert "--missing" not in str(info.value)


def test_classify_drops_rows_with_missing_values_when_asked(csv, tmp_path, capsys):
    out = tmp_path / "c"
    argv = ["classify", csv, "--class", "kind", "--missing", "drop", "--folds", "0",
            "--out", out, "--draws", "60", "--tune", "60", "--chains", "2", "--quiet"]  # fmt: skip
    code, _, err = _run(argv, capsys)
    assert code == 0, err
    text = (out / "classification.txt").read_text()
    assert "dropped 2 of 60 rows" in text and "classes: p (29), q (29)" in text


def test_classify_help_names_only_its_own_options(capsys):
    text = _help(["classify"], capsys)
    assert "--strict" not in text and "FAIL" not in text
    assert "--missing {error,drop}" in text
