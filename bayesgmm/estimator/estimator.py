"""``BayesianGMM``: the scikit-learn-style estimator built on the model builder.

The estimator runs the pipeline -- validate once, EM start, the PyMC model, NUTS (or
ADVI), relabelling, diagnostics -- and keeps what it leaves in one :class:`FitState`.
Its predictions, plots and reports are the core and analysis functions applied to that
state; PyMC, PyTensor and JAX are imported only when a fit (or ``model_``) needs them,
so a loaded model predicts without them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesgmm.core import predict as _predict
from bayesgmm.core.background import check_noise, check_noise_init
from bayesgmm.core.config import ADVIConfig, SamplerConfig
from bayesgmm.core.data import check_new_data, check_sample_weight, row_index, rows_of
from bayesgmm.core.draws import (
    Draws,
    missing_of,
    posterior_dataset,
    training_data,
    training_index,
    training_labels,
    training_noise,
    training_weights,
    with_row_index,
)
from bayesgmm.core.labels import check_labels
from bayesgmm.core.noise import check_noise_cov
from bayesgmm.core.relabel import relabel
from bayesgmm.core.spec import make_spec
from bayesgmm.estimator import io
from bayesgmm.estimator.advice import warn_on_sampling_trouble
from bayesgmm.estimator.figures import FigureMethods
from bayesgmm.estimator.params import Params
from bayesgmm.estimator.posterior import fit_state, validate_params
from bayesgmm.estimator.state import FitState
from bayesgmm.exceptions import ConfigError, NotFittedError

if TYPE_CHECKING:  # pragma: no cover
    import pymc as pm

    from bayesgmm.analysis.diagnostics import DiagnosticsReport

__all__ = ["BayesianGMM", "load", "save"]


def _state_field(name: str, doc: str) -> property:
    """A fitted attribute: ``name`` of the estimator's :class:`FitState`."""
    return property(lambda self: getattr(self._fitted(), name), doc=doc)


