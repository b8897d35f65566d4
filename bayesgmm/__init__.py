"""bayesgmm: fully Bayesian Gaussian mixture models on PyMC and ArviZ.

EM MAP starts, NUTS sampling of a marginalised mixture, and uncertainty-aware
cluster assignments, with results as ``xarray.DataTree``.

The public names below are imported lazily (PEP 562): ``import bayesgmm`` loads
nothing heavy, and EM, BIC or a saved model's predictions never import PyMC, PyTensor
or JAX. The package is layered by dependency (see the README's "Layout"): ``core``
(numpy/scipy) < ``inference`` (PyMC/JAX) and ``analysis`` (ArviZ) < ``estimator`` <
``workflows`` < ``cli``.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from bayesgmm import exceptions as _exceptions

try:
    __version__ = version("bayesgmm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(_exceptions.__all__, "bayesgmm.exceptions"),
    "ADVIConfig": "bayesgmm.core.config",
    "SamplerConfig": "bayesgmm.core.config",
    "available_samplers": "bayesgmm.core.config",
    "load_faithful": "bayesgmm.core.datasets",
    "load_penguins": "bayesgmm.core.datasets",
    "EMPrior": "bayesgmm.core.em_prior",
    "EMResult": "bayesgmm.core.em_result",
    "fit_em": "bayesgmm.core.em",
    "COVARIANCE_TYPES": "bayesgmm.core.families",
    "MCLUST_MODELS": "bayesgmm.core.families",
    "GMMSpec": "bayesgmm.core.spec",
    "make_spec": "bayesgmm.core.spec",
    "Prior": "bayesgmm.core.priors",
    "default_priors": "bayesgmm.core.priors",
    "resolve_priors": "bayesgmm.core.priors",
    "RelabelInfo": "bayesgmm.core.relabel",
    "relabel": "bayesgmm.core.relabel",
    "best_bic": "bayesgmm.core.bic",
    "bic_table": "bayesgmm.core.bic",
    "degeneracy_reason": "bayesgmm.core.bic",
    **dict.fromkeys(
        [
            "assignments_table",
            "co_clustering",
            "count_nonempty",
            "membership_draws",
            "predict_proba",
            "score_samples",
        ],
        "bayesgmm.core.predict",
    ),
    "flag_anomalies": "bayesgmm.core.anomalies",
    "impute": "bayesgmm.core.impute",
    "impute_draws": "bayesgmm.core.impute",
    "build_model": "bayesgmm.inference.model",
    "sample_posterior": "bayesgmm.inference.sampling",
    "fit_advi": "bayesgmm.inference.advi",
    "DiagnosticsReport": "bayesgmm.analysis.diagnostics",
    "diagnose": "bayesgmm.analysis.diagnostics",
    "plot_bic": "bayesgmm.analysis.bic_plot",
    "plot_rank": "bayesgmm.analysis.plots",
    "plot_trace": "bayesgmm.analysis.plots",
    "check_fit": "bayesgmm.analysis.ppc",
    "plot_clusters": "bayesgmm.analysis.clusters",
    "plot_pairs": "bayesgmm.analysis.clusters",
    "plot_coclustering": "bayesgmm.analysis.uncertainty_plots",
    "plot_uncertainty": "bayesgmm.analysis.uncertainty_plots",
    "plot_ppc": "bayesgmm.analysis.ppc",
    "posterior_predictive": "bayesgmm.analysis.ppc",
    "write_report": "bayesgmm.analysis.report",
    "BayesianGMM": "bayesgmm.estimator.estimator",
    "load": "bayesgmm.estimator.estimator",
    "save": "bayesgmm.estimator.estimator",
    "LOOComparison": "bayesgmm.workflows.selection",
    "loo_compare": "bayesgmm.workflows.selection",
    "plot_selection": "bayesgmm.workflows.selection",
    "SparseMixtureResult": "bayesgmm.workflows.sparse",
    "sparse_mixture": "bayesgmm.workflows.sparse",
    "SBCResult": "bayesgmm.workflows.sbc",
    "BayesianGMMClassifier": "bayesgmm.workflows.classifier",
    "CVResult": "bayesgmm.workflows.crossval",
    "cross_validate": "bayesgmm.workflows.crossval",
    "run_sbc": "bayesgmm.workflows.sbc",
    "ModelSpec": "bayesgmm.cli.specs",
    "load_spec": "bayesgmm.cli.specs",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bayesgmm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
