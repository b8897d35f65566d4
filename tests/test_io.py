"""Save / load of a fitted BayesianGMM: exact round trip (also in a fresh process), and
clear errors for missing, damaged and incompatible files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bayesgmm import BayesianGMM
from bayesgmm.exceptions import NotFittedError
from bayesgmm.io import (
    IDATA_DIR,
    META_FILE,
    IncompatibleVersionError,
    SavedModelError,
    SavedModelNotFoundError,
    load,
    save,
)


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
        from bayesgmm.io import load
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
    assert meta["bayesgmm_version"] and meta["format_version"] == "1"


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
    assert "'99'" in msg and "9.0.0" in msg and "['1']" in msg


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
    (copy_of / IDATA_DIR / "stale").write_text("left over")
    save(separated_fit, copy_of, overwrite=True)
    assert not (copy_of / IDATA_DIR / "stale").exists()
    assert load(copy_of).idata_.identical(separated_fit.idata_)
