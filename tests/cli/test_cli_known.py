"""The command line with a column of known components (a semi-supervised fit)."""

from __future__ import annotations

import html

import numpy as np
import pandas as pd
import pytest
from test_cli import SMALL, _run, _spec

import bayesgmm.core.em
from bayesgmm.cli.specs import DataSpec, ModelSpec
from bayesgmm.cli.tables import read_data
from bayesgmm.estimator.estimator import load
from bayesgmm.exceptions import ConfigError, DataError


@pytest.fixture
def known_csv(tmp_path):
    rng = np.random.default_rng(4)
    X = np.vstack([rng.normal([0.0, 0.0], 1.0, (30, 2)), rng.normal([5.0, 5.0], 1.0, (30, 2))])
    known = np.full(60, np.nan)
    known[[0, 1, 2]], known[[30, 31]] = 1, 0  # the numbering is the user's, not EM's
    df = pd.DataFrame(X, columns=["a", "b"]).assign(group=known)
    df.to_csv(tmp_path / "known.csv", index=False)
    return tmp_path / "known.csv", df


def test_fit_with_a_column_of_known_components(known_csv, tmp_path, capsys):
    path, df = known_csv
    out = tmp_path / "k"
    argv = ["fit", path, "-k", "2", "--known", "group", "--out", out, "--target-ess", "0",
            *SMALL]  # fmt: skip
    code, _, _ = _run(argv, capsys)
    assert code in (0, 1)
    gmm = load(out / "model")
    assert gmm.feature_names_in_ == ["a", "b"]  # the known column is not fitted
    labels = gmm.idata_["constant_data"]["labels"].to_numpy()
    np.testing.assert_array_equal(labels, df["group"].fillna(-1).to_numpy())
    # component 1 is the cluster around (0, 0), as the labels say
    means = gmm.idata_["posterior"]["means"].mean(("chain", "draw")).to_numpy()
    assert means[1].sum() < means[0].sum()
    assert (gmm.predict(df[["a", "b"]].to_numpy())[:30] == 1).mean() > 0.9
    page = html.unescape((out / "report.html").read_text())
    assert "known: column 'group' gives the components of 5 of 60 rows" in page
    assert "Known components: 5 of 60 points were labelled (2 in component 0, 3 in" in page


def test_bad_known_columns_are_one_line_errors(known_csv, tmp_path, capsys):
    path, df = known_csv
    for column, needle in (("nope", "not in"),):
        code, _, err = _run(["fit", path, "-k", "2", "--known", column, "--out", tmp_path / "x",
                             *SMALL], capsys)  # fmt: skip
        assert code == 2 and needle in err
    df.loc[4, "group"] = 2  # K = 2: components 0 and 1 only
    df.to_csv(path, index=False)
    code, _, err = _run(["fit", path, "-k", "2", "--known", "group", "--out", tmp_path / "y",
                         *SMALL], capsys)  # fmt: skip
    assert code == 2 and "component numbers 0..1 or -1; row 4 is 2" in err
    df["group"] = df["group"].astype(object)
    df.loc[4, "group"] = "setosa"
    df.to_csv(path, index=False)
    spec = ModelSpec.from_dict(_spec(data={"path": str(path), "known": "group"}))
    with pytest.raises(DataError, match=r"must hold component numbers .* row 4 is 'setosa'"):
        spec.load_data()
    with pytest.raises(ConfigError, match=r"'data.known' = 'a' is also in data.columns"):
        ModelSpec.from_dict(_spec(data={"path": "x.csv", "columns": ["a", "b"], "known": "a"}))


def test_classify_writes_cross_validation_predictions_and_the_classifier(tmp_path, capsys):
    from sklearn.datasets import load_iris

    from bayesgmm import BayesianGMMClassifier

    iris = load_iris(as_frame=True)
    df = iris.frame.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    df["species"] = np.array(iris.target_names)[iris.target]
    df.drop(columns="target").to_csv(tmp_path / "iris.csv", index=False)
    df.drop(columns=["target", "species"]).head(5).to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "c"
    argv = ["classify", tmp_path / "iris.csv", "--class", "species", "--covariance", "EEE",
            "--folds", "3", "--predict", tmp_path / "new.csv", "--out", out, "--draws", "100",
            "--tune", "100", "--chains", "2", "--seed", "1", "--quiet"]  # fmt: skip
    code, stdout, _ = _run(argv, capsys)
    assert code == 0 and "3-fold cross-validation: error" in stdout
    text = (out / "classification.txt").read_text()
    assert "classes: setosa (50), versicolor (50), virginica (50)" in text
    assert "covariance 'EEE'" in text and "(se " in text
    pred = pd.read_csv(out / "predictions.csv")
    assert len(pred) == 5 and (pred["class"] == "setosa").all()
    assert {"prob_setosa", "prob_setosa_hdi94_lower"} <= set(pred.columns)
    assert len(pd.read_csv(out / "cv_folds.csv")) == 3
    back = BayesianGMMClassifier.load(out / "classifier")
    assert back.covariance_type_ == "EEE"
    assert list(back.classes_) == ["setosa", "versicolor", "virginica"]
    # a file of the user's in the way: refused before fitting, and left alone
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "predictions.csv").write_text("mine")
    code, _, err = _run(["classify", tmp_path / "iris.csv", "--class", "species", "--out",
                         tmp_path / "d", "--quiet"], capsys)  # fmt: skip
    assert code == 2 and "predictions.csv" in err
    assert (tmp_path / "d" / "predictions.csv").read_text() == "mine"


