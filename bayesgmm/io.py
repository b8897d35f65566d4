"""Save a fitted :class:`~bayesgmm.BayesianGMM` to a directory and load it back.

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
from dataclasses import fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import xarray as xr

from bayesgmm.exceptions import BayesGMMError, NotFittedError
from bayesgmm.predict import training_data

__all__ = [
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "IncompatibleVersionError",
    "SavePathError",
    "SavedModelError",
    "SavedModelNotFoundError",
    "load",
    "save",
]

#: Version of the on-disk layout written by :func:`save`.
FORMAT_VERSION = "2"
#: Layout versions :func:`load` can read.
SUPPORTED_FORMAT_VERSIONS = ("1", "2")
# format 1 (bayesgmm 0.1.0): no checksum of the metadata itself, and the sampler and ADVI
# settings stored twice (in "params" too); format 2 stores them once, in
# "sampler_config" / "advi_config", and checksums the metadata
META_FILE = "bayesgmm.json"
IDATA_DIR = "idata.zarr"
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


class SavedModelError(BayesGMMError, ValueError):
    """A saved model is damaged (truncated, altered, incomplete) or not a saved model."""


class IncompatibleVersionError(SavedModelError):
    """A saved model was written in a layout this version of bayesgmm cannot read."""


class SavedModelNotFoundError(BayesGMMError, FileNotFoundError):
    """No saved model at the given path."""


class SavePathError(BayesGMMError, FileExistsError):
    """:func:`save` may not write to the given path (nothing was written or removed)."""


def _bayesgmm_version() -> str:
    try:
        return version("bayesgmm")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _plain(value: Any) -> Any:
    """JSON-ready copy of settings that may hold numpy values or tuples."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "to_dict"):  # Prior
        return _plain(value.to_dict())
    return value


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(root: Path) -> dict[str, dict[str, Any]]:
    return {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted((root / IDATA_DIR).rglob("*"))
        if p.is_file()
    }


def _spec_to_dict(spec) -> dict[str, Any]:
    rp = spec.priors
    resolved = {f.name: _plain(getattr(rp, f.name)) for f in fields(rp)}
    return {
        "n_components": int(spec.n_components),
        "n_features": int(spec.n_features),
        "covariance_type": spec.covariance_type,
        "feature_names": [str(n) for n in spec.feature_names],
        "loc": _plain(np.asarray(spec.loc, dtype=float)),
        "scale": _plain(np.asarray(spec.scale, dtype=float)),
        "priors": resolved,
    }


def _relabel_info_to_dict(info) -> dict[str, Any] | None:
    if info is None:
        return None
    return {f.name: _plain(getattr(info, f.name)) for f in fields(info)}


def _relabel_info_from_dict(d: dict[str, Any] | None):
    if d is None:
        return None
    from bayesgmm.relabel import RelabelInfo

    d = dict(d)
    d["permutations"] = np.asarray(d["permutations"], dtype=int)
    d["n_permuted"] = np.asarray(d["n_permuted"], dtype=int)
    d["reference"] = {
        k: np.asarray(v, dtype=float) if isinstance(v, list) else v
        for k, v in d.get("reference", {}).items()
    }
    return RelabelInfo(**d)


def _spec_from_dict(d: dict[str, Any]):
    from bayesgmm.model import GMMSpec
    from bayesgmm.priors import ResolvedPriors

    p = dict(d["priors"])
    arrays = ("weights_a", "means_mu", "means_sigma", "sds_sigma")
    priors = ResolvedPriors(
        **{k: np.asarray(p[k], dtype=float) if k in arrays else p[k] for k in p},
    )
    return GMMSpec(
        n_components=int(d["n_components"]),
        n_features=int(d["n_features"]),
        covariance_type=d["covariance_type"],
        feature_names=list(d["feature_names"]),
        loc=np.asarray(d["loc"], dtype=float),
        scale=np.asarray(d["scale"], dtype=float),
        priors=priors,
    )


