"""Saving and loading a fitted :class:`~bayesgmm.BayesianGMMClassifier`.

The directory holds ``bayesgmm.json`` (the classifier's settings, classes and counts,
and a manifest with the size and SHA-256 of every file) and ``models/<c>/``, one saved
:class:`~bayesgmm.BayesianGMM` per fitted model (their own format, checksums included).
The rules of :mod:`bayesgmm.core.files` hold: the directory is written beside its place
and swapped in, and ``overwrite=True`` replaces only a directory holding nothing but an
earlier saved classifier's own files.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bayesgmm.core.files import (
    CLASSIFIER_FORMAT,
    META_FILE,
    MODELS_DIR,
    check_save_path,
    checked_manifest,
    damaged,
    manifest,
    sha256,
    swap_in,
)
from bayesgmm.estimator.estimator import BayesianGMM
from bayesgmm.exceptions import NotFittedError, SavedModelError, SavedModelNotFoundError

__all__ = ["FORMAT_NAME", "load_classifier", "save_classifier"]

FORMAT_NAME = CLASSIFIER_FORMAT
FORMAT_VERSION = "1"
_MODELS = MODELS_DIR
_FITTED = ("covariance_type_", "n_components_", "log_likelihood_", "feature_names_in_")


def _checksum(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _plain(values) -> list:
    return [v.item() if hasattr(v, "item") else v for v in values]


def save_classifier(clf, path, *, overwrite: bool = False) -> Path:
    """Write the fitted classifier ``clf`` to the directory ``path`` (see the module)."""
    if not hasattr(clf, "models_"):
        raise NotFittedError("only a fitted BayesianGMMClassifier can be saved; call fit first.")
    path = Path(path)
    check_save_path(path, overwrite)
    params = {k: v for k, v in clf.get_params().items() if k not in ("sampler", "priors", "em")}
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "params": params,
        "classes": _plain(clf.classes_),
        "class_counts": _plain(clf.class_counts_),
        **{k: _plain(v) if isinstance(v, list) else v for k, v in
           ((k, getattr(clf, k)) for k in _FITTED)},
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        for c, model in enumerate(clf.models_):
            model.save(tmp / _MODELS / str(c))
        meta["manifest"] = manifest(tmp, _MODELS)
        meta["checksum"] = _checksum(meta)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, allow_nan=True) + "\n")
        swap_in(tmp, path, recheck=lambda: check_save_path(path, overwrite))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def load_classifier(cls, path):
    """A :class:`~bayesgmm.BayesianGMMClassifier` (``cls``) saved by :func:`save_classifier`:
    identical predictions, nothing re-fitted. Every file is checked against the manifest
    first."""
    path = Path(path)
    if not path.exists():
        raise SavedModelNotFoundError(f"no saved classifier at {path} (path does not exist).")
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        raise SavedModelError(
            f"{path} is not a saved BayesianGMMClassifier (no readable {META_FILE})."
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise SavedModelError(
            f"{path} is not a saved BayesianGMMClassifier (a saved BayesianGMM loads with "
            "BayesianGMM.load)."
        )
    if meta.get("checksum") != _checksum(meta):
        raise damaged(path, f"{META_FILE} does not match its checksum (edited or corrupted)")
    listing = checked_manifest(path, meta["manifest"], _MODELS)
    for rel, entry in listing.items():
        f = path / rel
        if f.is_symlink() or not f.is_file() or sha256(f) != entry["sha256"]:
            raise damaged(path, f"file {rel} is missing or altered")
    clf = cls(**meta["params"])
    n_models = 1 if meta["params"]["model_type"] == "EDDA" else len(meta["classes"])
    clf.models_ = [BayesianGMM.load(path / _MODELS / str(c)) for c in range(n_models)]
    clf.classes_ = np.asarray(meta["classes"])
    clf.class_counts_ = np.asarray(meta["class_counts"], dtype=np.int64)
    for key in _FITTED:
        setattr(clf, key, meta[key])
    clf.n_features_in_ = len(clf.feature_names_in_)
    # the class models' own settings (priors, sampler, EM) are those they were fitted with
    first = clf.models_[0]
    clf.priors, clf.em = first.priors, first.em
    clf.sampler = first.sampler_config_.to_dict()
    return clf
