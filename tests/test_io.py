"""Save / load of a fitted BayesianGMM: exact round trip (also in a fresh process), and
clear errors for missing, damaged and incompatible files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from bayesgmm import BayesianGMM
from bayesgmm.estimator.estimator import load, save
from bayesgmm.estimator.io import (
    IDATA_DIR,
    META_FILE,
    IncompatibleVersionError,
    SavedModelError,
    SavedModelNotFoundError,
    SavePathError,
    _meta_checksum,
)
from bayesgmm.exceptions import NotFittedError


@pytest.fixture(scope="module")
def saved(separated_fit, tmp_path_factory):
    """The session's fitted model, saved once; tests copy it before damaging it."""
    path = tmp_path_factory.mktemp("io") / "model"
    save(separated_fit, path)
    return path


@pytest.fixture
def copy_of(saved, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(saved, dst)
    return dst


@pytest.fixture(scope="module")
def X_new():
    rng = np.random.default_rng(7)
    return rng.normal(0.0, 5.0, size=(40, 2))


def test_load_in_fresh_process_gives_identical_predictions(separated_fit, saved, X_new, tmp_path):
    np.save(tmp_path / "X.npy", X_new)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from bayesgmm.estimator.estimator import load
        gmm = load({str(saved)!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "proba.npy")!r}, gmm.predict_proba(X))
        np.save({str(tmp_path / "score.npy")!r}, gmm.score_samples(X))
        np.save({str(tmp_path / "train.npy")!r}, gmm.predict_proba(
            gmm.idata_["observed_data"]["x"].to_numpy()))
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    assert np.array_equal(np.load(tmp_path / "proba.npy"), separated_fit.predict_proba(X_new))
    assert np.array_equal(np.load(tmp_path / "score.npy"), separated_fit.score_samples(X_new))
    X_train = separated_fit.idata_["observed_data"]["x"].to_numpy()
    assert np.array_equal(np.load(tmp_path / "train.npy"), separated_fit.predict_proba(X_train))


def test_loaded_estimator_has_every_fitted_attribute(separated_fit, saved):
    gmm = load(saved)
    assert isinstance(gmm, BayesianGMM)
    assert gmm.idata_.identical(separated_fit.idata_)
    spec, ref = gmm.spec_, separated_fit.spec_
    assert (spec.n_components, spec.n_features, spec.covariance_type) == (
        ref.n_components,
        ref.n_features,
        ref.covariance_type,
    )
    assert spec.feature_names == ref.feature_names
    assert np.array_equal(spec.loc, ref.loc) and np.array_equal(spec.scale, ref.scale)
    for name in ("weights_a", "means_mu", "means_sigma", "sds_sigma"):
        assert np.array_equal(getattr(spec.priors, name), getattr(ref.priors, name))
    assert spec.priors.config == ref.priors.config
    assert gmm.em_.to_dict() == separated_fit.em_.to_dict()
    assert gmm.sampler_config_ == separated_fit.sampler_config_
    assert gmm.feature_names_in_ == separated_fit.feature_names_in_
    assert gmm.n_features_in_ == separated_fit.n_features_in_
    assert gmm.get_params()["n_components"] == separated_fit.n_components
    assert {v.name for v in gmm.model_.free_RVs} == {v.name for v in separated_fit.model_.free_RVs}
    info, ref_info = gmm.relabel_info_, getattr(separated_fit, "relabel_info_", None)
    assert (info is None) == (ref_info is None)
    if ref_info is not None:
        assert info.method == ref_info.method and info.n_iter == ref_info.n_iter
        assert np.array_equal(info.permutations, ref_info.permutations)
        assert np.array_equal(info.reference["means"], ref_info.reference["means"])
    assert gmm.diagnostics_.table.equals(gmm.diagnose().table)
    meta = json.loads((saved / META_FILE).read_text())
    assert meta["bayesgmm_version"] and meta["format_version"] == "2"
    assert "sampler" not in meta["params"]  # stored once, in sampler_config
    assert gmm.get_params()["sampler"] == separated_fit.sampler_config_.to_dict()


def test_missing_path_is_a_file_not_found_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(SavedModelNotFoundError, match="nowhere") as info:
        load(missing)
    assert isinstance(info.value, FileNotFoundError)


def test_truncated_file_gives_a_damage_error(copy_of):
    chunks = sorted(
        (p for p in (copy_of / IDATA_DIR).rglob("*") if p.is_file()), key=lambda p: p.stat().st_size
    )
    victim = chunks[-1]  # the largest data chunk
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    rel = victim.relative_to(copy_of).as_posix()
    with pytest.raises(SavedModelError, match="damaged") as info:
        load(copy_of)
    assert rel in str(info.value) and "Re-save" in str(info.value)


