"""bayesgmm: fully Bayesian Gaussian mixture models on PyMC and ArviZ.

EM MAP starts, NUTS sampling of a marginalised mixture, and uncertainty-aware
cluster assignments, with results as ``xarray.DataTree``.
"""

from importlib.metadata import PackageNotFoundError, version

from bayesgmm.datasets import load_faithful, load_penguins
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
)
from bayesgmm.model import GMMSpec, build_model, make_spec
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
from bayesgmm.sampling import SamplerConfig, available_samplers, sample_posterior

try:
    __version__ = version("bayesgmm")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

__all__ = [
    "BayesGMMError",
    "BayesianGMM",
    "ConfigError",
    "ConvergenceWarning",
    "DataError",
    "DegenerateFitError",
    "EMPrior",
    "EMResult",
    "GMMSpec",
    "NotFittedError",
    "Prior",
    "SamplerConfig",
    "SamplingWarning",
    "__version__",
    "assignments_table",
    "available_samplers",
    "build_model",
    "check_fit",
    "co_clustering",
    "default_priors",
    "fit_em",
    "flag_anomalies",
    "load_faithful",
    "load_penguins",
    "make_spec",
    "membership_draws",
    "plot_clusters",
    "plot_ppc",
    "posterior_predictive",
    "predict_proba",
    "resolve_priors",
    "sample_posterior",
    "score_samples",
]