class BayesianGMM(Params, FigureMethods):
    """Fully Bayesian Gaussian mixture: EM MAP start, then NUTS (or minibatch ADVI) via PyMC.

    Parameters
    ----------
    n_components : int, default=2
        Number of mixture components K.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
    priors : dict, optional
        Prior overrides merged over the data-scaled defaults, e.g.
        ``{"weights": Prior("Dirichlet", a=2.0)}``; see :mod:`bayesgmm.core.priors`.
    sampler : dict or SamplerConfig, optional
        ``draws``, ``tune``, ``chains``, ``cores``, ``target_ess``, ``max_time``,
        ``multimodal``, ...; see :class:`SamplerConfig`.
    em : dict, optional
        Settings for the EM start: ``n_init`` (default 10), ``init``, ``max_iter``, ``tol``.
    relabel : {"stephens", "pivot"} or None, default="stephens"
        Relabel draws to one labelling (see :mod:`bayesgmm.core.relabel`): Stephens' algorithm
        started from pivot alignment to the EM solution. ``idata_["posterior"]`` is then
        relabelled and ``idata_["posterior_raw"]`` keeps the sampler's draws. ``None``
        keeps the sampler's labels.
    inference : {"nuts", "advi"}, default="nuts"
        ``"nuts"``: MCMC with the ``sampler`` settings. ``"advi"``: a fast *approximate*
        posterior for data too large for NUTS, by minibatch ADVI from the EM solution
        (:func:`bayesgmm.inference.advi.fit_advi`, ``advi`` settings; ``sampler`` is then unused).
        The result has the same layout (one chain of independent draws) and is labelled
        approximate in ``summary()``, ``diagnose()`` and reports; mean-field ADVI
        typically underestimates posterior variances.
    advi : dict or ADVIConfig, optional
        ``n_steps``, ``batch_size``, ``draws``, ``learning_rate``,
        ``final_learning_rate``, ``method``, ``random_seed``, ``progressbar``; see
        :class:`~bayesgmm.ADVIConfig`. Used when ``inference="advi"``.
    missing : {"error", "marginalize"}, default="error"
        What a NaN in the data means. ``"error"``: bad input, refused. ``"marginalize"``:
        a value missing at random; each point's likelihood is that of its observed
        coordinates (the Gaussian marginal), in EM and under NUTS alike, predictions
        accept partially observed points, and :meth:`impute` gives posterior draws of the
        missing values. See :mod:`bayesgmm.core.missing`.
    noise : bool or float, default=False
        A background-noise component (Banfield & Raftery 1993, mclust's ``Vinv``;
        :mod:`bayesgmm.core.background`): uniform over the data's bounding box (``True``)
        or over a region of the given volume (a number, in the data's units), with its own
        weight ``noise_weight``, so that scattered outliers do not widen the Gaussian
        components. ``weights`` are then the Gaussians' shares of the clustered points
        (component ``k``'s mixture weight is ``(1 - noise_weight) * weights[k]``);
        memberships get a last column, the background's, and :meth:`predict` gives -1 for
        its points; :meth:`flag_anomalies` flags them. NUTS only; not with missing values
        or measurement errors.

    Attributes
    ----------
    state_ : FitState
        Everything the fit left behind, in one object (the attributes below read it).
    em_ : EMResult
        The EM MAP solution that started every chain.
    model_ : pm.Model
        Built by ``fit``; rebuilt from the training data when first used after ``load``
        or unpickling.
    idata_ : xarray.DataTree
        ``posterior``, ``sample_stats``, ``log_likelihood``, ``observed_data`` groups;
        when chains settled in different modes, ``modes`` (and, stacked,
        ``posterior_chains``: every chain sampled; see :mod:`bayesgmm.analysis.modes`).
    spec_ : GMMSpec
    relabel_info_ : RelabelInfo or None
        How many draws were permuted per chain (and the permutations).
    diagnostics_ : DiagnosticsReport
        Convergence checks of the relabelled posterior, made at the end of ``fit`` (on
        first use after ``load``); for ``inference="advi"``: the ELBO's convergence, no
        MCMC diagnostics.
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
        advi: Mapping[str, Any] | ADVIConfig | None = None,
        missing: str = "error",
        noise: bool | float = False,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.priors = priors
        self.sampler = sampler
        self.em = em
        self.relabel = relabel
        self.inference = inference
        self.advi = advi
        self.missing = missing
        self.noise = noise

    # -- fitting ---------------------------------------------------------------------
    def _validate_params(self) -> tuple[SamplerConfig, dict[str, Any], ADVIConfig | None]:
        return validate_params(self.get_params())

    def fit(
        self,
        X,
        y=None,
        *,
        sample_weight=None,
        noise_cov=None,
        feature_names: Sequence[str] | None = None,
        noise_init=None,
    ) -> BayesianGMM:
        """Fit the posterior: EM MAP start, then NUTS (or, approximately, ADVI) from it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            numpy array or pandas DataFrame (column names become the ``feature`` coords).
        y : array-like of shape (n_samples,), optional
            Known labels (a semi-supervised fit, :mod:`bayesgmm.core.labels`): component
            ``k`` in ``0..n_components-1`` for a point known to belong to it, ``-1`` where
            unknown. Labelled points enter the likelihood through their own component
            only and keep it in every prediction of the training data; the components keep
            the labels' numbering through relabelling. With every point labelled it is a
            Gaussian model per component (see :class:`bayesgmm.BayesianGMMClassifier`
            for classification by class names).
        sample_weight : array-like of shape (n_samples,), optional
            Frequency weights: row ``i`` counts as ``w_i`` copies of itself (the
            likelihood is ``sum_i w_i log p(x_i)``; the EM start and the data-scaled
            default priors are weighted alike); not importance weights. Not available with
            ``inference="advi"``; PSIS-LOO (stacking of modes, LOO-PIT) is refused.
        noise_cov : array-like of shape (n_samples, n_features[, n_features]), optional
            Known measurement errors (covariances, or variances): the mixture is that of
            the true values, ``p(x_i) = sum_k w_k N(x_i | mu_k, Sigma_k + S_i)`` (extreme
            deconvolution, :mod:`bayesgmm.core.noise`), and so are predictions and draws.
        feature_names : sequence of str, optional
        noise_init : array-like of bool, shape (n_samples,), optional
            With ``noise``: the points guessed to be noise, where every EM start begins
            (mclust's ``initialization = list(noise = ...)``; see :func:`~bayesgmm.fit_em`).

        Returns
        -------
        self
        """
        sampler, em_kwargs, advi = self._validate_params()
        given, (X, spec) = X, make_spec(X, self.n_components, self.covariance_type, self.priors,
                            feature_names, sample_weight=sample_weight,
                            missing=self.missing)  # fmt: skip
        weights = check_sample_weight(sample_weight, X)
        noise = check_noise_cov(noise_cov, X)
        labels = check_labels(y, X.shape[0], spec.n_components)
        background = check_noise(self.noise, X)
        guess = check_noise_init(noise_init, X.shape[0], spec.n_components, background, labels)
        state, model = fit_state(X, weights, spec, sampler, em_kwargs, advi, self.relabel,
                                 self.priors, self.missing, noise, labels, background,
                                 guess)  # fmt: skip
        self._set_state(replace(state, idata=with_row_index(state.idata, given)), model=model)
        self._warn_on_sampling_trouble()
        return self

    # -- the fitted state ---------------------------------------------------------------
    def _set_state(self, state: FitState, model=None) -> None:
        self.__dict__["_state"] = state
        self.__dict__["_model"] = model

    @classmethod
    def _from_state(cls, params: Mapping[str, Any], state: FitState) -> BayesianGMM:
        """An estimator with these constructor parameters (those this version knows: a
        newer bayesgmm may have added some) and this fitted state (as ``load`` gives)."""
        valid = set(cls._get_param_names())
        gmm = cls(**{k: v for k, v in params.items() if k in valid})
        gmm._set_state(state)
        return gmm

    def _fitted(self) -> FitState:
        state = self.__dict__.get("_state")
        if state is None:
            raise NotFittedError(
                "this BayesianGMM is not fitted yet; call fit(X) before using this method."
            )
        return state

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_model", None)  # a pm.Model does not pickle; rebuilt on first use
        return state

    @property
    def state_(self) -> FitState:
        """Everything the fit left behind (see :class:`FitState`)."""
        return self._fitted()

    spec_ = _state_field("spec", "The model's specification (:class:`GMMSpec`).")
    em_ = _state_field("em", "The EM MAP solution that started every chain (:class:`EMResult`).")
    idata_ = _state_field("idata", "The posterior ``xarray.DataTree``.")
    sampler_config_ = _state_field("sampler_config", "The sampler settings used.")
    advi_config_ = _state_field("advi_config", "The ADVI settings used (None for NUTS fits).")
    relabel_info_ = _state_field("relabel_info", "What relabelling did (None: not relabelled).")

    @property
    def feature_names_in_(self) -> list[str]:
        return list(self._fitted().spec.feature_names)

    @property
    def n_features_in_(self) -> int:
        return self._fitted().spec.n_features

    @property
    def diagnostics_(self) -> DiagnosticsReport:
        state = self._fitted()
        if state.diagnostics is None:  # after load or unpickling: a function of the draws
            state.diagnostics = self.diagnose()
        return state.diagnostics

    @property
    def model_(self) -> pm.Model:
        """The ``pm.Model`` of the fit, rebuilt from the training data and spec when it is
        not at hand (after ``load`` or unpickling: a ``pm.Model`` does not pickle)."""
        state = self._fitted()
        model = self.__dict__.get("_model")
        if model is None:
            from bayesgmm.inference.model import build_model

            idata = state.idata
            model = build_model(training_data(idata), spec=state.spec,
                                sample_weight=training_weights(idata),
                                noise_cov=training_noise(idata), labels=training_labels(idata),
                                background=idata["posterior"].attrs.get("background"))  # fmt: skip
            self.__dict__["_model"] = model
        return model

    def relabelled(self) -> BayesianGMM:
        """This estimator with its posterior relabelled to the EM solution's labelling.

        ``self`` when it is relabelled already (its tree has ``posterior_raw``) or has no
        labels to switch (K = 1); otherwise a shallow copy (``self`` is not changed), whose
        diagnostics are those of the relabelled draws.
        """
        state = self._fitted()
        if "posterior_raw" in state.idata.children or state.spec.n_components == 1:
            return self
        tree, info = relabel(state.idata, reference=state.em)
        out = copy.copy(self)
        out._set_state(replace(state, idata=tree, relabel_info=info, diagnostics=None),
                       model=self.__dict__.get("_model"))  # fmt: skip
        return out

    @property
    def posterior(self) -> xr.Dataset:
        """The posterior group as an ``xarray.Dataset``."""
        return self.idata_["posterior"].to_dataset()

    def summary(self, var_names: Sequence[str] | None = None, **kwargs: Any) -> pd.DataFrame:
        """ArviZ summary (mean, sd, HDI, MCSE, ESS, R-hat) of the posterior; see
        :func:`bayesgmm.analysis.summary.posterior_summary`."""
        from bayesgmm.analysis.summary import posterior_summary

        return posterior_summary(self.idata_, var_names, **kwargs)

    # -- predictions (bayesgmm.core.predict / bayesgmm.analysis.ppc) ----------------------
    def _new_data(self, X) -> np.ndarray:
        spec = self.spec_
        return check_new_data(
            X, spec.n_features, spec.feature_names, missing=missing_of(self.idata_)
        )

    def _data_or_train(self, X) -> np.ndarray | None:
        """``X`` checked as new points, or None for the training rows (with their known
        labels and measurement errors: :func:`bayesgmm.core.summaries.row_terms`)."""
        return None if X is None else self._new_data(X)

    def predict_proba(self, X=None, **kwargs: Any):
        """Posterior mean membership probabilities, shape (n_samples, n_components) (one
        more column, last, for a background-noise component: ``noise=True``). ``X=None``:
        the training rows, with their known labels and measurement errors; points passed
        are new points, whatever their values. Keyword arguments (``return_intervals``,
        ``prob``, ``kind``, ``max_draws``, ``chunk_size``, ``noise_cov``) go to
        :func:`bayesgmm.predict_proba`.
        """
        return _predict.predict_proba(self.idata_, self._data_or_train(X), **kwargs)

    def predict(self, X=None, **kwargs: Any) -> np.ndarray:
        """Most probable component of each point (-1: the background-noise component's);
        ``X=None``: the training rows, as in :meth:`predict_proba`."""
        return _predict.predict(self.idata_, self._data_or_train(X), **kwargs)

    def score_samples(self, X=None, **kwargs: Any):
        """Log posterior predictive density per point (:func:`bayesgmm.score_samples`;
        ``X=None``: the training rows, as in :meth:`predict_proba`); ``return_intervals=True``
        adds a 94% HDI over draws (``kind="eti"``: equal-tailed)."""
        return _predict.score_samples(self.idata_, self._data_or_train(X), **kwargs)

    def score(self, X, y=None) -> float:
        """Mean log posterior predictive density per point (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, *, random_seed=None) -> tuple[np.ndarray, np.ndarray]:
        """Draw points from the posterior predictive mixture; returns ``(X, components)``
        (component -1: the background-noise component's, uniform on its box)."""
        return _predict.sample(self.idata_, n_samples, random_seed=random_seed)

    def impute(self, X=None, **kwargs: Any):
        """``X`` (default: the training data) with its NaN filled by the missing values'
        posterior means, for a fit with ``missing="marginalize"``; keyword arguments
        (``return_intervals``, ``prob``, ...) go to :func:`bayesgmm.impute`."""
        from bayesgmm.core.impute import impute

        return impute(self.idata_, self._data_or_train(X), **kwargs)

    def assignments(self, X=None, **kwargs: Any) -> pd.DataFrame:
        """Per-point cluster, max probability, uncertainty, entropy and intervals; index:
        ``X``'s (``X=None``: the training rows, with the training DataFrame's index)."""
        table = _predict.assignments_table(self.idata_, self._data_or_train(X), **kwargs)
        return rows_of(table, training_index(self.idata_) if X is None else X)

    def membership_draws(self, X=None, **kwargs: Any) -> xr.DataArray:
        """Membership probabilities per draw, dims (chain, draw, obs, component); ``obs``
        labelled as :meth:`assignments` labels its rows."""
        out = _predict.membership_draws(self.idata_, self._data_or_train(X), **kwargs)
        index = training_index(self.idata_) if X is None else row_index(X)
        return out if index is None else out.assign_coords(obs=index.to_numpy())

    def co_clustering(self, X=None, **kwargs: Any) -> np.ndarray:
        """Posterior probability that two points share a component (n x n)."""
        X = self._data_or_train(X)
        return _predict.co_clustering(self.idata_, X, **kwargs)

    def flag_anomalies(
        self, X, *, quantile: float = 0.01, threshold: float | None = None, by: str | None = None
    ) -> pd.DataFrame:
        """Flag points of ``X`` whose log predictive density is below a threshold, or that
        the background-noise component more probably holds than any cluster.

        ``by="density"``: the threshold is ``threshold`` if given, else the ``quantile`` of
        the training points' scores. ``by="noise"`` (the default for a fit with ``noise``,
        unless a ``threshold`` is given): the points whose posterior mean membership of the
        background exceeds every component's (column ``noise_prob``). See
        :func:`bayesgmm.flag_anomalies`.
        """
        has_noise = "noise_weight" in self.idata_["posterior"]
        if by is None:  # a threshold given is a density threshold
            by = "noise" if has_noise and threshold is None else "density"
        if by not in ("density", "noise"):
            raise ConfigError(f"by must be 'density' or 'noise'; got {by!r}.")
        if by == "noise" and not has_noise:
            raise ConfigError("by='noise' needs a fit with a background-noise component "
                              "(BayesianGMM(..., noise=True)).")  # fmt: skip
        if by == "noise" and threshold is not None:
            raise ConfigError("threshold is a log-density threshold (by='density'); "
                              "by='noise' flags the points the background holds.")  # fmt: skip
        if by == "noise":  # scores and memberships in one pass over the draws
            from bayesgmm.core.summaries import row_terms, summarise

            X0, X = X, self._new_data(X)
            draws = Draws.from_dataset(posterior_dataset(self.idata_))
            res = summarise(draws, X, density=True, **row_terms(self.idata_, X, None))
            return rows_of(_predict.flag_anomalies(res.log_density, noise_proba=res.proba), X0)
        scores = self.score_samples(X)
        # the training rows scored as new points are: without their labels or errors
        train = None if threshold is not None else self.score_samples(training_data(self.idata_))
        table = _predict.flag_anomalies(scores, threshold=threshold, quantile=quantile,
                                        train_scores=train,
                                        train_weights=training_weights(self.idata_))  # fmt: skip
        return rows_of(table, X)

    def check_fit(self, **kwargs: Any) -> dict[str, Any]:
        """Posterior predictive draws, density overlays and LOO-PIT in one call."""
        from bayesgmm.analysis.ppc import check_fit

        return check_fit(self.idata_, **kwargs)

    # -- persistence ----------------------------------------------------------------------
    def save(self, path, *, overwrite: bool = False):
        """Save the fitted estimator to a directory (see :mod:`bayesgmm.estimator.io`).

        ``overwrite=True`` replaces only an earlier saved model, never other files.
        """
        try:
            state = self._fitted()
        except NotFittedError:
            raise NotFittedError(
                "only a fitted BayesianGMM can be saved; call fit(X) first."
            ) from None
        return io.write_model(path, self.get_params(), state, overwrite=overwrite)

    @classmethod
    def load(cls, path) -> BayesianGMM:
        """Load an estimator saved by :meth:`save`: identical predictions, no re-sampling.

        ``model_`` is rebuilt from the observed data when first used and ``diagnostics_``
        recomputed from the draws. Raises ``SavedModelNotFoundError`` (no such path),
        ``IncompatibleVersionError`` (a save format this version cannot read) or
        ``SavedModelError`` (not a saved model, or damaged: what is wrong is named).
        """
        return cls._from_state(*io.read_model(path))

    # -- diagnostics (figures: bayesgmm.estimator.figures) -------------------------------
    def diagnose(self, var_names: Sequence[str] | None = None) -> DiagnosticsReport:
        """Convergence diagnostics of the (relabelled) posterior; see :func:`bayesgmm.diagnose`.

        For an approximate (ADVI) fit: the ELBO's convergence, no MCMC diagnostics.
        """
        from bayesgmm.analysis.diagnostics import diagnose

        return diagnose(self.idata_, var_names)

    def _warn_on_sampling_trouble(self) -> None:
        report = self.diagnose()
        self._fitted().diagnostics = report
        warn_on_sampling_trouble(report)


def save(gmm: BayesianGMM, path, *, overwrite: bool = False):
    """Save a fitted estimator to the directory ``path``; see :meth:`BayesianGMM.save`."""
    if not isinstance(gmm, BayesianGMM):
        raise NotFittedError(f"only a fitted BayesianGMM can be saved; got {type(gmm).__name__}.")
    return gmm.save(path, overwrite=overwrite)


def load(path) -> BayesianGMM:
    """Load an estimator saved by :func:`save`; see :meth:`BayesianGMM.load`."""
    return BayesianGMM.load(path)
