"""The saved-model format: a fitted estimator's state in a directory, and back.

``BayesianGMM.save`` / ``BayesianGMM.load`` (and :func:`bayesgmm.save` /
:func:`bayesgmm.load`) use :func:`write_model` and :func:`read_model`.

A saved model is a directory::

    model/
        bayesgmm.json   version, settings, feature names and scaling, EM solution, a
                        manifest (size + SHA-256) of every file below, and the SHA-256
                        of all of that (``checksum``)
        idata.zarr/     the posterior DataTree, written by ``xarray.DataTree.to_zarr``

Loading checks the metadata's own checksum, then every file against the manifest,
before reading anything, and then that the parts agree (component and feature counts,
feature names, array shapes), so a truncated, altered or inconsistent model gives a
clear :class:`SavedModelError` instead of wrong numbers. Manifest paths are confined to
``idata.zarr/`` inside the model folder. The posterior is stored losslessly (float64),
so a loaded model's ``predict_proba`` and ``score_samples`` equal the original's
exactly, without re-sampling. The PyMC model is rebuilt (not compiled) from the saved
observed data and settings.

What is trusted: ``load`` reads JSON and zarr (version 3) only -- no pickle, nothing
that executes code. The checksums detect corruption (truncated copies, flipped bits,
hand edits); they do not protect against tampering, since whoever can write the files
can also recompute the checksums. Load models from sources you trust.

Saving never deletes what bayesgmm did not write: a model is written to a temporary
sibling directory, verified, and then swapped in; with ``overwrite=True`` only a
directory holding nothing but an earlier saved model's own files is replaced.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import xarray as xr

from bayesgmm.core.files import (
    CLASSIFIER_FORMAT,
    IDATA_DIR,
    META_FILE,
    check_files,
    check_save_path,
    damaged,
    manifest,
    swap_in,
)
from bayesgmm.estimator.state import (
    FitState,
    check_consistent,
    plain,
    state_from_meta,
    state_to_meta,
)
from bayesgmm.exceptions import (
    ConfigError,
    IncompatibleVersionError,
    SavedModelError,
    SavedModelNotFoundError,
    SavePathError,
)

__all__ = [
    "FORMAT_VERSION",
    "IDATA_DIR",
    "META_FILE",
    "SUPPORTED_FORMAT_VERSIONS",
    "IncompatibleVersionError",
    "SavePathError",
    "SavedModelError",
    "SavedModelNotFoundError",
    "check_save_path",
    "read_model",
    "write_model",
]

#: Version of the on-disk layout written by :func:`save`.
FORMAT_VERSION = "2"
#: Layout versions :func:`load` can read.
SUPPORTED_FORMAT_VERSIONS = ("1", "2")
# format 1 (bayesgmm 0.1.0): no checksum of the metadata itself, and the sampler and ADVI
# settings stored twice (in "params" too); format 2 stores them once, in
# "sampler_config" / "advi_config", and checksums the metadata
_FORMAT_NAME = "bayesgmm-saved-model"
_REQUIRED_KEYS = (
    "checksum",
    "format",
    "format_version",
    "bayesgmm_version",
    "params",
    "spec",
    "sampler_config",
    "em_result",
    "manifest",
)


def _bayesgmm_version() -> str:
    try:
        return version("bayesgmm")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _version_or_none(lib: str) -> str | None:
    try:
        return version(lib)
    except PackageNotFoundError:
        return None


def write_model(path: Path, params: dict[str, Any], state, *, overwrite: bool = False) -> Path:
    """Write a fitted state (and the estimator's constructor ``params``) to ``path``.

    The model is written to a temporary sibling directory, verified, and only then moved
    into place (see :mod:`bayesgmm.core.files`), so an interrupted save never leaves a
    half-written model (or a deleted one) behind. ``overwrite=True`` replaces only a
    directory holding nothing but an earlier saved model's own files.

    Raises
    ------
    SavePathError
        ``path`` may not be written (it exists without ``overwrite``, holds files
        bayesgmm did not write, or a parent is a file). Also a ``FileExistsError``.
    """
    path = Path(path)
    check_save_path(path, overwrite)
    meta = _metadata(params, state)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with warnings.catch_warnings():
            # zarr 3 notes that consolidated metadata is not in its spec; xarray reads it
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            state.idata.to_zarr(tmp / IDATA_DIR, mode="w")
        meta["manifest"] = manifest(tmp)
        meta["checksum"] = _meta_checksum(meta)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, allow_nan=True) + "\n")
        _verify(tmp)
        swap_in(tmp, path, recheck=lambda: check_save_path(path, overwrite))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _metadata(params: dict[str, Any], state) -> dict[str, Any]:
    # the full sampler (and ADVI) settings are stored once, in sampler_config / advi_config
    params = dict(params)
    params.pop("sampler")
    if state.advi_config is not None:
        params.pop("advi")
    return {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "bayesgmm_version": _bayesgmm_version(),
        "library_versions": {
            lib: _version_or_none(lib) for lib in ("pymc", "arviz", "xarray", "numpy", "zarr")
        },
        # constructor parameters; the merged prior configuration (and, from sampler_config
        # and advi_config, the full sampler and ADVI settings) reproduce the user's exactly
        "params": plain({**params, "priors": state.spec.priors.config}),
        **state_to_meta(state),
    }


def _meta_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of the metadata itself (every entry but ``checksum``), canonically encoded."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _verify(path: Path) -> None:
    """Re-read what was just written: metadata checksum and every file's checksum."""
    meta = _read_meta(path)
    check_files(path, meta["manifest"])


def _family_name(name) -> str | None:
    from bayesgmm.core.families import family

    try:
        return family(name).name
    except (ConfigError, TypeError):
        return None


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SavedModelNotFoundError(f"no saved model at {path} (path does not exist).")
    if not path.is_dir() or not (path / META_FILE).is_file():
        raise SavedModelError(
            f"{path} is not a saved bayesgmm model (expected a directory holding {META_FILE} "
            f"and {IDATA_DIR}/, as written by BayesianGMM.save)."
        )
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise damaged(path, f"{META_FILE} is not valid JSON ({exc})") from None
    if isinstance(meta, dict) and meta.get("format") == CLASSIFIER_FORMAT:
        raise SavedModelError(
            f"{path} is a saved BayesianGMMClassifier; load it with BayesianGMMClassifier.load."
        )
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        raise damaged(path, f"{META_FILE} is not a bayesgmm model description")
    fmt = meta.get("format_version")
    if fmt not in SUPPORTED_FORMAT_VERSIONS:
        raise IncompatibleVersionError(
            f"saved model {path} uses save format {fmt!r} (written by bayesgmm "
            f"{meta.get('bayesgmm_version', 'unknown')}); this bayesgmm "
            f"{_bayesgmm_version()} reads save format(s) {list(SUPPORTED_FORMAT_VERSIONS)}. "
            "Load it with the bayesgmm version that wrote it, or re-fit and save."
        )
    required = [k for k in _REQUIRED_KEYS if k != "checksum" or fmt != "1"]
    missing = [k for k in required if k not in meta]
    if missing:
        raise damaged(path, f"{META_FILE} lacks the entries {missing}")
    if fmt != "1" and meta["checksum"] != _meta_checksum(meta):
        raise damaged(
            path,
            f"{META_FILE} does not match its checksum (edited or corrupted); its settings, "
            "feature names and manifest cannot be trusted",
        )
    _check_structure(path, meta)
    return meta


def _check_structure(path: Path, meta: dict[str, Any]) -> None:
    """The metadata's entries have the types :func:`load` relies on."""
    spec = meta["spec"]
    tables = ("params", "spec", "sampler_config", "em_result")
    bad = [k for k in tables if not isinstance(meta[k], dict)]
    bad += [k for k in ("advi_config", "relabel_info") if not isinstance(meta.get(k), dict | None)]
    if bad:
        raise damaged(path, f"{META_FILE} entries {bad} are not tables")
    K, D = spec.get("n_components"), spec.get("n_features")
    names = spec.get("feature_names")
    if not (isinstance(K, int) and K >= 1 and isinstance(D, int) and D >= 1):
        raise damaged(path, f"{META_FILE} spec has no valid n_components / n_features")
    if not (isinstance(names, list) and len(names) == D and all(isinstance(n, str) for n in names)):
        raise damaged(path, f"{META_FILE} spec.feature_names is not a list of {D} names")
    if meta["params"].get("n_components") != K:
        raise damaged(
            path,
            f"{META_FILE} is inconsistent: params.n_components="
            f"{meta['params'].get('n_components')!r} but the fitted spec has {K} components",
        )
    if _family_name(meta["params"].get("covariance_type")) != _family_name(
        spec.get("covariance_type")
    ):  # the same family by any of its names ("EEE" is fitted as "tied")
        raise damaged(path, f"{META_FILE} is inconsistent: params and spec covariance_type differ")


def _normalise_strings(tree: xr.DataTree) -> xr.DataTree:
    """Give string coordinates back the ``object`` dtype they had before saving."""

    def fix(ds: xr.Dataset) -> xr.Dataset:
        str_coords = {
            name: ds[name].astype(object) for name in ds.coords if ds[name].dtype.kind == "T"
        }
        return ds.assign_coords(str_coords) if str_coords else ds

    return tree.map_over_datasets(fix)


def read_model(path: str | os.PathLike) -> tuple[dict[str, Any], FitState]:
    """Read a saved model: the estimator's constructor parameters and its fitted state.

    Checks, before using anything: the metadata's own checksum and structure, every file
    against the manifest (confined to the model folder), then that the parts agree.

    Raises
    ------
    SavedModelNotFoundError
        No such path (also a ``FileNotFoundError``).
    IncompatibleVersionError
        Written in a save format this version cannot read; the message names both.
    SavedModelError
        The directory is not a saved model, or a file in it is missing, truncated,
        altered or inconsistent with the others.
    """
    path = Path(path)
    meta = _read_meta(path)
    check_files(path, meta["manifest"])
    try:
        with xr.open_datatree(path / IDATA_DIR, engine="zarr") as tree:
            idata = _normalise_strings(tree.load())
    except Exception as exc:  # checksums matched, yet zarr/xarray cannot read it
        raise damaged(path, f"{IDATA_DIR} cannot be read ({type(exc).__name__}: {exc})") from exc
    try:
        state = state_from_meta(meta, idata)
        params = {**meta["params"], "sampler": state.sampler_config.to_dict()}
        if state.advi_config is not None:
            params["advi"] = state.advi_config.to_dict()
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise damaged(path, f"{META_FILE} is inconsistent ({type(exc).__name__}: {exc})") from exc
    check_consistent(path, state)
    return params, state
