"""Save a fitted :class:`~bayesgmm.BayesianGMM` to a directory and load it back.

A saved model is a directory::

    model/
        bayesgmm.json   version, settings, feature names and scaling, EM solution,
                        and a manifest (size + SHA-256) of every file below
        idata.zarr/     the posterior DataTree, written by ``xarray.DataTree.to_zarr``

Loading checks the manifest before reading anything, so a truncated or altered file
gives a clear :class:`SavedModelError` instead of wrong numbers. The posterior is
stored losslessly (float64), so a loaded model's ``predict_proba`` and
``score_samples`` equal the original's exactly, without re-sampling. The PyMC model is
rebuilt (not compiled) from the saved observed data and settings.
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
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayesgmm.exceptions import BayesGMMError, NotFittedError

__all__ = [
    "FORMAT_VERSION",
    "SUPPORTED_FORMAT_VERSIONS",
    "IncompatibleVersionError",
    "SavedModelError",
    "SavedModelNotFoundError",
    "load",
    "save",
]

#: Version of the on-disk layout written by :func:`save`.
FORMAT_VERSION = "1"
#: Layout versions :func:`load` can read.
SUPPORTED_FORMAT_VERSIONS = ("1",)
META_FILE = "bayesgmm.json"
IDATA_DIR = "idata.zarr"
_FORMAT_NAME = "bayesgmm-saved-model"
_REQUIRED_KEYS = (
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


def save(gmm, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Save a fitted estimator to the directory ``path``.

    Parameters
    ----------
    gmm : BayesianGMM
        A fitted estimator.
    path : str or path-like
        Directory to create. It must not exist, unless it holds an earlier saved model
        and ``overwrite=True`` (any other existing path is left alone and refused).
    overwrite : bool, default=False

    Returns
    -------
    pathlib.Path
        The directory written.

    Raises
    ------
    NotFittedError
        If ``gmm`` has not been fitted.
    FileExistsError
        If ``path`` exists and may not be replaced.
    """
    if not hasattr(gmm, "idata_"):
        raise NotFittedError("only a fitted BayesianGMM can be saved; call fit(X) first.")
    path = Path(path)
    if path.exists():
        if not overwrite:
            raise FileExistsError(f"{path} already exists; pass overwrite=True to replace it.")
        if not (path.is_dir() and (path / META_FILE).is_file()):
            raise FileExistsError(
                f"{path} exists and is not a saved bayesgmm model; refusing to replace it."
            )
    params = gmm.get_params()
    advi_config = getattr(gmm, "advi_config_", None)
    if advi_config is not None:  # the full ADVI settings, like the sampler's
        params["advi"] = advi_config.to_dict()
    meta: dict[str, Any] = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "bayesgmm_version": _bayesgmm_version(),
        "library_versions": {
            lib: _version_or_none(lib) for lib in ("pymc", "arviz", "xarray", "numpy", "zarr")
        },
        # constructor parameters; the merged prior configuration and the full sampler
        # settings reproduce the user's exactly
        "params": _plain(
            {
                **params,
                "priors": gmm.spec_.priors.config,
                "sampler": gmm.sampler_config_.to_dict(),
            }
        ),
        "spec": _spec_to_dict(gmm.spec_),
        "sampler_config": _plain(gmm.sampler_config_.to_dict()),
        "advi_config": _plain(advi_config.to_dict()) if advi_config is not None else None,
        "em_result": _plain(gmm.em_.to_dict()),
        "relabel_info": _relabel_info_to_dict(getattr(gmm, "relabel_info_", None)),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        with warnings.catch_warnings():
            # zarr 3 notes that consolidated metadata is not in its spec; xarray reads it
            warnings.filterwarnings("ignore", message="Consolidated metadata")
            gmm.idata_.to_zarr(tmp / IDATA_DIR, mode="w")
        meta["manifest"] = _manifest(tmp)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=1, allow_nan=True) + "\n")
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


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
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise _damaged(path, f"{META_FILE} lacks the entries {missing}")
    return meta


def _check_manifest(path: Path, manifest: dict[str, dict[str, Any]]) -> None:
    for rel, entry in manifest.items():
        f = path / rel
        if not f.is_file():
            raise _damaged(path, f"file {rel} is missing")
        size = f.stat().st_size
        if size != entry["size"]:
            raise _damaged(path, f"file {rel} has {size} bytes, expected {entry['size']}")
        if _sha256(f) != entry["sha256"]:
            raise _damaged(path, f"file {rel} does not match its checksum (altered)")


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
        rebuilt from the observed data and ``diagnostics_`` recomputed from the draws.

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
    from bayesgmm.predict import training_data
    from bayesgmm.sampling import SamplerConfig

    path = Path(path)
    meta = _read_meta(path)
    _check_manifest(path, meta["manifest"])
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
        if training_data(idata) is None:
            raise KeyError("observed_data.x")
        # parameters this version's estimator knows (a newer one may have added some)
        valid = set(BayesianGMM().get_params())
        gmm = BayesianGMM(**{k: v for k, v in params.items() if k in valid})
        relabel_info = _relabel_info_from_dict(meta.get("relabel_info"))
    except (KeyError, TypeError, ValueError) as exc:
        raise _damaged(path, f"{META_FILE} is inconsistent ({type(exc).__name__}: {exc})") from exc
    gmm.spec_ = spec
    gmm.em_ = em_result
    gmm.idata_ = idata
    gmm.feature_names_in_ = list(spec.feature_names)
    gmm.n_features_in_ = spec.n_features
    gmm.sampler_config_ = sampler_config
    gmm.advi_config_ = advi_config
    gmm._rebuild_model()
    gmm.relabel_info_ = relabel_info
    gmm.diagnostics_ = gmm.diagnose()  # recomputed: a deterministic function of the draws
    return gmm
