"""One row per bad input: a clear error (type + message), never a deep traceback or NaN.

The same table is in the README's troubleshooting section.
"""

import os
import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from bayesgmm import (
    BayesianGMM,
    ConfigError,
    DataError,
    DegenerateFitError,
    NotFittedError,
    Prior,
    SamplingWarning,
    fit_em,
)
from bayesgmm.cli import main
from bayesgmm.core.draws import example_posterior as _example_posterior
from bayesgmm.core.predict import flag_anomalies, predict_proba, score_samples
from bayesgmm.exceptions import ExtraColumnsWarning

TINY = {"draws": 60, "tune": 60, "chains": 1, "random_seed": 3, "progressbar": False}


def _blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(size=(n // 2, 2)), rng.normal(size=(n // 2, 2)) + 6.0])


def _with(value, row=3, col=1):
    X = _blobs()
    X[row, col] = value
    return X


BAD_FIT_INPUTS = [
    ("NaN", _with(np.nan), {}, DataError, "NaN"),
    ("+inf", _with(np.inf), {}, DataError, "infinite"),
    ("-inf", _with(-np.inf), {}, DataError, "infinite"),
    ("1-D input", _blobs()[:, 0], {}, DataError, "reshape a single feature"),
    ("3-D input", _blobs().reshape(6, 10, 2), {}, DataError, "must be 2-D"),
    ("empty input", np.empty((0, 2)), {}, DataError, "empty"),
    (
        "fewer points than components",
        _blobs()[:3],
        {"n_components": 4},
        DataError,
        "3 points but n_components=4",
    ),
    (
        "constant column",
        np.c_[_blobs(), np.full(60, 2.5)],
        {},
        DataError,
        "constant column(s) ['feature_2']",
    ),
    (
        "non-numeric column",
        pd.DataFrame({"a": np.arange(6.0), "b": list("xyzxyz")}),
        {},
        DataError,
        "non-numeric columns ['b']",
    ),
    ("all points identical", np.ones((20, 2)), {}, DataError, "all points in X are identical"),
    (
        "unknown prior key",
        _blobs(),
        {"priors": {"mean": Prior("Normal", mu=0, sigma=1)}},
        ConfigError,
        "unknown prior 'mean'",
    ),
    (
        "unknown sampler key",
        _blobs(),
        {"sampler": {"n_draws": 10}},
        ConfigError,
        "unknown sampler setting(s) ['n_draws']",
    ),
    (
        "zero concentration",
        _blobs(),
        {"priors": {"weights": {"a": 0.0}}},
        ConfigError,
        "weights.a must be > 0",
    ),
    (
        "negative scale",
        _blobs(),
        {"priors": {"sds": {"sigma": -2.0}}},
        ConfigError,
        "sds.sigma must be > 0",
    ),
    ("n_components < 1", _blobs(), {"n_components": 0}, ConfigError, "n_components"),
    ("complex array", _blobs() + 1j, {}, DataError, "complex numbers"),
    (
        "complex DataFrame column",
        pd.DataFrame({"a": _blobs()[:, 0] + 0j, "b": _blobs()[:, 1]}),
        {},
        DataError,
        "complex-valued columns ['a']",
    ),
    (
        "complex in an object array",
        np.array([*_blobs().tolist(), [1j, 0]], dtype=object),
        {},
        DataError,
        "complex numbers",
    ),
    ("scipy sparse matrix", sparse.csr_matrix(_blobs()), {}, DataError, ".toarray()"),
    ("values >= 1e154 (variance overflows)", _blobs() * 1e155, {}, DataError, "overflows"),
    ("spread below 1e-140 (variance underflows)", _blobs() * 1e-162, {}, DataError, "underflows"),
    ("ragged nested lists", [[1.0, 2.0], [3.0]], {}, DataError, "rows have different lengths"),
    ("None", None, {}, DataError, "X is None"),
    ("numbers as text", _blobs().astype(str), {}, DataError, "holds text"),
    (
        "masked array with masked values",
        np.ma.masked_array(_blobs(), mask=np.eye(60, 2, dtype=bool)),
        {},
        DataError,
        "masked array with 2 masked values",
    ),
    (
        "'auto' where it is not available",
        _blobs(),
        {"priors": {"weights": {"a": "auto"}}},
        ConfigError,
        "weights.a cannot be 'auto'",
    ),
    (
        "unknown covariance type",
        _blobs(),
        {"covariance_type": "ful"},
        ConfigError,
        "unknown covariance_type 'ful'",
    ),
]


@pytest.mark.parametrize(
    ("X", "kwargs", "exc", "fragment"),
    [row[1:] for row in BAD_FIT_INPUTS],
    ids=[row[0] for row in BAD_FIT_INPUTS],
)
def test_bad_input_to_fit(X, kwargs, exc, fragment):
    kwargs = {"n_components": 2, "sampler": TINY, **kwargs}
    with pytest.raises(exc) as err:
        BayesianGMM(**kwargs).fit(X)
    assert fragment in str(err.value)
    # the error is raised by bayesgmm itself, not from deep inside numpy / PyMC
    assert "bayesgmm" in err.traceback[-1].path.parts


@pytest.mark.parametrize(
    ("X", "kwargs", "exc", "fragment"),
    [row[1:] for row in BAD_FIT_INPUTS if row[3] is DataError],
    ids=[row[0] for row in BAD_FIT_INPUTS if row[3] is DataError],
)
def test_bad_input_to_em(X, kwargs, exc, fragment):
    k = kwargs.get("n_components", 2)
    with pytest.raises(exc) as err:
        fit_em(X, k)
    assert fragment in str(err.value)


def test_complex_input_is_refused_at_predict_time_too(blobs_fit):
    from bayesgmm.workflows.distributed import predict_proba_dask

    Z = np.array([[0.0 + 1e-3j, 1.0], [2.0, 3.0]])
    for call in (blobs_fit.predict_proba, blobs_fit.score_samples, blobs_fit.em_.predict_proba):
        with pytest.raises(DataError, match="complex numbers"):
            call(Z)
    import dask.array as da

    with pytest.raises(DataError, match="complex numbers"):
        predict_proba_dask(blobs_fit, da.from_array(Z, chunks=1))


def test_feature_names_given_as_one_string_is_refused():
    with pytest.raises(ConfigError, match="sequence of names"):
        fit_em(_blobs(), 2, feature_names="ab")


def test_a_hopelessly_narrow_prior_gets_advice_in_the_estimators_terms():
    gmm = BayesianGMM(2, priors={"means": {"sigma": 1e-300}}, sampler=TINY)
    with pytest.raises(DegenerateFitError) as err, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gmm.fit(_blobs())
    msg = str(err.value)
    assert "EM failed" in msg and "n_components=2" in msg and "'sigma': 1e-300" in msg
    # options of fit_em, which BayesianGMM does not have, are not offered
    assert "reg_covar" not in msg and "prior='default'" not in msg


def test_one_draw_keeps_the_fit_and_says_why_diagnostics_fail():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gmm = BayesianGMM(2, sampler={**TINY, "draws": 1, "chains": 1}).fit(_blobs())
    report = gmm.diagnostics_
    assert report.verdict == "fail"
    assert report.table.loc["ess_bulk", "detail"] == "needs >= 4 draws"
    assert "Raise draws" in report.table.loc["ess_bulk", "advice"]
    assert gmm.predict_proba(_blobs()[:3]).shape == (3, 2)  # the fit is usable


def test_overparameterised_model_warns_with_remedies():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 5))
    with pytest.warns(SamplingWarning, match="parameters for 12 data points") as rec:
        BayesianGMM(2, sampler={**TINY, "draws": 10, "tune": 10}).fit(X)
    msg = next(str(w.message) for w in rec if "data points" in str(w.message))
    assert "41 parameters" in msg and "covariance_type='diag' (21)" in msg