def test_altered_bytes_of_the_same_size_are_detected(copy_of):
    victim = next(p for p in sorted((copy_of / IDATA_DIR / "posterior").rglob("*")) if p.is_file())
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(SavedModelError, match="checksum"):
        load(copy_of)


def test_truncated_metadata_gives_a_damage_error(copy_of):
    meta = copy_of / META_FILE
    meta.write_text(meta.read_text()[:200])
    with pytest.raises(SavedModelError, match="not valid JSON"):
        load(copy_of)


def test_incompatible_format_version_names_both_versions(copy_of):
    meta = json.loads((copy_of / META_FILE).read_text())
    meta["format_version"] = "99"
    meta["bayesgmm_version"] = "9.0.0"
    (copy_of / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(IncompatibleVersionError) as info:
        load(copy_of)
    msg = str(info.value)
    assert "'99'" in msg and "9.0.0" in msg and "['1', '2']" in msg


def test_a_directory_that_is_not_a_saved_model_is_refused(tmp_path):
    (tmp_path / "other").mkdir()
    with pytest.raises(SavedModelError, match="not a saved bayesgmm model"):
        load(tmp_path / "other")


def test_save_refuses_unfitted_and_foreign_paths(separated_fit, saved, tmp_path):
    with pytest.raises(NotFittedError):
        save(BayesianGMM(2), tmp_path / "m")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        save(separated_fit, foreign, overwrite=True)
    assert (foreign / "keep.txt").read_text() == "precious"
    with pytest.raises(FileExistsError):
        save(separated_fit, saved)  # no overwrite by default


def test_overwrite_replaces_an_earlier_save(separated_fit, copy_of):
    save(separated_fit, copy_of, overwrite=True)
    assert load(copy_of).idata_.identical(separated_fit.idata_)
    assert not [p for p in copy_of.parent.iterdir() if p.name.startswith(".copy.")]  # no temps


def test_overwrite_refuses_a_save_holding_files_it_does_not_list(separated_fit, copy_of):
    (copy_of / IDATA_DIR / "stale").write_text("not written by bayesgmm")
    with pytest.raises(SavePathError, match=r"did not write there \(idata.zarr/stale\)"):
        save(separated_fit, copy_of, overwrite=True)
    assert (copy_of / IDATA_DIR / "stale").read_text() == "not written by bayesgmm"


def test_overwrite_never_deletes_a_users_files(separated_fit, tmp_path, monkeypatch):
    """The reproduction of the data-loss report: a project folder that happens to hold a
    file named bayesgmm.json must survive save(..., overwrite=True)."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("proj/src")
    Path("proj/src/work.py").write_text("x")
    Path("proj/bayesgmm.json").write_text("{}")
    with pytest.raises(SavePathError, match="not a readable saved bayesgmm model"):
        separated_fit.save("proj", overwrite=True)
    assert Path("proj/src/work.py").read_text() == "x"
    assert Path("proj/bayesgmm.json").read_text() == "{}"
    # a real earlier save beside the user's files: refused, and nothing removed
    save(separated_fit, "proj2")
    Path("proj2/src").mkdir()
    Path("proj2/src/work.py").write_text("y")
    with pytest.raises(SavePathError, match="src/"):
        save(separated_fit, "proj2", overwrite=True)
    assert Path("proj2/src/work.py").read_text() == "y"
    assert load("proj2").idata_.identical(separated_fit.idata_)


def test_save_below_a_file_names_the_file(separated_fit, tmp_path):
    (tmp_path / "afile.txt").write_text("mine")
    with pytest.raises(SavePathError, match=r"afile\.txt is a file, not a directory"):
        save(separated_fit, tmp_path / "afile.txt" / "sub")
    assert (tmp_path / "afile.txt").read_text() == "mine"


def _edit(path, change, rehash):
    meta = json.loads((path / META_FILE).read_text())
    change(meta)
    if rehash:  # as a careless tool (or a deliberate editor) would
        meta["checksum"] = _meta_checksum(meta)
    (path / META_FILE).write_text(json.dumps(meta))


def _set(*keys, value):
    def change(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return change


METADATA_EDITS = {
    "feature_names swapped": (_set("spec", "feature_names", value=["b", "a"]), "disagree"),
    "params.n_components": (_set("params", "n_components", value=5), "params.n_components=5"),
    "spec.n_features": (_set("spec", "n_features", value=3), "feature_names is not a list of 3"),
    "manifest emptied": (_set("manifest", value={}), "not a non-empty table"),
    "manifest as a list": (lambda m: m.update(manifest=list(m["manifest"])), "not a non-empty"),
    "entry as a string": (
        lambda m: m["manifest"].update({next(iter(m["manifest"])): "x"}),
        "is not {size, sha256}",
    ),
    "spec as a list": (_set("spec", value=[1, 2]), "are not tables"),
}


@pytest.mark.parametrize("rehash", [False, True], ids=["edited", "edited-and-rehashed"])
@pytest.mark.parametrize("edit", list(METADATA_EDITS), ids=list(METADATA_EDITS))
def test_edited_metadata_is_detected(copy_of, edit, rehash):
    change, fragment = METADATA_EDITS[edit]
    _edit(copy_of, change, rehash)
    with pytest.raises(SavedModelError, match="damaged") as info:
        load(copy_of)
    assert ("does not match its checksum" if not rehash else fragment) in str(info.value)


def test_a_swapped_posterior_array_is_detected_even_with_an_emptied_manifest(copy_of):
    chunk = next(p for p in sorted((copy_of / IDATA_DIR / "posterior").rglob("*")) if p.is_file())
    chunk.write_bytes(chunk.read_bytes()[::-1])
    _edit(copy_of, _set("manifest", value={}), rehash=False)
    with pytest.raises(SavedModelError, match="checksum"):
        load(copy_of)


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlink"])
def test_manifest_paths_are_confined_to_the_model(copy_of, tmp_path, where):
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"\0" * 12345)
    if where == "symlink":
        (copy_of / IDATA_DIR / "link").symlink_to(outside)
        rel = f"{IDATA_DIR}/link"
    else:
        rel = str(outside) if where == "absolute" else f"{IDATA_DIR}/../../outside.bin"
    entry = {"size": 12345, "sha256": "0" * 64}
    _edit(copy_of, lambda m: m["manifest"].update({rel: entry}), rehash=True)
    with pytest.raises(SavedModelError, match="outside") as info:
        load(copy_of)
    assert "12345" not in str(info.value)  # nothing about the outside file is told


DATA = Path(__file__).parent / "data"


def test_a_model_saved_by_bayesgmm_0_1_0_still_loads(tmp_path):
    """tests/data/saved_v1 was written by bayesgmm 0.1.0 (save format 1: no checksum of the
    metadata, settings stored twice), with the predictions it gave then."""
    copy = tmp_path / "v1"
    shutil.copytree(DATA / "saved_v1", copy)
    gmm = load(copy)
    assert json.loads((copy / META_FILE).read_text())["format_version"] == "1"
    X = np.load(DATA / "saved_v1_X.npy")
    np.testing.assert_allclose(
        gmm.predict_proba(X), np.load(DATA / "saved_v1_proba.npy"), rtol=1e-12
    )
    assert gmm.get_params()["sampler"]["draws"] == 8


def test_a_save_into_an_empty_directory_gets_the_usual_permissions(separated_fit, tmp_path):
    """An empty directory holds nothing to lose: save() fills it, overwrite or not. The
    saved directory gets the mode any new directory gets (the umask's), not the
    owner-only mode of the temporary directory it is written in."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty2").mkdir()
    old = os.umask(0o022)
    try:
        save(separated_fit, tmp_path / "empty")
        save(separated_fit, tmp_path / "empty2", overwrite=True)
        save(separated_fit, tmp_path / "new")
    finally:
        os.umask(old)
    for name in ("empty", "empty2", "new"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o755, name
        assert load(tmp_path / name).idata_.identical(separated_fit.idata_)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / ".keep").write_text("")
    with pytest.raises(SavePathError, match="already exists"):
        save(separated_fit, tmp_path / "full")


def test_two_commands_output_in_one_directory_keep_each_others_files(tmp_path):
    """A report written into classify's directory (or the reverse) records its own files
    and keeps the other's entries, so the other's next run may still replace its files;
    a file changed since is the user's."""
    from bayesgmm.core.files import claim_output, record_output, sha256
    from bayesgmm.exceptions import ReportPathError

    out = tmp_path / "o"
    claim_output(out, ["classification.txt"], "classifier")
    (out / "classification.txt").write_text("first")
    record_output(out, ["classification.txt"])
    claim_output(out, ["report.html"], "model")
    (out / "report.html").write_text("report")
    record_output(out, ["report.html"])
    assert claim_output(out, ["classification.txt"], "classifier") == {
        "classification.txt": sha256(out / "classification.txt"),
        "report.html": sha256(out / "report.html"),
    }
    (out / "classification.txt").write_text("edited by the user")
    record_output(out, ["report.html"])  # the edited file is no longer bayesgmm's
    with pytest.raises(ReportPathError, match=r"classification\.txt"):
        claim_output(out, ["classification.txt"], "classifier")