def test_fit_with_a_background_noise_component(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal([0.0, 0.0], 1.0, (40, 2)), rng.normal([6.0, 6.0], 1.0, (40, 2)),
                   rng.uniform(-12.0, 18.0, (8, 2))])  # fmt: skip
    guess = np.r_[np.zeros(80, bool), np.ones(8, bool)]
    frame = pd.DataFrame(X, columns=["a", "b"])
    frame.assign(outlier=np.where(guess, "yes", "")).to_csv(tmp_path / "noisy.csv", index=False)
    out = tmp_path / "n"
    seen = []
    em = bayesgmm.core.em.fit_em_checked

    def em_spy(*args, **kwargs):
        seen.append(kwargs["noise_init"])
        return em(*args, **kwargs)

    monkeypatch.setattr(bayesgmm.core.em, "fit_em_checked", em_spy)
    argv = ["fit", tmp_path / "noisy.csv", "-k", "2", "--noise", "--noise-init", "outlier",
            "--out", out, "--target-ess", "0", *SMALL]  # fmt: skip
    code, _, _ = _run(argv, capsys)
    assert code in (0, 1)
    assert len(seen) == 1 and (seen[0] == guess).all()  # EM started from the column's guess
    gmm = load(out / "model")
    assert gmm.noise is True and "noise_weight" in gmm.posterior
    assert gmm.feature_names_in_ == ["a", "b"]  # the guesses are not fitted
    assign = pd.read_csv(out / "assignments.csv")
    assert "prob_noise" in assign.columns and (assign["cluster"] == -1).sum() >= 4
    page = html.unescape((out / "report.html").read_text())
    assert "noise_init: column 'outlier' guesses 8 of 88 rows" in page
    volume = np.prod(X.max(axis=0) - X.min(axis=0))  # the bounding box's
    assert f"Background noise: a uniform component of density 1/V, V = {volume:.4g}" in page
    assert "Not drawn" not in page
    # a spec's [model] noise: true, a volume, or a clear error
    spec = ModelSpec.from_dict(_spec(model={"components": 2, "noise": 900.0}))
    assert spec.noise == 900.0
    with pytest.raises(ConfigError, match=r"model\.noise"):
        ModelSpec.from_dict(_spec(model={"components": 2, "noise": -1}))


@pytest.mark.slow
def test_a_spec_compares_ks_each_with_the_background(tmp_path, capsys):
    """components = [1, 2] with noise = true: every K's fit has the same background, the
    table says so, and the chosen fit's far points are the background's."""
    rng = np.random.default_rng(5)
    X = np.vstack([rng.normal([0.0, 0.0], 1.0, (40, 2)), rng.normal([6.0, 6.0], 1.0, (40, 2)),
                   rng.uniform(-12.0, 18.0, (8, 2))])  # fmt: skip
    pd.DataFrame(X, columns=["a", "b"]).to_csv(tmp_path / "noisy.csv", index=False)
    spec = tmp_path / "noisy.toml"
    spec.write_text(f'[data]\npath = "{tmp_path / "noisy.csv"}"\n'
                    "[model]\ncomponents = [1, 2]\nnoise = true\n")  # fmt: skip
    out = tmp_path / "o"
    settings = ["--draws", "300", "--tune", "300", *SMALL[4:]]  # enough for a verdict
    code, stdout, err = _run(["run", spec, "--out", out, "--target-ess", "0", *settings], capsys)
    assert code in (0, 1), err
    assert "chosen K = " in stdout
    table = pd.read_csv(out / "selection.csv", index_col="K")
    assert list(table.index) == [1, 2] and table["elpd"].notna().all()
    gmm = load(out / "model")
    assert gmm.noise is True and "noise_weight" in gmm.posterior
    page = html.unescape((out / "report.html").read_text())
    assert "Every K with the same background-noise component" in page
    assert "Every fit had the same background-noise component." in page
    assign = pd.read_csv(out / "assignments.csv")
    far = (np.linalg.norm(X[:, None] - np.array([[0.0, 0.0], [6.0, 6.0]]), axis=-1) > 7).all(1)
    assert far.sum() >= 3 and (assign["cluster"][far] == -1).all()