@pytest.mark.slow
def test_fifty_dimensions_compile_and_sample_without_hanging(caplog):
    """The (60, 50) full-covariance fit of the reliability issue: it used to spend minutes
    in graph rewriting with nothing printed. Now it says it is compiling, warns that the
    model has more parameters than points, and finishes (about 40 s here)."""
    import logging

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 50))
    X[30:] += 3.0
    gmm = BayesianGMM(2, sampler={"draws": 30, "tune": 30, "chains": 1, "random_seed": 1})
    with (
        caplog.at_level(logging.INFO, logger="bayesgmm"),
        warnings.catch_warnings(record=True) as rec,
    ):
        warnings.simplefilter("always")
        gmm.fit(X)
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("compiling the NUTS sampler for K=2, D=50") for m in messages)
    assert any(m.startswith("compiled in") for m in messages)
    assert any("2,651 parameters for 60 data points" in str(w.message) for w in rec)
    assert gmm.idata_["posterior"].sizes["draw"] == 30


def test_heavy_duplication_fits_without_nan():
    """A cluster of exactly repeated values: the default prior keeps the fit finite."""
    rng = np.random.default_rng(1)
    X = np.concatenate([np.tile([[1.0, 2.0]], (40, 1)), rng.normal(size=(40, 2)) + 5.0])
    em = fit_em(X, 2, random_seed=0)
    assert np.isfinite(em.log_posterior) and np.all(np.isfinite(em.covariances))
    gmm = BayesianGMM(2, sampler=TINY).fit(X)
    for name in ("weights", "means", "covariance"):
        assert np.all(np.isfinite(gmm.idata_["posterior"][name].values))


