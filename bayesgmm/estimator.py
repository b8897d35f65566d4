"""``BayesianGMM``: the scikit-learn-style estimator built on the model builder."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from bayesgmm import advi as _advi
from bayesgmm import ppc as _ppc
from bayesgmm import predict as _predict
from bayesgmm._validation import check_n_components, check_new_data
from bayesgmm.diagnostics import DiagnosticsReport
from bayesgmm.diagnostics import diagnose as _diagnose
from bayesgmm.em import EMResult, fit_em
from bayesgmm.exceptions import (
    ConfigError,
    DegenerateFitError,
    NotFittedError,
    SamplingWarning,
)
from bayesgmm.model import GMMSpec, build_model, make_spec
from bayesgmm.plots import plot_rank as _plot_rank
from bayesgmm.plots import plot_trace as _plot_trace
from bayesgmm.priors import COVARIANCE_TYPES
from bayesgmm.relabel import RELABEL_METHODS
from bayesgmm.relabel import relabel as _relabel
from bayesgmm.sampling import SamplerConfig, sample_posterior

__all__ = ["BayesianGMM"]

_EM_KEYS = ("n_init", "init", "max_iter", "tol")
SUMMARY_VARS = ("weights", "means", "sds", "correlation")
INFERENCE_METHODS = ("nuts", "advi")


class BayesianGMM:
    """Fully Bayesian Gaussian mixture: EM MAP start, then NUTS (or minibatch ADVI) via PyMC.

    Parameters
    ----------
    n_components : int, default=2
        Number of mixture components K.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    priors : dict, optional
        Prior overrides merged over the data-scaled defaults, e.g.
        ``{"weights": Prior("Dirichlet", a=2.0)}``; see :mod:`bayesgmm.priors`.
    sampler : dict or SamplerConfig, optional
        ``draws``, ``tune``, ``chains``, ``target_accept``, ``nuts_sampler``,
        ``random_seed``, ``progressbar``, ``cores``, ``jitter``; see :class:`SamplerConfig`.
    em : dict, optional
        Settings for the EM start: ``n_init`` (default 10), ``init``, ``max_iter``, ``tol``.
    relabel : {"stephens", "pivot"} or None, default="stephens"
        Relabel draws to one labelling (see :mod:`bayesgmm.relabel`): Stephens' algorithm
        started from pivot alignment to the EM solution. ``idata_["posterior"]`` is then
        relabelled and ``idata_["posterior_raw"]`` keeps the sampler's draws. ``None``
        keeps the sampler's labels.
    inference : {"nuts", "advi"}, default="nuts"
        ``"nuts"``: MCMC with the ``sampler`` settings. ``"advi"``: a fast *approximate*
        posterior for data too large for NUTS, by minibatch ADVI from the EM solution
        (:func:`bayesgmm.advi.fit_advi`, ``advi`` settings; ``sampler`` is then unused).
        The result has the same layout (one chain of independent draws) and is labelled
        approximate in ``summary()``, ``diagnose()`` and reports; mean-field ADVI
        typically underestimates posterior variances.
    advi : dict or ADVIConfig, optional
        ``n_steps``, ``batch_size``, ``draws``, ``learning_rate``,
        ``final_learning_rate``, ``method``, ``random_seed``, ``progressbar``; see
        :class:`~bayesgmm.advi.ADVIConfig`. Used when ``inference="advi"``.

    Attributes
    ----------
    em_ : EMResult
        The EM MAP solution that started every chain.
    model_ : pm.Model
    idata_ : xarray.DataTree
        ``posterior``, ``sample_stats``, ``log_likelihood``, ``observed_data`` groups.
    spec_ : GMMSpec
    relabel_info_ : RelabelInfo or None
        How many draws were permuted per chain (and the permutations).
    diagnostics_ : DiagnosticsReport
        Convergence checks of the relabelled posterior, made at the end of ``fit`` (for
        ``inference="advi"``: the ELBO's convergence, no MCMC diagnostics).
    advi_config_ : ADVIConfig or None
        The ADVI settings used (``None`` for NUTS fits).
    feature_names_in_ : list of str
    n_features_in_ : int

    Examples
    --------
    >>> from bayesgmm import BayesianGMM, load_faithful
    >>> gmm = BayesianGMM(2, sampler={"draws": 50, "tune": 50, "chains": 2,
    ...                              "random_seed": 1, "progressbar": False})
    >>> gmm = gmm.fit(load_faithful())  # doctest: +SKIP
    >>> gmm.idata_.posterior["means"].dims  # doctest: +SKIP
    ('chain', 'draw', 'component', 'feature')

    Approximate, for very large N:

    >>> fast = BayesianGMM(2, inference="advi", advi={"n_steps": 5000, "random_seed": 1})
    >>> fast = fast.fit(load_faithful())  # doctest: +SKIP
    >>> fast.idata_.attrs["approximate"]  # doctest: +SKIP
    True
    """

    def __init__(
        self,
        n_components: int = 2,
        covariance_type: str = "full",
        priors: Mapping[str, Any] | None = None,
        sampler: Mapping[str, Any] | SamplerConfig | None = None,
        em: Mapping[str, Any] | None = None,
        relabel: str | None = "stephens",
        inference: str = "nuts",
        advi: Mapping[str, Any] | _advi.ADVIConfig | None = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.sampler = sampler
        self.em = em
        self.relabel = relabel
        self.inference = inference
        self.advi = advi

    # -- scikit-learn compatible parameter handling (clone works without sklearn) --------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as scikit-learn's ``get_params``."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> BayesianGMM:
        """Set constructor parameters; unknown names raise ``ConfigError``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ConfigError(f"unknown parameter {name!r} for BayesianGMM; valid: {valid}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        args = ", ".join(
            f"{k}={v!r}" for k, v in self.get_params().items() if v is not defaults.get(k)
        )
        return f"BayesianGMM({args})"

    # -- fitting ---------------------------------------------------------------------
    def _validate_params(self) -> tuple[SamplerConfig, dict[str, Any]]:
        check_n_components(self.n_components)
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ConfigError(
                f"unknown covariance_type {self.covariance_type!r}; valid: {list(COVARIANCE_TYPES)}"
            )
        if self.inference not in INFERENCE_METHODS:
            raise ConfigError(
                f"unknown inference {self.inference!r}; valid: {list(INFERENCE_METHODS)} "
                "('advi' is a fast approximation for very large data)."
            )
        _advi.ADVIConfig.from_dict(self.advi)
        sampler = SamplerConfig.from_dict(self.sampler)
        em = dict(self.em or {})
        unknown = sorted(set(em) - set(_EM_KEYS))
        if unknown:
            raise ConfigError(f"unknown em setting(s) {unknown}; valid: {list(_EM_KEYS)}")
        em.setdefault("n_init", 10)
        if self.relabel is not None and self.relabel not in RELABEL_METHODS:
            raise ConfigError(
                f"unknown relabel {self.relabel!r}; valid: {list(RELABEL_METHODS)} or None "
                "(keep the sampler's labels)."
            )
        return sampler, em

    def fit(self, X, y=None, *, feature_names: Sequence[str] | None = None) -> BayesianGMM:
        """Fit the posterior: EM MAP start, then NUTS (or, approximately, ADVI) from it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            numpy array or pandas DataFrame (column names become the ``feature`` coords).
        y : ignored
        feature_names : sequence of str, optional

        Returns
        -------
        self
        """
        sampler, em_kwargs = self._validate_params()
        advi = _advi.ADVIConfig.from_dict(self.advi) if self.inference == "advi" else None
        seed = advi.random_seed if advi is not None else sampler.random_seed
        X, spec = make_spec(X, self.n_components, self.covariance_type, self.priors, feature_names)
        try:
            em = fit_em(
                X,
                spec.n_components,
                covariance_type=spec.covariance_type,
                prior=spec.priors.to_em_prior(spec.covariance_type),
                random_seed=seed,
                feature_names=spec.feature_names,
                **em_kwargs,
            )
        except DegenerateFitError as exc:
            raise DegenerateFitError(
                f"{exc.reason} {self._remedies()}", reason=exc.reason
            ) from None
        self._warn_if_overparameterised(em, X.shape[0])
        model = build_model(X, spec=spec)
        if advi is not None:
            idata, _ = _advi.fit_advi(X, spec, em, advi, model=model)
        else:
            idata = sample_posterior(model, spec, em, sampler)
        self.relabel_info_ = None
        if self.relabel is not None:
            idata, self.relabel_info_ = _relabel(
                idata, reference=em, method=self.relabel, X=X, random_seed=seed
            )
        self.spec_: GMMSpec = spec
        self.em_: EMResult = em
        self._model = model
        self.idata_: xr.DataTree = idata
        self.feature_names_in_ = list(spec.feature_names)
        self.n_features_in_ = spec.n_features
        self.sampler_config_ = sampler
        self.advi_config_ = advi
        self._warn_on_sampling_trouble()
        return self

    def _warn_if_overparameterised(self, em: EMResult, n_points: int) -> None:
        n_params = em.n_parameters()
        if n_params <= n_points:
            return
        K, D = em.n_components, em.n_features
        fewer = {
            name: replace(em, covariance_type=name).n_parameters()
            for name in ("tied", "diag", "spherical")
            if name != em.covariance_type
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

    def _remedies(self) -> str:
        """What to try when the EM start collapses, in this estimator's own options."""
        own = f" (you set priors={self.priors!r})" if self.priors else ""
        return (
            f"Try fewer components (n_components={self.n_components} now), priors that are "
            f"not extremely narrow{own}, more EM starts (em={{'n_init': 50}}), standardising "
            "the data, or dropping duplicated rows / collinear features."
        )

    def _check_fitted(self) -> None:
        if not hasattr(self, "idata_"):
            raise NotFittedError(
                "this BayesianGMM is not fitted yet; call fit(X) before using this method."
            )

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior group as an ``xarray.Dataset``."""
        self._check_fitted()
        return self.idata_["posterior"].to_dataset()

    def summary(self, var_names: Sequence[str] | None = None, **kwargs: Any) -> pd.DataFrame:
        """ArviZ summary (mean, sd, HDI, MCSE, ESS, R-hat) of the posterior.

        Defaults to the weights, means, sds and (full/tied) correlations in the data's units.
        For an approximate (ADVI) fit the MCMC columns (MCSE, ESS, R-hat), meaningless for
        independent variational draws, are left out (``kind="stats"`` unless ``kind`` is
        given), the column header reads e.g. "approximate (minibatch ADVI)" and
        ``attrs["approximate"]`` is True.
        """
        self._check_fitted()
        approximate = _advi.is_approximate(self.idata_)
        if approximate:
            kwargs.setdefault("kind", "stats")
        post = self.posterior
        if var_names is None:
            var_names = [v for v in SUMMARY_VARS if v in post]
        post = post[list(var_names)]
        if "correlation" in post:  # keep the strictly lower triangle only
            corr = post["correlation"]
            i, j = np.tril_indices(self.n_features_in_, k=-1)
            pair = [
                f"{a}:{b}"
                for a, b in zip(
                    np.asarray(self.feature_names_in_)[i],
                    np.asarray(self.feature_names_in_)[j],
                    strict=True,
                )
            ]
            stacked = xr.concat(
                [corr.isel(feature=a, feature_bis=b, drop=True) for a, b in zip(i, j, strict=True)],
                dim=pd.Index(pair, name="pair"),
            )
            post = post.drop_vars("correlation", errors="ignore").drop_dims(
                "feature_bis", errors="ignore"
            )
            post["correlation"] = stacked
        table = az.summary(post, **kwargs)
        if approximate and isinstance(table, pd.DataFrame):
            table.columns.name = f"approximate ({_advi.label(self.idata_)})"
            table.attrs.update(approximate=True, inference="advi", note=_advi.describe(self.idata_))
        return table

    # -- predictions (bayesgmm.predict / bayesgmm.ppc) -----------------------------------
    def _new_data(self, X) -> np.ndarray:
        self._check_fitted()
        return check_new_data(X, self.n_features_in_, self.feature_names_in_)

    def _data_or_train(self, X) -> np.ndarray:
        if X is None:
            self._check_fitted()
            return _predict.training_data(self.idata_)
        return self._new_data(X)

    @property
    def model_(self) -> pm.Model:
        """The ``pm.Model`` of the fit, rebuilt from the training data and spec when it is
        not at hand (after ``load`` or unpickling: a ``pm.Model`` does not pickle)."""
        self._check_fitted()
        model = self.__dict__.get("_model")
        if model is None:
            model = build_model(_predict.training_data(self.idata_), spec=self.spec_)
            self._model = model
        return model

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_model", None)  # rebuilt on first use of model_
        return state

    def predict_proba(self, X, **kwargs: Any):
        """Posterior mean membership probabilities, shape (n_samples, n_components).

        Keyword arguments (``return_intervals``, ``prob``, ``kind``, ``max_draws``,
        ``chunk_size``) go to :func:`bayesgmm.predict.predict_proba`.
        """
        X = self._new_data(X)
        return _predict.predict_proba(self.idata_, X, **kwargs)

    def predict(self, X, **kwargs: Any) -> np.ndarray:
        """Most probable component of each point."""
        X = self._new_data(X)
        return _predict.predict(self.idata_, X, **kwargs)

    def score_samples(self, X, **kwargs: Any):
        """Log posterior predictive density of each point (see bayesgmm.predict.score_samples)."""
        X = self._new_data(X)
        return _predict.score_samples(self.idata_, X, **kwargs)

    def score(self, X, y=None) -> float:
        """Mean log posterior predictive density per point (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, *, random_seed=None) -> tuple[np.ndarray, np.ndarray]:
        """Draw points from the posterior predictive mixture; returns ``(X, components)``."""
        self._check_fitted()
        return _predict.sample(self.idata_, n_samples, random_seed=random_seed)

    def assignments(self, X=None, **kwargs: Any) -> pd.DataFrame:
        """Per-point cluster, max probability, uncertainty, entropy and intervals.

        ``X=None`` uses the training data.
        """
        X = self._data_or_train(X)
        return _predict.assignments_table(self.idata_, X, **kwargs)

    def membership_draws(self, X=None, **kwargs: Any) -> xr.DataArray:
        """Membership probabilities per draw, dims (chain, draw, obs, component)."""
        X = self._data_or_train(X)
        return _predict.membership_draws(self.idata_, X, **kwargs)

    def co_clustering(self, X=None, **kwargs: Any) -> np.ndarray:
        """Posterior probability that two points share a component (n x n)."""
        X = self._data_or_train(X)
        return _predict.co_clustering(self.idata_, X, **kwargs)

    def flag_anomalies(
        self, X, *, quantile: float = 0.01, threshold: float | None = None
    ) -> pd.DataFrame:
        """Flag points of ``X`` whose log predictive density is below a threshold.

        The threshold is ``threshold`` if given, else the ``quantile`` of the training
        points' scores.
        """
        scores = self.score_samples(X)
        train = None if threshold is not None else self.score_samples(self._data_or_train(None))
        return _predict.flag_anomalies(
            scores, threshold=threshold, quantile=quantile, train_scores=train
        )

    def plot_clusters(self, X=None, **kwargs: Any):
        """Data coloured by most probable cluster with ellipses; see bayesgmm.ppc.plot_clusters."""
        X = self._data_or_train(X)
        return _ppc.plot_clusters(self.idata_, X, **kwargs)

    def plot_ppc(self, **kwargs: Any):
        """Posterior predictive density overlays per feature; see bayesgmm.ppc.plot_ppc."""
        self._check_fitted()
        return _ppc.plot_ppc(self.idata_, **kwargs)

    def check_fit(self, **kwargs: Any) -> dict[str, Any]:
        """Posterior predictive draws, density overlays and LOO-PIT in one call."""
        self._check_fitted()
        return _ppc.check_fit(self.idata_, **kwargs)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path, *, overwrite: bool = False):
        """Save the fitted estimator to a directory; see :func:`bayesgmm.io.save`."""
        from bayesgmm import io

        self._check_fitted()
        return io.save(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path) -> BayesianGMM:
        """Load an estimator saved by :meth:`save`: identical predictions, no re-sampling."""
        from bayesgmm import io

        return io.load(path)

    # -- diagnostics and plots ----------------------------------------------------------
    def diagnose(self, var_names: Sequence[str] | None = None) -> DiagnosticsReport:
        """Convergence diagnostics of the (relabelled) posterior; see bayesgmm.diagnostics.

        For an approximate (ADVI) fit: the ELBO's convergence, no MCMC diagnostics.
        """
        self._check_fitted()
        return _diagnose(self.idata_, var_names)

    def plot_trace(self, var_names: Sequence[str] | None = None, **kwargs: Any):
        """Trace plots of the relabelled posterior (weights, means, sds by default)."""
        self._check_fitted()
        return _plot_trace(self.idata_, var_names, **kwargs)

    def plot_rank(self, var_names: Sequence[str] | None = None, **kwargs: Any):
        """Rank plots for spotting chains that disagree."""
        self._check_fitted()
        return _plot_rank(self.idata_, var_names, **kwargs)

    def _warn_on_sampling_trouble(self) -> None:
        report = self.diagnose()
        self.diagnostics_ = report
        if report.verdict != "ok":
            what = "ADVI (approximate fit)" if report.inference == "advi" else "sampling"
            warnings.warn(
                f"{what} diagnostics {report.verdict.upper()} on {report.failed}; treat the "
                f"posterior with care.\n{report}",
                SamplingWarning,
                stacklevel=3,
            )
