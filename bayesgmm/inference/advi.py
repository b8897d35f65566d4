"""A fast approximate posterior: minibatch ADVI started from the EM solution.

For data too large for NUTS on the available hardware, :func:`fit_advi` fits a
Gaussian variational approximation (mean-field by default) to the same model
:func:`~bayesgmm.build_model` declares, by stochastic optimisation of the ELBO through
``pm.fit``. Each step evaluates the likelihood on a random ``pm.Minibatch`` of
``batch_size`` rows, scaled to the full data by ``total_size``; the approximation's
mean starts at the EM MAP solution (:func:`bayesgmm.inference.starts.em_start`) and its standard
deviations at the EM solution's large-sample standard errors. Independent draws from the
fitted approximation fill a DataTree with the same layout as the NUTS path (``posterior``
with one chain, ``log_likelihood``, ``observed_data``, ``constant_data``), so
prediction, relabelling, plots, save/load and reports work unchanged. The tree says what
it is: ``attrs["inference"] == "advi"``, ``attrs["approximate"] is True`` and a group
``variational`` holds the loss history (negative ELBO per step, on the full-data scale)
instead of MCMC sampler statistics.

The result is an approximation: mean-field ADVI ignores posterior correlations and
typically *underestimates* posterior variances, and there are no MCMC diagnostics
(R-hat, ESS) for independent draws; :func:`bayesgmm.diagnose` reports the ELBO's
convergence instead.

Optimiser
---------
Adam, with a step size decaying geometrically from ``learning_rate`` (0.01) to
``final_learning_rate`` (1e-4) over ``n_steps``, and the parameters averaged over the
second half of the steps (Polyak-Ruppert averaging). Adam moves every unconstrained
coordinate by about the step size per step whatever the gradient's scale (the
standardised model keeps those coordinates of order one), so 0.01 adjusts the
approximation's sds, started near the right size, within a few hundred steps. With a
constant step size the minibatch noise keeps the parameters jittering by about the step
size, many posterior sds at large N (a component mean's sd is about
``0.25 / sqrt(N / K)`` on the standardised scale). In one measurement during development
(N = 4,000, K = 2, 3,000 steps of 512 points), a constant 0.01 without averaging left
the fitted means up to 1.9 posterior sds from the EM solution; decaying to 1e-4, 0.2-0.5
sds; decaying and averaging, 0.07-0.2 sds.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
import xarray as xr

from bayesgmm.core.config import ADVIConfig
from bayesgmm.core.spec import GMMSpec
from bayesgmm.exceptions import VariationalFitError
from bayesgmm.inference.model import build_model
from bayesgmm.inference.sampling import pointwise_log_likelihood
from bayesgmm.inference.starts import em_start

__all__ = ["MAX_LOG_LIKELIHOOD_SIZE", "fit_advi"]

#: Largest draws x points for which the pointwise log-likelihood group is stored
#: (5e7 float64 values = 400 MB); above it the group is omitted and ``attrs`` say why.
MAX_LOG_LIKELIHOOD_SIZE = 50_000_000


@contextmanager
def _quiet(progressbar: bool):
    """Silence PyTensor's BLAS warning and, without a progress bar, PyMC's fit log."""
    log = logging.getLogger("pymc.variational.inference")
    level = log.level
    if not progressbar:
        log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
            yield
    finally:
        log.setLevel(level)


def _start_sds(em, spec: GMMSpec, n_obs: int) -> dict[str, np.ndarray]:
    """Rough posterior sds of the free variables on the unconstrained scale, from EM.

    Large-sample standard errors at the EM solution, with ``n_k = N w_k`` points per
    component: ``means_z`` sd_z / sqrt(n_k); log ``sds_z`` 1 / sqrt(2 n) (n the points
    behind each sd); simplex ``weights`` (log-ratios) and LKJ ``chol_corr`` (Fisher-z
    like coordinates) 1 / sqrt(n_k). The approximation's sds start there, so the optimiser
    only refines them (one start 3x too wide was still too wide after 1,500 steps).
    """
    K, D, fam = spec.n_components, spec.n_features, spec.family
    n_k = np.clip(np.asarray(em.weights, dtype=float) * n_obs, 1.0, None)  # (K,)
    cov_z = np.asarray(em.covariance_matrices()) / np.outer(spec.scale, spec.scale)[None]
    sd_z = np.sqrt(np.diagonal(cov_z, axis1=-2, axis2=-1))  # (K, D)
    out = {
        "weights": 1.0 / np.sqrt(n_k[:-1]),
        "means_z": sd_z / np.sqrt(n_k)[:, None],
    }
    # the points behind each sd: a component's (or all, when shared), times D when one sd
    # serves every feature
    n_sd = n_k if "component" in fam.sd_dims else np.full(1, float(n_obs))
    if "feature" not in fam.sd_dims:
        n_sd = D * n_sd
    shape = tuple({"component": K, "feature": D}[d] for d in fam.sd_dims)
    per_component = n_sd[:, None] if len(shape) == 2 else n_sd
    out["sds_z"] = np.broadcast_to(1.0 / np.sqrt(2.0 * per_component), shape)
    if spec.has_corr:
        m = D * (D - 1) // 2
        if fam.per_component:
            out["chol_corr"] = np.broadcast_to(1.0 / np.sqrt(n_k)[:, None], (K, m))
        else:
            out["chol_corr"] = np.full(m, 1.0 / np.sqrt(n_obs))
    return out


def _inference(vi_model: pm.Model, start: dict, start_sd: dict, method: str, seed: int):
    """The ``pm.ADVI`` / ``pm.FullRankADVI`` object: mean at ``start``, sds ``start_sd``."""
    cls = pm.ADVI if method == "advi" else pm.FullRankADVI
    inference = cls(model=vi_model, start=start, random_seed=seed)
    group = inference.approx.groups[0]
    sd = np.full(group.ddim, float(np.min(start_sd["means_z"])))  # any variable not in start_sd
    for rv in vi_model.free_RVs:
        _, slc, shape, _ = group.ordering[vi_model.rvs_to_values[rv].name]
        if rv.name in start_sd:
            sd[slc] = np.broadcast_to(start_sd[rv.name], shape).ravel()
    rho = np.log(np.expm1(sd))  # sd = softplus(rho)
    if method == "advi":
        group.shared_params["rho"].set_value(rho)
    else:  # the diagonal of the Cholesky factor (softplus of its entries)
        L = group.shared_params["L_tril"]
        rows, cols = group.tril_indices
        values = L.get_value()
        values[rows == cols] = rho
        L.set_value(values)
    # Report the loss as the negative ELBO on the full-data scale. PyMC divides it by a
    # "normalising constant" meant to be N / batch_size, but for a 2-D observed variable
    # (pymc 6.4) it computes (N / batch_size) * (N / n_features) instead.
    inference.approx.scale_cost_to_minibatch = False
    return inference


def _schedule(params, cfg: ADVIConfig):
    """Adam's decaying step size, and running averages of the iterates over the second half.

    Returns ``(learning_rate, updates, averages)``: a symbolic step size, the updates
    that advance the step counter and the averages (for ``pm.fit``'s ``more_updates``),
    and ``{param: average}``, copied into the approximation after the fit. Averaging the
    iterates (Polyak-Ruppert) removes most of the minibatch noise that a decaying step
    size alone leaves in the final parameters.
    """
    step = pytensor.shared(np.float64(0.0), name="advi_step")
    decay = cfg.final_learning_rate / cfg.learning_rate
    learning_rate = cfg.learning_rate * decay ** (step / max(cfg.n_steps - 1, 1))
    first = cfg.n_steps // 2
    weight = pt.switch(pt.ge(step, first), 1.0 / (step - first + 1.0), 0.0)
    averages = {p: pytensor.shared(p.get_value(), name=f"{p.name}_average") for p in params}
    updates = {step: step + 1.0}
    updates.update({a: a + weight * (p - a) for p, a in averages.items()})
    return learning_rate, updates, averages


def fit_advi(
    X,
    spec: GMMSpec,
    em,
    config: Mapping[str, Any] | ADVIConfig | None = None,
    *,
    model: pm.Model | None = None,
) -> tuple[xr.DataTree, Any]:
    """Fit minibatch ADVI from the EM start and return draws in the NUTS path's layout.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Validated data (as returned by :func:`~bayesgmm.make_spec`).
    spec : GMMSpec
    em : EMResult
        The EM MAP solution: the approximation's mean starts there.
    config : dict or ADVIConfig, optional
        See :class:`ADVIConfig`.
    model : pm.Model, optional
        The full-data model, ``build_model(X, spec=spec)`` (built when not given). The
        optimisation runs on a copy whose observed variable is a minibatch.

    Returns
    -------
    idata : xarray.DataTree
        ``posterior`` (chain 1 x ``draws`` independent draws; the same variables and
        dims as NUTS: ``weights``, ``means``, ``sds``, ``covariance``, ``correlation``,
        ...), ``log_likelihood`` (omitted, with the reason in ``attrs``, when
        ``draws x N > 5e7``), ``observed_data`` and ``constant_data`` with all N
        points, and ``variational``: ``loss`` (step) = negative ELBO per step on the
        full-data scale, settings in its ``attrs``. Root ``attrs``:
        ``inference="advi"``, ``approximate=True``.
    approx : pymc Approximation
        The fitted approximation (``approx.sample``, ``approx.hist``, ...).

    Raises
    ------
    VariationalFitError
        If the ELBO became NaN or infinite.

    Examples
    --------
    >>> from bayesgmm import fit_em, load_faithful, make_spec
    >>> X, spec = make_spec(load_faithful(), 2)
    >>> em = fit_em(X, 2, prior=spec.priors.to_em_prior("full"), random_seed=0)
    >>> idata, approx = fit_advi(X, spec, em, {"n_steps": 2000, "progressbar": False,
    ...                                       "random_seed": 0})  # doctest: +SKIP
    >>> idata.attrs["inference"], idata["posterior"].sizes["chain"]  # doctest: +SKIP
    ('advi', 1)
    """
    cfg = ADVIConfig.from_dict(config)
    X = np.asarray(X, dtype=float)
    n_obs = X.shape[0]
    if model is None:
        model = build_model(X, spec=spec)
    minibatch = cfg.batch_size < n_obs
    vi_model = build_model(X, spec=spec, batch_size=cfg.batch_size if minibatch else None)
    rng = np.random.default_rng(cfg.random_seed)
    fit_seed, draw_seed = (int(s) for s in rng.integers(2**31 - 1, size=2))
    start, start_sd = em_start(em, spec), _start_sds(em, spec, n_obs)
    with _quiet(cfg.progressbar):
        inference = _inference(vi_model, start, start_sd, cfg.method, fit_seed)
        learning_rate, updates, averages = _schedule(inference.approx.params, cfg)
        try:
            approx = pm.fit(
                cfg.n_steps,
                method=inference,
                model=vi_model,
                obj_optimizer=pm.adam(learning_rate=learning_rate),
                more_updates=updates,
                progressbar=cfg.progressbar,
            )
        except FloatingPointError as exc:
            raise _failure(cfg, inference.hist, str(exc).splitlines()[0]) from exc
        for param, average in averages.items():
            param.set_value(average.get_value())
        loss = np.asarray(approx.hist, dtype=float)
        if not np.all(np.isfinite(loss)):
            raise _failure(cfg, loss, "the loss became infinite")
        with model:  # the full-data model: observed/constant data with all N points
            idata = approx.sample(cfg.draws, random_seed=draw_seed)
    for group in ("sample_stats", "sample_stats_prior"):  # empty: no MCMC statistics
        if group in idata.children:
            del idata[group]
    size = cfg.draws * n_obs
    if size <= MAX_LOG_LIKELIHOOD_SIZE:
        idata["log_likelihood"] = pointwise_log_likelihood(model, idata["posterior"].to_dataset())
        idata.attrs.pop("log_likelihood", None)
    else:
        idata.attrs["log_likelihood"] = (
            f"omitted: draws x points = {size:,} > {MAX_LOG_LIKELIHOOD_SIZE:,} "
            f"({size * 8 / 1e9:.1f} GB); compute it on a thinned posterior with "
            "bayesgmm.inference.sampling.pointwise_log_likelihood if needed"
        )
    idata["variational"] = xr.Dataset(
        {"loss": (("step",), loss)},
        coords={"step": np.arange(1, loss.size + 1)},
        attrs={
            **{k: v for k, v in cfg.to_dict().items() if v is not None},
            "n_obs": int(n_obs),
            "batch_size": int(cfg.batch_size if minibatch else n_obs),
            "start": "EM solution, sds its large-sample standard errors",
            "optimizer": "adam, step size decaying geometrically",
            "loss": "negative ELBO on the full-data scale (minibatch log-likelihood x N / batch)",
        },
    )
    idata.attrs.update(inference="advi", approximate=True, advi_method=cfg.method)
    idata.attrs.pop("nuts_sampler", None)
    return idata, approx


def _failure(cfg: ADVIConfig, loss, what: str) -> VariationalFitError:
    bad = ~np.isfinite(np.asarray(loss, dtype=float))
    at = int(np.argmax(bad)) + 1 if bad.any() else bad.size + 1  # PyMC drops the NaN step
    where = f" at step {at:,} of {cfg.n_steps:,}"
    return VariationalFitError(
        f"minibatch ADVI failed{where}: {what}. Lower learning_rate (now "
        f"{cfg.learning_rate}), raise batch_size (now {cfg.batch_size}), try fewer components, "
        "or use NUTS (inference='nuts')."
    )
