"""bayesgmm: fully Bayesian Gaussian mixture models on PyMC and ArviZ.

EM MAP starts, NUTS sampling of a marginalised mixture, and uncertainty-aware
cluster assignments, with results as ``xarray.DataTree``.
"""

from importlib.metadata import PackageNotFoundError, version

from bayesgmm.advi import ADVIConfig, fit_advi
from bayesgmm.datasets import load_faithful, load_penguins
from bayesgmm.diagnostics import DiagnosticsReport, diagnose
from bayesgmm.em import EMPrior, EMResult, fit_em
from bayesgmm.estimator import BayesianGMM
from bayesgmm.exceptions import (
    BayesGMMError,
    ConfigError,
    ConvergenceWarning,
    DataError,
    DegenerateFitError,
    NotFittedError,
    SamplingWarning,
    VariationalFitError,
)
from bayesgmm.model import GMMSpec, build_model, make_spec
from bayesgmm.plots import plot_rank, plot_trace
from bayesgmm.ppc import check_fit, plot_clusters, plot_ppc, posterior_predictive
from bayesgmm.predict import (
    assignments_table,
    co_clustering,
    flag_anomalies,
    membership_draws,
    predict_proba,
    score_samples,
)
from bayesgmm.priors import Prior, default_priors, resolve_priors
from bayesgmm.relabel import RelabelInfo, relabel
from bayesgmm.report import write_report
from bayesgmm.sampling import SamplerConfig, available_samplers, sample_posterior
from bayesgmm.sbc import SBCResult, run_sbc
from bayesgmm.selection import (
    LOOComparison,
    SparseMixtureResult,
    best_bic,
    bic_table,
    count_nonempty,
    degeneracy_reason,
    loo_compare,
    plot_selection,
    sparse_mixture,
)
from bayesgmm.specs import ModelSpec, load_spec

try:
    __version__ = version("bayesgmm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "ADVIConfig",
    "BayesGMMError",
    "BayesianGMM",
    "ConfigError",
    "ConvergenceWarning",
    "DataError",
    "DegenerateFitError",
    "DiagnosticsReport",
    "EMPrior",
    "EMResult",
    "GMMSpec",
    "LOOComparison",
    "ModelSpec",
    "NotFittedError",
    "Prior",
    "RelabelInfo",
    "SBCResult",
    "SamplerConfig",
    "SamplingWarning",
    "SparseMixtureResult",
    "VariationalFitError",
    "__version__",
    "assignments_table",
    "available_samplers",
    "best_bic",
    "bic_table",
    "build_model",
    "check_fit",
    "co_clustering",
    "count_nonempty",
    "default_priors",
    "degeneracy_reason",
    "diagnose",
    "fit_advi",
    "fit_em",
    "flag_anomalies",
    "load_faithful",
    "load_penguins",
    "load_spec",
    "loo_compare",
    "make_spec",
    "membership_draws",
    "plot_clusters",
    "plot_ppc",
    "plot_rank",
    "plot_selection",
    "plot_trace",
    "posterior_predictive",
    "predict_proba",
    "relabel",
    "resolve_priors",
    "run_sbc",
    "sample_posterior",
    "score_samples",
    "sparse_mixture",
    "write_report",
]