def check_save_path(path: Path, overwrite: bool) -> None:
    """Raise :class:`SavePathError` if :func:`save` may not write to ``path``.

    Nothing is written; :func:`save` calls it before it writes anything.
    """
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir() and parent != path:
            raise SavePathError(
                f"cannot save to {path}: {parent} is a file, not a directory. Choose a path "
                "whose parent folders are directories (or do not exist yet)."
            )
    if not path.exists() and not path.is_symlink():
        return
    if not overwrite:
        raise SavePathError(f"{path} already exists; pass overwrite=True to replace it.")
    if path.is_symlink() or not path.is_dir():
        raise SavePathError(
            f"{path} exists and is not a saved bayesgmm model (it is a file); refusing to "
            "replace it."
        )
    try:
        meta = json.loads((path / META_FILE).read_text())
        listed = set(_checked_manifest(path, meta["manifest"]))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, SavedModelError):
        raise SavePathError(
            f"{path} exists and is not a readable saved bayesgmm model (no valid {META_FILE}); "
            "refusing to replace it. Remove it yourself if it is yours to remove, or choose "
            "another path."
        ) from None
    foreign = _unlisted(path, listed)
    if foreign:
        shown = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise SavePathError(
            f"refusing to replace {path}: it holds files that bayesgmm did not write there "
            f"({shown}). Overwriting only ever replaces a saved model's own files; move yours "
            "elsewhere or save to another path."
        )


def _unlisted(root: Path, listed: set[str]) -> list[str]:
    """Entries under ``root`` that are neither the metadata file nor in the manifest
    (directories count as listed when they hold listed files only)."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out.append(rel)
        elif p.is_dir():
            if not any(f.startswith(rel + "/") for f in listed):
                out.append(rel + "/")
        elif rel != META_FILE and rel not in listed:
            out.append(rel)
    return out


def save(gmm, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save a fitted estimator to the directory ``path``.

    The model is written to a temporary sibling directory, verified, and only then moved
    into place, so an interrupted save never leaves a half-written model (or a deleted
    one) behind.

    Parameters
    ----------
    gmm : BayesianGMM
        A fitted estimator.
    path : str or path-like
        Directory to create. It must not exist, unless it holds an earlier saved model
        and ``overwrite=True``.
    overwrite : bool, default=False
        Replace an earlier saved model at ``path``. Only a directory that holds nothing
        but a saved model's own files (``bayesgmm.json`` and the files its manifest
        lists) is replaced; anything else there is refused and left untouched.

    Returns
    -------
    pathlib.Path
        The directory written.

    Raises
    ------
    NotFittedError
        If ``gmm`` has not been fitted.
    SavePathError
        If ``path`` may not be written (it exists without ``overwrite``, holds files
        bayesgmm did not write, or a parent is a file). Also a ``FileExistsError``.
    """
    if not hasattr(gmm, "idata_"):
        raise NotFittedError("only a fitted BayesianGMM can be saved; call fit(X) first.")
    path = Path(path)
    check_save_path(path, overwrite)
    meta = _metadata(gmm)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    old: Path | None = None
    try:
        with warnings.catch_warnings():
            # zarr 3 notes that consolidated metadata is not in its spec; xarray reads it
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            gmm.idata_.to_zarr(tmp / IDATA_DIR, mode="w")
        meta["manifest"] = _manifest(tmp)
        meta["checksum"] = _meta_checksum(meta)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, allow_nan=True) + "\n")
        _verify(tmp)
        if path.exists():
            check_save_path(path, overwrite)  # again: nothing may have appeared meanwhile
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            old.rmdir()
            path.rename(old)
        tmp.rename(path)
    except BaseException:
        if old is not None and old.exists() and not path.exists():
            old.rename(path)  # put the earlier model back
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old)  # the earlier save's own files only (checked above)
    return path


def _metadata(gmm) -> dict[str, Any]:
    params = gmm.get_params()
    advi_config = getattr(gmm, "advi_config_", None)
    # the full sampler (and ADVI) settings are stored once, in sampler_config / advi_config
    params.pop("sampler")
    if advi_config is not None:
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
        "params": _plain({**params, "priors": gmm.spec_.priors.config}),
        "spec": _spec_to_dict(gmm.spec_),
        "sampler_config": _plain(gmm.sampler_config_.to_dict()),
        "advi_config": _plain(advi_config.to_dict()) if advi_config is not None else None,
        "em_result": _plain(gmm.em_.to_dict()),
        "relabel_info": _relabel_info_to_dict(getattr(gmm, "relabel_info_", None)),
    }


