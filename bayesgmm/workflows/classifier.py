"""Bayesian discriminant analysis with Gaussian mixtures (mclust's EDDA and MclustDA).

:class:`BayesianGMMClassifier` learns each class's density from labelled data and
classifies new points by Bayes' rule, ``p(c | x) = pi_c p_c(x) / sum_c' pi_c' p_c'(x)``,
averaged over the posterior, so every class probability comes with an interval:

``"EDDA"`` (Bremnes & Raftery's eigenvalue-decomposition discriminant analysis)
    one Gaussian per class, all of one covariance family (``"EEE"`` is linear
    discriminant analysis, ``"VVV"`` quadratic): a single :class:`~bayesgmm.BayesianGMM`
    with one component per class and every point's label known
    (:mod:`bayesgmm.core.labels`), so the class proportions ``pi`` are its weights.
    ``covariance_type="auto"`` chooses the family by BIC of the labelled EM fit, as
    mclust does.
``"MclustDA"`` (Fraley & Raftery 2002)
    a Gaussian mixture per class, with its number of components chosen by BIC (up to
    ``max_components``) unless ``n_components`` is given; the class proportions have
    the Dirichlet(1 + n_c) posterior of the class counts.

Posterior draws of the classes' models are paired draw by draw (they are independent
given the data), thinned to ``max_draws``. :func:`cross_validate`
(:mod:`bayesgmm.workflows.crossval`) gives the cross-validated error and Brier score
with standard errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayesgmm.core.bic import best_bic, bic_table
from bayesgmm.core.data import check_data, check_new_data
from bayesgmm.core.draws import posterior_dataset, thin
from bayesgmm.core.em import fit_em
from bayesgmm.core.families import MCLUST_MODELS
from bayesgmm.core.predict import draw_log_densities, membership_array
from bayesgmm.core.summaries import check_interval, interval
from bayesgmm.estimator.estimator import BayesianGMM
from bayesgmm.estimator.params import Params
from bayesgmm.exceptions import BayesGMMError, ConfigError, DataError, NotFittedError

__all__ = ["BayesianGMMClassifier"]

MODEL_TYPES = ("EDDA", "MclustDA")


class BayesianGMMClassifier(Params):
    """Classify with a Bayesian Gaussian mixture per class (scikit-learn's classifier API).

    Parameters
    ----------
    model_type : {"EDDA", "MclustDA"}, default="EDDA"
        One Gaussian per class of one shared covariance family, or a mixture per class
        (see the module docstring).
    covariance_type : str, default="full"
        The covariance family (any of :func:`bayesgmm.fit_em`'s); for EDDA also
        ``"auto"``: the mclust family with the best BIC of the labelled EM fit.
    n_components : int, optional
        MclustDA: components per class; by default each class's number is chosen by BIC
        among ``1..max_components`` (fewer when a class has few points).
    max_components : int, default=3
    priors, sampler, em : dict, optional
        As for :class:`~bayesgmm.BayesianGMM` (every class model gets them).
    max_draws : int, default=1000
        Posterior draws used for class probabilities (evenly thinned).

    Attributes
    ----------
    classes_ : ndarray
        The class labels, sorted (``predict`` returns these).
    models_ : list of BayesianGMM
        EDDA: one fully labelled fit (component ``c`` is class ``classes_[c]``);
        MclustDA: one fit per class.
    covariance_type_ : str
        The family used (chosen by BIC for ``"auto"``).
    n_components_ : list of int
        Components per class.
    class_counts_ : ndarray
    log_likelihood_ : float
        EDDA: the training log-likelihood at the EM solution, ``sum_c sum_{i in c} [log
        pi_c + log N(x_i | mu_c, Sigma_c)]``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris  # doctest: +SKIP
    >>> X, y = load_iris(return_X_y=True)  # doctest: +SKIP
    >>> clf = BayesianGMMClassifier("EDDA", "VEV").fit(X, y)  # doctest: +SKIP
    >>> p, lo, hi = clf.predict_proba(X[:2], return_intervals=True)  # doctest: +SKIP
    """

    _estimator_type = "classifier"

    def __init__(
        self,
        model_type: str = "EDDA",
        covariance_type: str = "full",
        n_components: int | None = None,
        max_components: int = 3,
        priors: Mapping[str, Any] | None = None,
        sampler: Mapping[str, Any] | None = None,
        em: Mapping[str, Any] | None = None,
        max_draws: int = 1000,
    ) -> None:
        self.model_type = model_type
        self.covariance_type = covariance_type
        self.n_components = n_components
        self.max_components = max_components
        self.priors = priors
        self.sampler = sampler
        self.em = em
        self.max_draws = max_draws

    def __sklearn_tags__(self):  # scikit-learn >= 1.6 asks estimators for their tags
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())  # fmt: skip

    # -- fitting ----------------------------------------------------------------------------
    def _check_settings(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ConfigError(
                f"unknown model_type {self.model_type!r}; valid: {list(MODEL_TYPES)}."
            )
        if self.n_components is not None and (
            not isinstance(self.n_components, int | np.integer) or self.n_components < 1
        ):
            raise ConfigError(f"n_components must be an integer >= 1 or None; got "
                              f"{self.n_components!r}.")  # fmt: skip
        if not isinstance(self.max_components, int | np.integer) or self.max_components < 1:
            raise ConfigError(f"max_components must be an integer >= 1; got "
                              f"{self.max_components!r}.")  # fmt: skip
        if self.covariance_type == "auto" and self.model_type != "EDDA":
            raise ConfigError("covariance_type='auto' (chosen by BIC) is for EDDA; give "
                              "MclustDA a family.")  # fmt: skip

    def fit(self, X, y) -> BayesianGMMClassifier:
        """Fit every class's model to the labelled data ``X`` (n, D), ``y`` (n,)."""
        self._check_settings()
        X, names = check_data(X)
        classes, codes = _check_classes(y, X.shape[0])
        counts = np.bincount(codes, minlength=len(classes))
        kwargs = {"priors": self.priors, "sampler": self.sampler, "em": self.em}
        if self.model_type == "EDDA":
            family = self.covariance_type
            if family == "auto":
                family = _best_family(X, codes, len(classes))
            _need_points(classes, counts, 2)
            model = BayesianGMM(len(classes), family, **kwargs)
            self.models_ = [model.fit(X, codes, feature_names=names)]
            self.n_components_ = [1] * len(classes)
            self.log_likelihood_ = float(model.em_.log_likelihood)
        else:
            family = self.covariance_type
            ks = [self._class_components(X[codes == c], family) for c in range(len(classes))]
            _need_points(classes, counts, np.maximum(ks, 2))
            self.models_ = [BayesianGMM(k, family, **kwargs).fit(X[codes == c], feature_names=names)
                            for c, k in enumerate(ks)]  # fmt: skip
            self.n_components_ = ks
            self.log_likelihood_ = float(sum(m.em_.log_likelihood for m in self.models_)
                                         + counts @ np.log(counts / counts.sum()))  # fmt: skip
        self.classes_, self.class_counts_, self.covariance_type_ = classes, counts, family
        self.feature_names_in_, self.n_features_in_ = names, X.shape[1]
        return self

    def _class_components(self, Xc: np.ndarray, family: str) -> int:
        if self.n_components is not None:
            return int(self.n_components)
        top = int(min(self.max_components, max(1, len(np.unique(Xc, axis=0)) // 5)))
        table = bic_table(Xc, range(1, top + 1), [family], n_init=10)
        return int(best_bic(table)["K"])

    # -- predictions ------------------------------------------------------------------------
    def _fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise NotFittedError(
                "this BayesianGMMClassifier is not fitted yet; call fit(X, y) first."
            )

    def proba_draws(self, X) -> np.ndarray:
        """``p(c | x_i)`` at every (thinned) posterior draw, shape (draws, n, classes)."""
        self._fitted()
        X = check_new_data(X, self.n_features_in_, self.feature_names_in_)
        if self.model_type == "EDDA":  # the memberships of the one labelled mixture
            post = thin(posterior_dataset(self.models_[0].idata_), self.max_draws)
            return membership_array(post, X).transpose(0, 2, 1)
        posts = [thin(posterior_dataset(m.idata_), self.max_draws) for m in self.models_]
        S = min(p.sizes["chain"] * p.sizes["draw"] for p in posts)
        log_dens = np.stack([draw_log_densities(p, X).reshape(-1, X.shape[0])[:S] for p in posts],
                            axis=2)  # (S, n, C)  # fmt: skip
        rng = np.random.default_rng(0)  # the class proportions' Dirichlet posterior
        log_pi = np.log(rng.dirichlet(1.0 + self.class_counts_, size=S))
        joint = log_dens + log_pi[:, None, :]
        joint -= joint.max(axis=2, keepdims=True)
        p = np.exp(joint)
        return p / p.sum(axis=2, keepdims=True)

    def predict_proba(self, X, *, return_intervals: bool = False, prob: float = 0.94,
                      kind: str = "hdi"):  # fmt: skip
        """Posterior mean class probabilities (n, classes); with ``return_intervals``,
        also their lower and upper interval ends (``kind`` "hdi" or "eti", mass ``prob``)."""
        check_interval(prob, kind)
        draws = self.proba_draws(X)
        mean = draws.mean(axis=0)
        if not return_intervals:
            return mean
        S, n, C = draws.shape
        lo, hi = interval(draws.reshape(S, n * C), prob, kind)
        return mean, lo.reshape(n, C), hi.reshape(n, C)

    def predict(self, X) -> np.ndarray:
        """The class with the highest posterior mean probability."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def score(self, X, y, sample_weight=None) -> float:
        """Accuracy on ``(X, y)``, as scikit-learn's classifiers."""
        hit = (self.predict(X) == np.asarray(y)).astype(float)
        return float(np.average(hit, weights=sample_weight))

    # -- persistence (bayesgmm.workflows.classifier_io) --------------------------------------
    def save(self, path, *, overwrite: bool = False):
        """Save the fitted classifier to a directory: its settings and classes, and each
        class model as a saved :class:`~bayesgmm.BayesianGMM`. ``overwrite=True``
        replaces only an earlier saved classifier, never other files."""
        from bayesgmm.workflows.classifier_io import save_classifier

        return save_classifier(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path) -> BayesianGMMClassifier:
        """Load a classifier saved by :meth:`save`: identical predictions, nothing re-fitted."""
        from bayesgmm.workflows.classifier_io import load_classifier

        return load_classifier(cls, path)


def _check_classes(y, n: int) -> tuple[np.ndarray, np.ndarray]:
    if y is None or isinstance(y, str) or np.ndim(y) != 1:
        raise DataError(f"y must be a 1-D sequence of class labels, one per row of X ({n}).")
    y = np.asarray(y)
    if y.shape[0] != n:
        raise DataError(f"y has {y.shape[0]} labels but X has {n} rows; give one per row.")
    if y.dtype.kind == "f" and np.isnan(y).any():
        raise DataError("y has missing class labels (NaN); every training point needs its class.")
    if y.dtype.kind == "O" and any(v is None for v in y):
        raise DataError("y has missing class labels (None); every training point needs its class.")
    classes, codes = np.unique(y, return_inverse=True)
    if len(classes) < 2:
        raise DataError(
            f"y has one class ({classes[0].item()!r}); a classifier needs at least two."
        )
    return classes, codes


def _need_points(classes, counts, needed) -> None:
    needed = np.broadcast_to(needed, counts.shape)
    short = np.flatnonzero(counts < needed)
    if short.size:
        c = short[0]
        names = [repr(classes[i].item()) for i in short]  # the labels as Python values
        raise DataError(
            f"class {names[0]} has {counts[c]} training point(s) but its model needs at "
            f"least {needed[c]} ({', '.join(names)} too few): give more labelled points, "
            "fewer components or merge classes."
        )


def _best_family(X: np.ndarray, codes: np.ndarray, C: int) -> str:
    """EDDA's family: the mclust model with the highest BIC of the labelled EM fit."""
    scores = {}
    for name in MCLUST_MODELS if X.shape[1] > 1 else ("E", "V"):
        try:
            fit = fit_em(X, C, covariance_type=name, prior=None, labels=codes, n_init=1)
        except BayesGMMError:  # a family that cannot be fitted is not chosen
            continue
        scores[name] = fit.bic()
    if not scores:
        raise DataError("no covariance family could be fitted to the labelled classes.")
    return max(scores, key=scores.get)