@pytest.mark.parametrize("factor", [1e12, 1e-12])
def test_extreme_scales_fit(factor):
    """Data in huge or tiny units fits (internal standardisation), with finite output."""
    X = _blobs() * factor
    em = fit_em(X, 2, random_seed=0)
    np.testing.assert_allclose(np.sort(em.means[:, 0]) / factor, [0.0, 6.0], atol=0.6)
    gmm = BayesianGMM(2, sampler=TINY).fit(X)
    means = gmm.idata_["posterior"]["means"].mean(("chain", "draw")).values / factor
    np.testing.assert_allclose(np.sort(means[:, 0]), [0.0, 6.0], atol=0.6)


def test_use_before_fit():
    with pytest.raises(NotFittedError, match="not fitted yet"):
        BayesianGMM(2).summary()


@pytest.fixture(scope="module")
def blobs_fit():
    return BayesianGMM(2, sampler=TINY).fit(pd.DataFrame(_blobs(), columns=["a", "b"]))


BAD_PREDICT_INPUTS = [
    ("wrong number of features", np.zeros((5, 3)), "3 features, but the model was fitted on 2"),
    ("NaN in new data", np.array([[0.0, np.nan]]), "NaN"),
    ("inf in new data", np.array([[np.inf, 0.0]]), "infinite"),
    ("wrong DataFrame columns", pd.DataFrame({"a": [0.0], "c": [1.0]}), "columns ['a', 'c']"),
    ("3-D new data", np.zeros((2, 2, 2)), "must be 2-D"),
]
METHODS = ["predict_proba", "predict", "score_samples", "assignments", "flag_anomalies"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("X", "fragment"),
    [row[1:] for row in BAD_PREDICT_INPUTS],
    ids=[row[0] for row in BAD_PREDICT_INPUTS],
)
def test_bad_input_at_predict(blobs_fit, method, X, fragment):
    with pytest.raises(DataError) as err:
        getattr(blobs_fit, method)(X)
    assert fragment in str(err.value)


@pytest.mark.parametrize("method", METHODS)
def test_predict_before_fit(method):
    with pytest.raises(NotFittedError, match="call fit"):
        getattr(BayesianGMM(2), method)(_blobs())


def test_predict_messages_speak_of_predicting(blobs_fit):
    with pytest.raises(DataError, match="before predicting"):
        blobs_fit.predict_proba(np.array([[0.0, np.nan]]))


def test_dataframe_with_extra_columns_warns_naming_them(blobs_fit):
    X = pd.DataFrame(_blobs()[:5], columns=["a", "b"])
    with_extra = X.assign(id=np.arange(5), note=list("vwxyz"))
    with pytest.warns(ExtraColumnsWarning, match=r"left out: \['id', 'note'\]"):
        proba = blobs_fit.predict_proba(with_extra)
    assert np.array_equal(proba, blobs_fit.predict_proba(X))


def test_dataframe_with_integer_column_names_in_another_order():
    X = pd.DataFrame(_blobs())  # columns 0 and 1 (integers)
    gmm = BayesianGMM(2, sampler=TINY).fit(X)
    assert gmm.feature_names_in_ == ["0", "1"]
    assert np.array_equal(gmm.predict_proba(X[[1, 0]]), gmm.predict_proba(X))


