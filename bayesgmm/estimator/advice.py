"""What the estimator tells its user when the data or the fit need attention.

The messages name the estimator's own options (``n_components``, ``priors``, ``em``,
``covariance_type``), not those of the lower-level functions it calls.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Any

from bayesgmm.core.em_result import EMResult
from bayesgmm.core.families import COVARIANCE_TYPES, family
from bayesgmm.exceptions import SamplingWarning

__all__ = ["collapse_remedies", "warn_if_overparameterised", "warn_on_sampling_trouble"]


def collapse_remedies(n_components: int, priors: Any) -> str:
    """What to try when the EM start collapses, in ``BayesianGMM``'s own options.

    Examples
    --------
    >>> collapse_remedies(3, None).startswith("Try fewer components (n_components=3 now)")
    True
    """
    own = f" (you set priors={priors!r})" if priors else ""
    return (
        f"Try fewer components (n_components={n_components} now), priors that are "
        f"not extremely narrow{own}, more EM starts (em={{'n_init': 50}}), standardising "
        "the data, or dropping duplicated rows / collinear features."
    )


def warn_if_overparameterised(em: EMResult, n_points: int) -> None:
    """A SamplingWarning, with the smaller families' parameter counts, when the model has
    more parameters than data points."""
    n_params = em.n_parameters()
    if n_params <= n_points:
        return
    K, D = em.n_components, em.n_features
    fewer = {
        name: replace(em, covariance_type=name).n_parameters()
        for name in COVARIANCE_TYPES
        if family(name).n_parameters(K, D) < family(em.covariance_type).n_parameters(K, D)
    }
    options = ", ".join(f"covariance_type={n!r} ({p:,})" for n, p in fewer.items())
    warnings.warn(
        f"this model has {n_params:,} parameters for {n_points:,} data points (K={K}, D={D}, "
        f"{em.covariance_type!r} covariance): more parameters than data, so the posterior "
        "is mostly the prior and NUTS needs long trajectories (slow sampling, possibly "
        f"poor diagnostics). Remedies: a smaller family ({options}), fewer components, "
        "stronger priors (e.g. priors={'corr': {'eta': 10.0}}), or more data.",
        SamplingWarning,
        stacklevel=3,
    )


def warn_on_sampling_trouble(report) -> None:
    """A SamplingWarning with the diagnostics report when its verdict is not ok."""
    if report.verdict != "ok":
        what = "ADVI (approximate fit)" if report.inference == "advi" else "sampling"
        warnings.warn(
            f"{what} diagnostics {report.verdict.upper()} on {report.failed}; treat the "
            f"posterior with care.\n{report}",
            SamplingWarning,
            stacklevel=4,
        )
