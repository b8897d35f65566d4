"""The fitted state of an estimator: one object, written by ``fit`` and by ``load``.

A :class:`FitState` holds everything a fit leaves behind -- the specification, the EM
start, the posterior DataTree, the sampler (or ADVI) settings used and the relabelling --
and nothing that does not pickle or that can be rebuilt (the ``pm.Model``, the
diagnostics report). :func:`state_to_meta` and :func:`state_from_meta` turn it into the
JSON-ready tables of a saved model and back, and :func:`check_consistent` checks that its
parts agree before a loaded model is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from bayesgmm.core.config import ADVIConfig, SamplerConfig
from bayesgmm.core.draws import training_data
from bayesgmm.core.em_result import EMResult
from bayesgmm.core.files import damaged
from bayesgmm.core.priors import ResolvedPriors
from bayesgmm.core.relabel import RelabelInfo
from bayesgmm.core.spec import GMMSpec

__all__ = ["FitState", "check_consistent", "plain", "state_from_meta", "state_to_meta"]


@dataclass
class FitState:
    """What a fit leaves behind (see the module docstring).

    ``diagnostics`` caches the diagnostics report of ``idata`` (computed by ``fit``, or on
    first use after ``load``); it is not saved, since it is a function of the draws.
    """

    spec: GMMSpec
    em: EMResult
    idata: xr.DataTree
    sampler_config: SamplerConfig
    advi_config: ADVIConfig | None = None
    relabel_info: RelabelInfo | None = None
    diagnostics: Any = field(default=None, compare=False)


def plain(value: Any) -> Any:
    """JSON-ready copy of settings that may hold numpy values or tuples."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "to_dict"):  # Prior
        return plain(value.to_dict())
    return value


def _spec_to_dict(spec: GMMSpec) -> dict[str, Any]:
    rp = spec.priors
    return {
        "n_components": int(spec.n_components),
        "n_features": int(spec.n_features),
        "covariance_type": spec.covariance_type,
        "feature_names": [str(n) for n in spec.feature_names],
        "loc": plain(np.asarray(spec.loc, dtype=float)),
        "scale": plain(np.asarray(spec.scale, dtype=float)),
        "priors": {f.name: plain(getattr(rp, f.name)) for f in fields(rp)},
    }


def _spec_from_dict(d: dict[str, Any]) -> GMMSpec:
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


def _relabel_to_dict(info: RelabelInfo | None) -> dict[str, Any] | None:
    if info is None:
        return None
    return {f.name: plain(getattr(info, f.name)) for f in fields(info)}


def _relabel_from_dict(d: dict[str, Any] | None) -> RelabelInfo | None:
    if d is None:
        return None
    d = dict(d)
    d["permutations"] = np.asarray(d["permutations"], dtype=int)
    d["n_permuted"] = np.asarray(d["n_permuted"], dtype=int)
    d["reference"] = {
        k: np.asarray(v, dtype=float) if isinstance(v, list) else v
        for k, v in d.get("reference", {}).items()
    }
    return RelabelInfo(**d)


def state_to_meta(state: FitState) -> dict[str, Any]:
    """The saved-model tables of ``state`` (everything but the DataTree), JSON-ready."""
    advi = state.advi_config
    return {
        "spec": _spec_to_dict(state.spec),
        "sampler_config": plain(state.sampler_config.to_dict()),
        "advi_config": plain(advi.to_dict()) if advi is not None else None,
        "em_result": plain(state.em.to_dict()),
        "relabel_info": _relabel_to_dict(state.relabel_info),
    }


def state_from_meta(meta: dict[str, Any], idata: xr.DataTree) -> FitState:
    """Inverse of :func:`state_to_meta` (KeyError, TypeError or ValueError on bad tables)."""
    advi_meta = meta.get("advi_config")  # absent in files saved before ADVI existed
    return FitState(
        spec=_spec_from_dict(meta["spec"]),
        em=EMResult.from_dict(meta["em_result"]),
        idata=idata,
        sampler_config=SamplerConfig.from_dict(meta["sampler_config"]),
        advi_config=ADVIConfig.from_dict(advi_meta) if advi_meta is not None else None,
        relabel_info=_relabel_from_dict(meta.get("relabel_info")),
    )


def check_consistent(path: Path, state: FitState) -> None:
    """Component and feature counts of the tables against the arrays' shapes (a
    SavedModelError naming every disagreement)."""
    spec, em_result, idata, relabel_info = state.spec, state.em, state.idata, state.relabel_info
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
        # the permutations are the sampled chains' (a stacked posterior keeps those in
        # posterior_chains: bayesgmm.analysis.modes.stack_modes)
        sampled = idata["posterior_chains"].sizes if "posterior_chains" in idata.children else sizes
        if relabel_info is not None and relabel_info.permutations.shape != (
            sampled.get("chain"),
            sampled.get("draw"),
            K,
        ):
            problems.append("the relabelling permutations do not match the posterior's shape")
    X = training_data(idata)
    if X is None:
        problems.append("observed_data.x is missing")
    elif X.shape[1] != D:
        problems.append(f"observed_data.x has {X.shape[1]} features, the spec {D}")
    if problems:
        raise damaged(path, "its parts disagree: " + "; ".join(problems))