def test_dask_predictions_name_the_global_row():
    import dask.array as da

    from bayesgmm.workflows.distributed import predict_proba_dask

    X = np.zeros((400, 2))
    X[150, 1] = np.nan
    lazy = predict_proba_dask(_example_posterior(), da.from_array(X, chunks=120))
    with pytest.raises(DataError, match="first at row 150, column 1"):
        lazy.compute(scheduler="synchronous")


FAR = np.array([[1e150, 0.0], [1e160, 0.0], [1e5, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("source", ["posterior", "em"])
def test_points_far_from_every_component(blobs_fit, source):
    """Farther scores lower and is flagged; memberships are their limit, never floored
    constants (they used to be [0.5, 0.5] and a score of -599.3 at 1e160)."""
    if source == "posterior":
        post = _example_posterior()
        score, proba = score_samples(post, FAR), predict_proba(post, FAR)
        train = score_samples(post, [[0.0, 0.0], [3.0, 3.0], [1.0, 1.0], [2.0, 2.0]])
    else:
        em = blobs_fit.em_
        score, proba = em.log_density(FAR), em.predict_proba(FAR)
        train = em.log_density(_blobs())
    assert score[1] < score[0] < score[2] < score[3]
    assert score[1] == -np.inf  # below the range of float64, not a floored -600
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)
    # the limit: what the memberships already are at a large but representable distance
    np.testing.assert_allclose(proba[0], proba[2], atol=1e-9)
    np.testing.assert_allclose(proba[1], proba[2], atol=1e-9)
    flags = flag_anomalies(score, train_scores=train)["is_anomaly"].tolist()
    assert flags[:3] == [True, True, True]


def test_far_points_of_a_tied_model_go_to_the_component_on_their_side():
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(size=(50, 2)), rng.normal(size=(50, 2)) + np.array([8.0, 0.0])])
    em = fit_em(X, 2, covariance_type="tied", random_seed=0)  # components sorted by mean
    p = em.predict_proba([[1e150, 0.0], [-1e150, 0.0], [1e200, 1.0]])
    np.testing.assert_allclose(p, [[0, 1], [1, 0], [0, 1]], atol=1e-12)


def test_fitted_estimator_pickles_and_predicts_identically(blobs_fit, tmp_path):
    again = pickle.loads(pickle.dumps(blobs_fit))
    X = _blobs(seed=5)
    assert np.array_equal(again.predict_proba(X), blobs_fit.predict_proba(X))
    assert {v.name for v in again.model_.free_RVs} == {v.name for v in blobs_fit.model_.free_RVs}
    (tmp_path / "gmm.pkl").write_bytes(pickle.dumps(blobs_fit))
    np.save(tmp_path / "X.npy", X)
    script = textwrap.dedent(
        f"""
        import pickle, numpy as np
        gmm = pickle.loads(open({str(tmp_path / "gmm.pkl")!r}, "rb").read())
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "p.npy")!r}, gmm.predict_proba(X))
        """
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "p.npy"), blobs_fit.predict_proba(X))


def test_predict_outputs_are_finite(blobs_fit):
    X = np.array([[0.0, 0.0], [3.0, 3.0], [6.0, 6.0], [1e3, -1e3]])
    proba = blobs_fit.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)
    assert np.all(np.isfinite(blobs_fit.score_samples(X)))


# --------------------------------------------------------------------------- #
# Command line: one line on stderr naming the problem and the fix, exit code 2
# --------------------------------------------------------------------------- #