def _meta_checksum(meta: dict[str, Any]) -> str:
    """SHA-256 of the metadata itself (every entry but ``checksum``), canonically encoded."""
    body = {k: v for k, v in meta.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _verify(path: Path) -> None:
    """Re-read what was just written: metadata checksum and every file's checksum."""
    meta = _read_meta(path)
    _check_files(path, meta["manifest"])


def _version_or_none(lib: str) -> str | None:
    try:
        return version(lib)
    except PackageNotFoundError:
        return None


def _damaged(path: Path, what: str) -> SavedModelError:
    return SavedModelError(
        f"saved model {path} is damaged: {what}. Re-save it from the fitted estimator (or re-fit)."
    )


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise SavedModelNotFoundError(f"no saved model at {path} (path does not exist).")
    if not path.is_dir() or not (path / META_FILE).is_file():
        raise SavedModelError(
            f"{path} is not a saved bayesgmm model (expected a directory holding {META_FILE} "
            f"and {IDATA_DIR}/, as written by bayesgmm.io.save)."
        )
    try:
        meta = json.loads((path / META_FILE).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _damaged(path, f"{META_FILE} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        raise _damaged(path, f"{META_FILE} is not a bayesgmm model description")
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
        raise _damaged(path, f"{META_FILE} lacks the entries {missing}")
    if fmt != "1" and meta["checksum"] != _meta_checksum(meta):
        raise _damaged(
            path,
            f"{META_FILE} does not match its checksum (edited or corrupted); its settings, "
            "feature names and manifest cannot be trusted",
        )
    _check_structure(path, meta)
    return meta


def _checked_manifest(path: Path, manifest: Any) -> dict[str, dict[str, Any]]:
    """The manifest, with every entry checked for form and confined to the model folder."""
    if not isinstance(manifest, dict) or not manifest:
        raise _damaged(path, f"the manifest in {META_FILE} is not a non-empty table of files")
    root = path.resolve()
    for rel, entry in manifest.items():
        parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
        if (
            not parts
            or PurePosixPath(rel).is_absolute()
            or ".." in parts
            or "\\" in rel
            or parts[0] != IDATA_DIR
        ):
            raise _damaged(path, f"the manifest names a path outside {IDATA_DIR}/: {rel!r}")
        target = (path / rel).resolve()
        if not target.is_relative_to(root):
            raise _damaged(path, f"the manifest entry {rel!r} leads outside the model folder")
        if not (
            isinstance(entry, dict)
            and set(entry) == {"size", "sha256"}
            and isinstance(entry["size"], int)
            and isinstance(entry["sha256"], str)
            and len(entry["sha256"]) == 64
        ):
            raise _damaged(path, f"the manifest entry for {rel!r} is not {{size, sha256}}")
    return manifest


def _check_files(path: Path, manifest: dict[str, dict[str, Any]]) -> None:
    manifest = _checked_manifest(path, manifest)
    for rel, entry in manifest.items():
        f = path / rel
        if f.is_symlink() or not f.is_file():
            raise _damaged(path, f"file {rel} is missing")
        if f.stat().st_size != entry["size"]:
            raise _damaged(path, f"file {rel} has a different size than recorded (truncated?)")
        if _sha256(f) != entry["sha256"]:
            raise _damaged(path, f"file {rel} does not match its checksum (altered)")
    extra = [e for e in _unlisted(path, set(manifest)) if e.startswith(IDATA_DIR)]
    if extra:
        raise _damaged(path, f"{IDATA_DIR}/ holds files its manifest does not list: {extra[:5]}")


def _check_structure(path: Path, meta: dict[str, Any]) -> None:
    """The metadata's entries have the types :func:`load` relies on."""
    spec = meta["spec"]
    tables = ("params", "spec", "sampler_config", "em_result")
    bad = [k for k in tables if not isinstance(meta[k], dict)]
    bad += [k for k in ("advi_config", "relabel_info") if not isinstance(meta.get(k), dict | None)]
    if bad:
        raise _damaged(path, f"{META_FILE} entries {bad} are not tables")
    K, D = spec.get("n_components"), spec.get("n_features")
    names = spec.get("feature_names")
    if not (isinstance(K, int) and K >= 1 and isinstance(D, int) and D >= 1):
        raise _damaged(path, f"{META_FILE} spec has no valid n_components / n_features")
    if not (isinstance(names, list) and len(names) == D and all(isinstance(n, str) for n in names)):
        raise _damaged(path, f"{META_FILE} spec.feature_names is not a list of {D} names")
    if meta["params"].get("n_components") != K:
        raise _damaged(
            path,
            f"{META_FILE} is inconsistent: params.n_components="
            f"{meta['params'].get('n_components')!r} but the fitted spec has {K} components",
        )
    if meta["params"].get("covariance_type") != spec.get("covariance_type"):
        raise _damaged(path, f"{META_FILE} is inconsistent: params and spec covariance_type differ")


def _check_consistent(path: Path, spec, em_result, idata: xr.DataTree, relabel_info) -> None:
    """Component and feature counts of the metadata against the arrays' shapes."""
    K, D = spec.n_components, spec.n_features
    problems = []
    if em_result.n_components != K or em_result.n_features != D:
        problems.append(
            f"the EM solution has {em_result.n_components} components x {em_result.n_features} "
            f"features, the spec {K} x {D}"
        )
    if list(em_result.feature_names) != list(spec.feature_names):
        problems.append("the EM solution and the spec name different features")
    if np.shape(spec.loc) != (D,) or np.shape(spec.scale) != (D,):
        problems.append(f"spec loc/scale are not of length {D}")
    post = idata["posterior"] if "posterior" in idata.children else None
    if post is None:
        problems.append("the posterior group is missing")
    else:
        sizes = post.sizes
        if sizes.get("component") != K or sizes.get("feature") != D:
            problems.append(
                f"the posterior has {sizes.get('component')} components x {sizes.get('feature')}"
                f" features, the spec {K} x {D}"
            )
        elif [str(f) for f in post["feature"].to_numpy()] != list(spec.feature_names):
            problems.append(
                "the posterior's feature coordinates differ from the spec's feature_names"
            )
        if relabel_info is not None and relabel_info.permutations.shape != (
            sizes.get("chain"),
            sizes.get("draw"),
            K,
        ):
            problems.append("the relabelling permutations do not match the posterior's shape")
    X = training_data(idata)
    if X is None:
        problems.append("observed_data.x is missing")
    elif X.shape[1] != D:
        problems.append(f"observed_data.x has {X.shape[1]} features, the spec {D}")
    if problems:
        raise _damaged(path, "its parts disagree: " + "; ".join(problems))


def _normalise_strings(tree: xr.DataTree) -> xr.DataTree:
    """Give string coordinates back the ``object`` dtype they had before saving."""

    def fix(ds: xr.Dataset) -> xr.Dataset:
        str_coords = {
            name: ds[name].astype(object) for name in ds.coords if ds[name].dtype.kind == "T"
        }
        return ds.assign_coords(str_coords) if str_coords else ds

    return tree.map_over_datasets(fix)


def load(path: str | os.PathLike):
    """Load an estimator saved by :func:`save`, ready to predict without re-sampling.

    Parameters
    ----------
    path : str or path-like
        The saved model's directory.

    Returns
    -------
    BayesianGMM
        With ``idata_``, ``spec_``, ``em_``, ``sampler_config_``, ``advi_config_``,
        ``feature_names_in_``, ``n_features_in_``, ``relabel_info_`` as saved; ``model_``
        rebuilt from the observed data when first used, and ``diagnostics_`` recomputed
        from the draws.

    Raises
    ------
    SavedModelNotFoundError
        No such path (also a ``FileNotFoundError``).
    IncompatibleVersionError
        Written in a save format this version cannot read; the message names both.
    SavedModelError
        The directory is not a saved model, or a file in it is missing, truncated or
        altered.
    """
    from bayesgmm.advi import ADVIConfig
    from bayesgmm.em import EMResult
    from bayesgmm.estimator import BayesianGMM
    from bayesgmm.sampling import SamplerConfig

    path = Path(path)
    meta = _read_meta(path)
    _check_files(path, meta["manifest"])
    try:
        with xr.open_datatree(path / IDATA_DIR, engine="zarr") as tree:
            idata = _normalise_strings(tree.load())
    except Exception as exc:  # checksums matched, yet zarr/xarray cannot read it
        raise _damaged(path, f"{IDATA_DIR} cannot be read ({type(exc).__name__}: {exc})") from exc
    try:
        params = meta["params"]
        spec = _spec_from_dict(meta["spec"])
        em_result = EMResult.from_dict(meta["em_result"])
        sampler_config = SamplerConfig.from_dict(meta["sampler_config"])
        advi_meta = meta.get("advi_config")  # absent in files saved before ADVI existed
        advi_config = ADVIConfig.from_dict(advi_meta) if advi_meta is not None else None
        params = {**params, "sampler": sampler_config.to_dict()}
        if advi_config is not None:
            params["advi"] = advi_config.to_dict()
        # parameters this version's estimator knows (a newer one may have added some)
        valid = set(BayesianGMM().get_params())
        gmm = BayesianGMM(**{k: v for k, v in params.items() if k in valid})
        relabel_info = _relabel_info_from_dict(meta.get("relabel_info"))
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise _damaged(path, f"{META_FILE} is inconsistent ({type(exc).__name__}: {exc})") from exc
    _check_consistent(path, spec, em_result, idata, relabel_info)
    gmm.spec_ = spec
    gmm.em_ = em_result
    gmm.idata_ = idata
    gmm.feature_names_in_ = list(spec.feature_names)
    gmm.n_features_in_ = spec.n_features
    gmm.sampler_config_ = sampler_config
    gmm.advi_config_ = advi_config
    gmm.relabel_info_ = relabel_info
    gmm.diagnostics_ = gmm.diagnose()  # recomputed: a deterministic function of the draws
    return gmm
