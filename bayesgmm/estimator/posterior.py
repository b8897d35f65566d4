"""From settings to the fit's posterior: checked settings, relabelling, modes, enough draws.

:func:`finish_posterior` relabels the draws (:mod:`bayesgmm.core.relabel`), then looks
for chains in different posterior modes (:mod:`bayesgmm.analysis.modes`) and, as the
sampler settings say (``multimodal``), stacks them or only records them.
:func:`enough_draws` is the check that ``target_ess`` asks the sampler to make after
each round of draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from bayesgmm.core.config import (
    INFERENCE_METHODS,
    RHAT_OK,
    ADVIConfig,
    SamplerConfig,
    em_settings,
    resolve_seed,
)
from bayesgmm.core.data import check_n_components
from bayesgmm.core.draws import training_weights
from bayesgmm.core.families import family
from bayesgmm.core.missing import check_missing
from bayesgmm.core.relabel import RELABEL_METHODS, relabel
from bayesgmm.exceptions import ConfigError, DegenerateFitError

__all__ = ["enough_draws", "finish_posterior", "validate_params"]


def validate_params(params: Mapping[str, Any]):
    """``BayesianGMM``'s parameters checked at once: (sampler, em, advi or None) settings.

    The settings of the inference that will run carry the seed that reproduces the fit:
    the user's ``random_seed``, or one drawn once here when it is None
    (:func:`~bayesgmm.core.config.resolve_seed`), so that ``sampler_config_`` (or
    ``advi_config_``), the saved model and the report record it.
    """
    check_n_components(params["n_components"])
    family(params["covariance_type"])
    if params["inference"] not in INFERENCE_METHODS:
        raise ConfigError(
            f"unknown inference {params['inference']!r}; valid: {list(INFERENCE_METHODS)} "
            "('advi' is a fast approximation for very large data)."
        )
    advi = ADVIConfig.from_dict(params["advi"])
    sampler = SamplerConfig.from_dict(params["sampler"])
    if params["inference"] == "nuts":
        backend = sampler.resolved_sampler()  # uninstalled: refused before any work
        if sampler.target_ess is not None and backend != "numpyro":
            raise ConfigError(
                f"target_ess draws in rounds with the numpyro backend only; this fit would "
                f"use {backend!r}. Use nuts_sampler='numpyro' (pip install 'bayesgmm[jax]') "
                "or set draws instead."
            )
    em = em_settings(params["em"])
    check_missing(params.get("missing", "error"))
    relabel_method = params["relabel"]
    if relabel_method is not None and relabel_method not in RELABEL_METHODS:
        raise ConfigError(
            f"unknown relabel {relabel_method!r}; valid: {list(RELABEL_METHODS)} or None "
            "(keep the sampler's labels)."
        )
    if params["inference"] == "advi":
        return sampler, em, resolve_seed(advi)
    return resolve_seed(sampler), em, None


def _mode_groups(idata: xr.DataTree, report, why: str | None = None) -> xr.DataTree:
    """Record modes that were only reported (``multimodal="report"``, or ``why`` stacking
    could not weigh them)."""
    from bayesgmm.analysis.modes import mode_group

    out = idata.copy()
    report.action = "reported"
    what = (
        "The chains were pooled as sampled (multimodal='report'); "
        "sampler={'multimodal': 'stack'} stacks them"
        if why is None
        else f"The chains were pooled as sampled: stacking could not weigh the modes ({why})"
    )
    out["modes"] = mode_group(report, np.full(len(report.modes), np.nan), what)
    return out


def finish_posterior(
    idata: xr.DataTree,
    reference,
    X: np.ndarray,
    relabel_method: str | None,
    random_seed: int | None,
    config: SamplerConfig | None,
):
    """Relabel, then find (and stack or record) posterior modes.

    Returns
    -------
    idata : DataTree
    relabel_info : RelabelInfo or None
    """
    info = None
    if relabel_method is not None:
        idata, info = relabel(
            idata, reference=reference, method=relabel_method, X=X, random_seed=random_seed
        )
    C, S = idata["posterior"].sizes["chain"], idata["posterior"].sizes["draw"]
    if config is None or C < 2 or S < 4 or "weights" not in idata["posterior"]:
        return idata, info
    from bayesgmm.analysis.modes import find_modes, stack_modes

    report = find_modes(idata)
    if report.multimodal:
        if training_weights(idata) is not None:
            idata = _mode_groups(
                idata, report, "stacking by PSIS-LOO is not defined here for frequency-weighted "
                "data (sample_weight)"
            )  # fmt: skip
        elif config.multimodal == "stack" and "log_likelihood" in idata.children:
            try:
                idata = stack_modes(idata, report)
            except ValueError as exc:  # PSIS-LOO of a mode failed, e.g. on a few draws
                reason = str(exc.__cause__ or exc).rstrip(".")
                idata = _mode_groups(idata, report, f"PSIS-LOO of a mode failed: {reason}")
        else:
            idata = _mode_groups(idata, report)
    return idata, info


def enough_draws(reference, X: np.ndarray, target_ess: int) -> Callable[[xr.DataTree], float]:
    """The check after each round of draws: how far the draws are towards the target.

    Returns a function of the draws so far giving the smallest bulk and tail ESS of the
    relabelled weights, means, sds and correlations as a fraction of ``target_ess``, over
    the chains that stayed in the best mode (all chains when they agree): 1.0 when the
    target is met and R-hat is at most 1.01, otherwise below 1 (so that the sampler can
    also tell from it how many more rounds the target would take).
    """
    import arviz_stats as azs

    from bayesgmm.analysis.diagnostics import DEFAULT_VARS, flat_parameters
    from bayesgmm.analysis.modes import find_modes

    def enough(tree: xr.DataTree) -> float:
        tree, _ = relabel(tree, reference=reference, method="pivot", X=X)
        report = find_modes(tree)
        best = report.modes[0].whole_chains(report.n_draws) or list(range(report.n_chains))
        post = tree["posterior"].to_dataset().isel(chain=best)
        flat = flat_parameters(post, [v for v in DEFAULT_VARS if v in post])
        ess = min(float(azs.ess(flat).min()), float(azs.ess(flat, method="tail").min()))
        fraction = ess / target_ess if np.isfinite(ess) else 0.0
        rhat_ok = post.sizes["chain"] < 2 or float(azs.rhat(flat).max()) <= RHAT_OK
        return 1.0 if fraction >= 1.0 and rhat_ok else min(fraction, 0.999)

    return enough


def fit_state(
    X, sample_weight, spec, sampler, em_kwargs, advi, relabel_method, priors, missing="error",
    noise_cov=None, labels=None, background=None, noise_init=None,
):  # fmt: skip
    """:meth:`BayesianGMM.fit <bayesgmm.BayesianGMM.fit>`'s pipeline on validated data:
    the EM start, the model, NUTS (or ADVI), relabelling and modes. Returns the
    :class:`~bayesgmm.estimator.state.FitState` and the ``pm.Model``. ``background``:
    ``log(1 / V)`` of a background-noise component (:mod:`bayesgmm.core.background`);
    ``noise_init``: the points EM's starts put in it (``check_noise_init``)."""
    from bayesgmm.core.em import _rng, fit_em_checked
    from bayesgmm.estimator.advice import collapse_remedies, warn_if_overparameterised
    from bayesgmm.estimator.state import FitState
    from bayesgmm.inference.model import build_model

    if sample_weight is not None and advi is not None:
        raise ConfigError(
            "sample_weight is not available with inference='advi' (minibatches of weighted "
            "rows are not implemented); use NUTS (inference='nuts')."
        )
    if noise_cov is not None and advi is not None:  # (with missing values: check_noise_cov)
        raise ConfigError("noise_cov is not available with inference='advi' (yet); use NUTS.")
    if labels is not None and advi is not None:
        raise ConfigError("known labels (y) are not available with inference='advi' (yet); "
                          "use NUTS.")  # fmt: skip
    if background is not None and advi is not None:
        raise ConfigError("a background-noise component (noise) is not available with "
                          "inference='advi' (yet); use NUTS.")  # fmt: skip
    if missing == "marginalize" and advi is not None and np.isnan(X).any():
        raise ConfigError(
            "missing values are not available with inference='advi' (minibatches of "
            "partially observed rows are not implemented); use NUTS (inference='nuts')."
        )
    seed = advi.random_seed if advi is not None else sampler.random_seed
    try:
        em = fit_em_checked(X, spec.feature_names, spec.n_components, spec.family,
                            spec.priors.to_em_prior(spec.covariance_type), rng=_rng(seed),
                            sample_weight=sample_weight, missing=missing,
                            noise_cov=noise_cov, labels=labels, background=background,
                            noise_init=noise_init, **em_kwargs)  # fmt: skip
    except DegenerateFitError as exc:
        raise DegenerateFitError(
            f"{exc.reason} {collapse_remedies(spec.n_components, priors)}", reason=exc.reason
        ) from None
    warn_if_overparameterised(em, X.shape[0])
    model = build_model(X, spec=spec, sample_weight=sample_weight, noise_cov=noise_cov,
                        labels=labels, background=background)  # fmt: skip
    if advi is not None:
        from bayesgmm.inference.advi import fit_advi

        idata, _ = fit_advi(X, spec, em, advi, model=model)
    else:
        from bayesgmm.inference.sampling import sample_posterior

        enough = None
        if sampler.target_ess is not None:
            enough = enough_draws(em, X, sampler.target_ess)
        idata = sample_posterior(model, spec, em, sampler, enough=enough)
    idata, relabel_info = finish_posterior(
        idata, em, X, relabel_method, seed, sampler if advi is None else None
    )
    if missing == "marginalize":  # predictions then accept partially observed points
        idata["posterior"].attrs["missing"] = missing
    return FitState(spec, em, idata, sampler, advi, relabel_info), model