CLI_SMALL = ["--draws", "40", "--tune", "40", "--chains", "2", "--seed", "1", "--quiet"]


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _cli_error(argv, capsys, *needles):
    code, _, err = _cli(argv, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("bayesgmm: error: "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def _csv(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_cli_every_row_dropped(tmp_path, capsys):
    data = _csv(tmp_path / "emptycol.csv", "a,b\n1,\n2,\n3,\n")
    argv = ["fit", data, "-k", "2", "--missing", "drop", "--out", tmp_path / "o"]
    _cli_error(argv, capsys, "every one of the 3 rows", "['b']", "--columns a")


def test_cli_header_only_csv(tmp_path, capsys):
    data = _csv(tmp_path / "header.csv", "a,b\n")
    _cli_error(["fit", data, "-k", "2", "--out", tmp_path / "o"], capsys, "no data rows")


def test_cli_data_path_is_a_directory(tmp_path, capsys):
    argv = ["fit", tmp_path, "-k", "2", "--out", tmp_path / "o"]
    _cli_error(argv, capsys, "is a directory, not a CSV file")


def test_cli_out_is_an_existing_file(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", "a,b\n1,2\n3,4\n5,7\n")
    (tmp_path / "afile").write_text("mine")
    _cli_error(["fit", data, "-k", "2", "--out", tmp_path / "afile"], capsys, "is a file")
    _cli_error(["fit", data, "-k", "2", "--out", tmp_path / "afile" / "x"], capsys, "is a file")
    assert (tmp_path / "afile").read_text() == "mine"


def test_cli_text_column_suggests_pasteable_columns(tmp_path, capsys):
    data = _csv(tmp_path / "strs.csv", "a,b,s\n1,2,x\n3,4,y\n5,6,z\n")
    line = _cli_error(["fit", data, "-k", "2", "--out", tmp_path / "o"], capsys, "['s']")
    assert line.endswith("e.g. --columns a,b")
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "Only numeric columns can be used" in " ".join(capsys.readouterr().out.split())


def test_cli_spec_path_to_a_foreign_file_never_echoes_it(tmp_path, capsys):
    secret = _csv(tmp_path / "secret.txt", "user:x:0:0:topsecret\nline two: hidden\n")
    binary = tmp_path / "blob.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    for target in (secret, binary):
        spec = tmp_path / "s.toml"
        spec.write_text(f'[data]\npath = "{target}"\n[model]\ncomponents = 2\n')
        code, _, err = _cli(["run", spec, "--out", tmp_path / "o"], capsys)
        assert code == 2 and "topsecret" not in err and "hidden" not in err and "user:x" not in err


def test_cli_any_column_name_works_end_to_end(tmp_path, capsys):
    """Names a CSV can hold (slashes, dots, spaces, colons, quotes, non-ASCII) fit and report
    (a '/' used to fail in the posterior predictive check after the fit)."""
    rng = np.random.default_rng(0)
    names = ["a/b", "c.d [m/s]", 'x y:"z"', "ü"]
    X = np.r_[rng.normal(size=(30, 4)), rng.normal(size=(30, 4)) + 5]
    pd.DataFrame(X, columns=names).to_csv(tmp_path / "w.csv", index=False)
    argv = ["fit", tmp_path / "w.csv", "-k", "2", "--out", tmp_path / "o", *CLI_SMALL]
    code, _, err = _cli(argv, capsys)
    assert code == 0, err
    assign = pd.read_csv(tmp_path / "o" / "assignments.csv")
    assert set(names) <= set(assign.columns)
    from bayesgmm.estimator.estimator import load

    assert load(tmp_path / "o" / "model").feature_names_in_ == names


def test_cli_strict_exits_1_on_a_fail_verdict(tmp_path, capsys):
    rng = np.random.default_rng(1)
    data = pd.DataFrame(rng.normal(size=(40, 2)), columns=["a", "b"])
    data.to_csv(tmp_path / "d.csv", index=False)
    tiny = ["--draws", "3", "--tune", "20", "--chains", "1", "--quiet"]  # too few draws: FAIL
    argv = ["fit", tmp_path / "d.csv", "-k", "1", "--out", tmp_path / "o", *tiny]
    code, _, err = _cli([*argv, "--strict"], capsys)
    assert code == 1 and "--strict" in err and (tmp_path / "o" / "report.html").is_file()
    code, out, err = _cli(argv, capsys)
    assert code == 0 and "FAIL" in out  # the same fit without --strict, into its own report
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    assert "--strict" in capsys.readouterr().out


def test_cli_report_never_overwrites_files_it_did_not_write(tmp_path, capsys):
    data = _csv(tmp_path / "d.csv", "a,b\n1,2\n3,4\n5,7\n")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "summary.csv").write_text("my own summary")
    _cli_error(["fit", data, "-k", "2", "--out", out], capsys, "summary.csv", "refusing")
    assert (out / "summary.csv").read_text() == "my own summary"
    os.remove(out / "summary.csv")
    (out / "model").mkdir()
    (out / "model" / "notes.txt").write_text("keep")
    _cli_error(["fit", data, "-k", "2", "--out", out], capsys, "refusing to replace")
    assert (out / "model" / "notes.txt").read_text() == "keep"