def test_a_spec_passes_its_background_to_the_comparison(tmp_path, capsys, monkeypatch):
    """The sweep's arguments, without fitting (the fits: the slow test above)."""
    import bayesgmm.workflows.selection as selection

    seen = {}

    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise DataError("stop here")

    monkeypatch.setattr(selection, "loo_compare", fake)
    spec = tmp_path / "noisy.toml"
    spec.write_text('[data]\npath = "bundled:faithful"\n'
                    "[model]\ncomponents = [1, 2]\nnoise = 900.0\n")  # fmt: skip
    code, _, err = _run(["run", spec, "--out", tmp_path / "o", *SMALL], capsys)
    assert code == 2 and "stop here" in err
    assert seen["noise"] == 900.0


def test_a_classifier_spec_runs_as_classify(tmp_path, capsys):
    from test_cli import MODELS

    from bayesgmm.cli.specs import load_spec

    species = load_spec(MODELS / "penguins_species.toml")
    assert species.classifier["class"] == "species" and species.components == []
    rng = np.random.default_rng(6)
    X = np.vstack([rng.normal(0.0, 1.0, (25, 2)), rng.normal(4.0, 1.0, (25, 2))])
    df = pd.DataFrame(X, columns=["a", "b"]).assign(kind=np.repeat(["p", "q"], 25))
    df.to_csv(tmp_path / "two.csv", index=False)
    (tmp_path / "two.toml").write_text(
        '[data]\npath = "two.csv"\n[classifier]\nclass = "kind"\ncovariance = "EII"\n'
        "folds = 2\n[sampler]\ndraws = 60\ntune = 60\nchains = 2\nrandom_seed = 1\n"
    )
    code, stdout, _ = _run(["run", tmp_path / "two.toml", "--out", tmp_path / "c", "--quiet"],
                           capsys)  # fmt: skip
    assert code == 0 and "2-fold cross-validation: error" in stdout
    assert "classes: p (25), q (25)" in (tmp_path / "c" / "classification.txt").read_text()
    with pytest.raises(ConfigError, match=r"\[model\] .* or \[classifier\]"):
        ModelSpec.from_dict(_spec(classifier={"class": "kind"}))
    with pytest.raises(ConfigError, match=r"'classifier.folds' = 1"):
        ModelSpec.from_dict({"data": {"path": "x.csv"}, "classifier": {"class": "k", "folds": 1}})


def test_a_column_of_noise_guesses_is_read_and_checked(tmp_path, capsys):
    df = pd.DataFrame({"a": [0.0, 1.0, 2.0, 9.0], "b": [0.0, 1.0, 0.5, 9.0],
                       "g": ["false", "", "No", "TRUE"], "n": [0, 0, None, 1],
                       "bad": ["no", "maybe", "no", "yes"]})  # fmt: skip
    path = tmp_path / "g.csv"
    df.to_csv(path, index=False)
    for column in ("g", "n"):
        data = read_data(DataSpec(path=str(path), columns=["a", "b"], noise_init=column))
        assert data.noise_init.tolist() == [False, False, False, True]
        assert any(note.startswith(f"noise_init: column {column!r}") for note in data.notes)
    with pytest.raises(DataError, match="row 1 is 'maybe'"):
        read_data(DataSpec(path=str(path), columns=["a", "b"], noise_init="bad"))
    with pytest.raises(DataError, match=r"'nope'.*not in"):
        read_data(DataSpec(path=str(path), columns=["a", "b"], noise_init="nope"))
    # a spec: the column needs a background, and is not one of the fitted columns
    data = {"path": str(path), "columns": ["a", "b"], "noise_init": "g"}
    with pytest.raises(ConfigError, match="needs one"):
        ModelSpec.from_dict({"data": data, "model": {"components": 1}})
    with pytest.raises(ConfigError, match=r"also in data\.columns"):
        ModelSpec.from_dict({"data": {**data, "columns": ["a", "g"]},
                             "model": {"components": 1, "noise": True}})  # fmt: skip
    spec = ModelSpec.from_dict({"data": data, "model": {"components": 1, "noise": True}})
    assert spec.data.noise_init == "g"
    # the command line: --noise-init without --noise is refused before reading anything
    code, _, err = _run(["fit", path, "-k", "1", "--noise-init", "g", "--out",
                         tmp_path / "o"], capsys)  # fmt: skip
    assert code == 2 and "add --noise" in err
    assert not (tmp_path / "o").exists()
