"""EM fits of Gaussian mixtures: maximum a posteriori (MAP) or maximum likelihood.

The fit is the starting point for NUTS (best of several EM restarts, as NumPyro's GMM
tutorial recommends) and a fast point estimate in its own right. :func:`fit_em`
returns an :class:`~bayesgmm.core.em_result.EMResult`; priors for the MAP fit are
:class:`~bayesgmm.core.em_prior.EMPrior` objects.

Numerics: log space throughout (log weights + component log-densities, logsumexp over
components, in the mixture engine :mod:`bayesgmm.core.engine`), Cholesky factors instead
of inverses, and sufficient statistics ``sum_i r_ik [1, x_i, x_i x_i^T]`` gathered with
one matrix product per iteration. Everything that depends on the covariance family (the
second moments, the M-step, the prior's covariance part) is the family record's
(:mod:`bayesgmm.core.families`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bayesgmm.core.background import check_noise, check_noise_init
from bayesgmm.core.checks import Constraint, check_settings, choice, integer, real
from bayesgmm.core.data import check_data, check_sample_weight
from bayesgmm.core.em_init import INIT_METHODS, check_start
from bayesgmm.core.em_missing import MissingEMRun
from bayesgmm.core.em_noise import NoiseEMRun
from bayesgmm.core.em_prior import EMPrior
from bayesgmm.core.em_result import EMResult
from bayesgmm.core.em_steps import EMRun, RunFailed
from bayesgmm.core.families import EM_COVARIANCE_TYPES, CovarianceFamily, family
from bayesgmm.core.labels import check_labels
from bayesgmm.core.missing import check_missing
from bayesgmm.core.noise import check_noise_cov
from bayesgmm.exceptions import ConfigError, ConvergenceWarning, DegenerateFitError

__all__ = ["INIT_METHODS", "EMPrior", "EMResult", "fit_em"]

_REMEDIES = (
    "Try fewer components, a larger reg_covar or the default prior (prior='default'), "
    "standardise the data, or drop duplicated rows / collinear features."
)

# fit_em's settings and what they may be; violations are reported together
FIT_CONSTRAINTS: dict[str, Constraint] = {
    "n_components": integer(1),
    "covariance_type": choice(EM_COVARIANCE_TYPES),
    "init": choice(INIT_METHODS),
    "n_init": integer(1),
    "tol": real(0),
    "max_iter": integer(1),
    "reg_covar": real(0),
    "prior": Constraint(
        lambda v: v is None or isinstance(v, EMPrior) or (isinstance(v, str) and v == "default"),
        "None (maximum likelihood), 'default' or an EMPrior",
    ),
}


# --------------------------------------------------------------------------- #
# Public entry point
# --------------------------------------------------------------------------- #


def fit_em(
    X: ArrayLike,
    n_components: int,
    *,
    covariance_type: str = "full",
    prior: EMPrior | str | None = "default",
    init: str = "k-means++",
    n_init: int = 5,
    tol: float = 1e-8,
    max_iter: int = 1000,
    reg_covar: float = 1e-6,
    random_seed: int | np.random.Generator | None = None,
    means_init: ArrayLike | None = None,
    weights_init: ArrayLike | None = None,
    feature_names: Sequence[str] | None = None,
    sample_weight: ArrayLike | None = None,
    missing: str = "error",
    noise_cov: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    noise: bool | float = False,
    noise_init: ArrayLike | None = None,
) -> EMResult:
    """Fit a Gaussian mixture by EM: MAP under a prior, or maximum likelihood.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Numeric data; a DataFrame keeps its column names.
    n_components : int
        Number of mixture components ``K >= 1``.
    covariance_type : str, default='full'
        Covariance family: scikit-learn's ``'full'``, ``'tied'``, ``'diag'``,
        ``'spherical'`` (names and layouts), or any of mclust's models by its name
        (:data:`~bayesgmm.core.families.MCLUST_MODELS`: ``'EII'``, ``'VII'``, ...,
        ``'VVV'``, with ``'VVV'``, ``'EEE'``, ``'VVI'``, ``'VII'`` aliases of the four; and
        ``'E'`` / ``'V'`` for one feature). mclust's other families keep their covariances
        as ``(K, D, D)`` matrices (``(D, D)`` for the shared EII, EEI, E); their M-steps
        are mclust's (:mod:`bayesgmm.core.eigen_families`).
    prior : 'default', EMPrior or None, default='default'
        ``'default'`` uses :meth:`EMPrior.default` (MAP fit, see :class:`EMPrior` for the
        semantics and updates); ``None`` gives plain maximum likelihood, where ``reg_covar``
        is added to the covariance diagonals as in scikit-learn and ``log_posterior ==
        log_likelihood``. With a prior, ``reg_covar`` is not used: the prior keeps the
        covariances positive definite and EM stays an exact ECM ascent.
    init : {'k-means++', 'k-means++-scaled', 'random'}, default='k-means++'
        ``'k-means++'``: k-means++ seeds, each point assigned to its nearest seed (as
        scikit-learn's ``init_params='k-means++'``); ``'k-means++-scaled'``: the same with
        distances measured in units of each column's sd (which matters when the columns'
        scales differ, as Old Faithful's minutes and seconds; mclust likewise seeds on
        scaled data, ``hcUse = "SVD"``); ``'random'``: random responsibilities.
    n_init : int, default=5
        Number of starts; the one with the highest objective is kept. With ``means_init``
        every start would be identical, so a single one is run.
    tol : float, default=1e-8
        Stop when the objective changes by less than ``tol`` per sample between iterations.
    max_iter : int, default=1000
        Maximum number of iterations (E-steps) per start.
    reg_covar : float, default=1e-6
        Added to covariance diagonals in maximum likelihood fits (``prior=None``).
    random_seed : int, numpy.random.Generator or None
        Same seed, same result (bit for bit).
    means_init : array-like of shape (n_components, n_features), optional
        Starting means; covariances then start at ``diag(column variances) / K**(2/D)``.
    weights_init : array-like of shape (n_components,), optional
        Starting weights (positive, summing to 1).
    feature_names : sequence of str, optional
        Overrides the DataFrame's columns (or ``feature_0, ...``).
    sample_weight : array-like of shape (n_samples,), optional
        Frequency weights: row ``i`` counts as ``w_i`` copies of itself, so the
        log-likelihood is ``sum_i w_i log p(x_i)`` and integer weights give the fit of the
        data with each row repeated (:mod:`bayesgmm.core.em_steps`). The default prior,
        the k-means++ seeding and BIC (``n = sum w``) are weighted alike. Not importance
        weights for another population: the posterior of a weighted fit is that of the
        repeated data.
    missing : {'error', 'marginalize'}, default='error'
        What a NaN in ``X`` is: an error, or a value missing at random. With
        ``'marginalize'`` each point's likelihood is that of its observed coordinates (the
        Gaussian marginal), and the E-step fills in the conditional expectations and
        covariances of the missing ones (:mod:`bayesgmm.core.em_missing`);
        ``log_likelihood`` is the observed-data log-likelihood. Without NaN in ``X`` the
        fit is the same as with ``'error'``, bit for bit.
    noise_cov : array-like of shape (n_samples, n_features[, n_features]), optional
        Known measurement errors: each row's error covariance, or its error variances
        (squared standard errors) when errors are independent across features. The
        mixture is then that of the true values ("extreme deconvolution", Bovy, Hogg &
        Roweis 2011): row ``i``'s density is ``sum_k w_k N(x_i | mu_k, Sigma_k + S_i)``,
        fitted by the XD algorithm (:mod:`bayesgmm.core.em_noise`). Errors of zero give
        the fit without them, bit for bit.
    labels : array-like of shape (n_samples,), optional
        Known components (a semi-supervised fit, :mod:`bayesgmm.core.labels`): ``k`` in
        ``0..K-1`` fixes point ``i`` in component ``k`` (its likelihood term is ``log w_k
        + log N(x_i | mu_k, Sigma_k)`` and its membership is fixed), ``-1`` leaves it
        unknown. The components then keep the labels' numbering (they are not sorted by
        their means), and the starts are matched to the labels.
    noise : bool or float, default=False
        A background-noise component (mclust's ``Vinv``; :mod:`bayesgmm.core.background`):
        ``True`` adds one, uniform over the data's bounding box, a number gives its volume.
        It has its own weight (``noise_weight`` of the result; ``weights`` are then the
        Gaussians' and sum to ``1 - noise_weight``), and :meth:`EMResult.predict_proba`
        gets its membership as a last column (``predict`` says -1 for it). Not combined
        with missing values or measurement errors yet.
    noise_init : array-like of bool, shape (n_samples,), optional
        With ``noise``: the points guessed to be noise at the start (mclust's
        ``initialization = list(noise = ...)``). Every start then puts them in the
        background, at their share of the weight, and seeds the Gaussians from the other
        points. By default the starts take turns: seeded by ``init`` from every point
        (the background at weight 0.1); from the points left by
        :func:`~bayesgmm.core.background.guess_noise`; from random memberships.

    Returns
    -------
    EMResult

    Raises
    ------
    DataError
        Bad data (NaN/inf, wrong shape, empty, non-numeric, constant columns, fewer
        distinct points than components).
    ConfigError
        Unknown or out-of-range settings (all reported together).
    DegenerateFitError
        Every start kept collapsing components even after re-seeding them.

    Warns
    -----
    ConvergenceWarning
        The best start reached ``max_iter`` before converging.

    Notes
    -----
    A component that collapses in a maximum likelihood fit (it loses its points or its
    scatter becomes singular, e.g. on duplicated rows) is re-seeded at the worst-fitted
    point with a data-scaled covariance; ``n_reseeds`` counts these for the kept start.

    Examples
    --------
    >>> from bayesgmm.core.datasets import load_faithful
    >>> fit = fit_em(load_faithful(), 2, prior=None, random_seed=0)
    >>> round(fit.log_likelihood, 2), fit.weights.round(3).tolist()
    (-1130.26, [0.356, 0.644])
    >>> fit.predict(load_faithful().head(3)).tolist()
    [1, 0, 1]
    """
    settings = dict(
        n_components=n_components, covariance_type=covariance_type, init=init, n_init=n_init,
        tol=tol, max_iter=max_iter, reg_covar=reg_covar, prior=prior,
    )  # fmt: skip
    check_settings(settings, FIT_CONSTRAINTS, "fit_em")
    rng = _rng(random_seed)
    missing = check_missing(missing)
    X, names = check_data(
        X, n_components=n_components, feature_names=feature_names, missing=missing
    )
    sample_weight = check_sample_weight(sample_weight, X, n_components)
    noise_cov = check_noise_cov(noise_cov, X)
    labels = check_labels(labels, X.shape[0], n_components)
    background = check_noise(noise, X)
    noise_init = check_noise_init(noise_init, X.shape[0], n_components, background, labels)
    return fit_em_checked(
        X, names, n_components, family(covariance_type), prior, init=init, n_init=n_init,
        tol=tol, max_iter=max_iter, reg_covar=reg_covar, rng=rng, means_init=means_init,
        weights_init=weights_init, sample_weight=sample_weight, missing=missing,
        noise_cov=noise_cov, labels=labels, background=background, noise_init=noise_init,
    )  # fmt: skip


def _rng(random_seed) -> np.random.Generator:
    try:
        return np.random.default_rng(random_seed)
    except (TypeError, ValueError):
        raise ConfigError(
            f"random_seed must be an int, a numpy Generator or None; got {random_seed!r}."
        ) from None


#: ``reg_covar`` above this share of the smallest column variance is warned about.
_REG_SHARE = 1e-3


def _warn_if_reg_covar_is_large(X, reg_covar: float, sample_weight) -> None:
    """Warn when ``reg_covar`` (an absolute amount, as scikit-learn's) is not small against
    the data's column variances: the maximum-likelihood fit is then not the data's (Old
    Faithful in units a thousandth of its own loses 190 log-likelihood units, and at a
    ten-thousandth both components sit on the data's mean)."""
    from bayesgmm.core.priors import column_moments

    var = column_moments(X, sample_weight)[1]
    j = int(np.argmin(var))
    if reg_covar > _REG_SHARE * var[j]:
        ratio = reg_covar / var[j]
        share = f"{100 * ratio:.2g}% of" if ratio < 1 else f"{ratio:.3g} times"
        warnings.warn(
            f"reg_covar={reg_covar:g} is {share} the variance of column {j} "
            f"({var[j]:.3g}): added to every covariance's diagonal, it changes the "
            "maximum-likelihood fit at this scale. Rescale the data (e.g. standardise the "
            "columns), lower reg_covar, or use the default prior, which scales with the data.",
            UserWarning,
            stacklevel=4,  # the caller of fit_em
        )


def fit_em_checked(
    X: np.ndarray,
    names: list[str],
    n_components: int,
    fam: CovarianceFamily,
    prior: EMPrior | str | None,
    *,
    rng: np.random.Generator,
    means_init=None,
    weights_init=None,
    sample_weight: np.ndarray | None = None,
    missing: str | None = None,
    noise_cov: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    background: float | None = None,
    noise_init: np.ndarray | None = None,
    **settings: Any,
) -> EMResult:
    """:func:`fit_em` on data and settings that are already validated (as
    :class:`~bayesgmm.BayesianGMM` has them), so that nothing is checked twice.
    ``missing=None``: ``"marginalize"`` when ``X`` has NaN, else ``"error"``.
    ``noise_init``: as :func:`~bayesgmm.core.background.check_noise_init` returns it.

    ``settings`` (``init``, ``n_init``, ``tol``, ``max_iter``, ``reg_covar``) default to
    :func:`fit_em`'s own defaults.
    """
    settings = {**_FIT_DEFAULTS, **settings}
    init, n_init, tol = settings["init"], settings["n_init"], settings["tol"]
    max_iter, reg_covar = settings["max_iter"], settings["reg_covar"]
    n, D = X.shape
    fam.check_n_features(D)
    if isinstance(prior, str):
        prior = EMPrior._default(X, n_components, sample_weight)
    elif prior is not None and (prior.n_components, prior.n_features) != (n_components, D):
        raise ConfigError(
            f"prior is for {prior.n_components} components and {prior.n_features} features, "
            f"but the fit has n_components={n_components} and {D} features."
        )
    means_init, weights_init = check_start(means_init, weights_init, n_components, D)
    if prior is None:
        _warn_if_reg_covar_is_large(X, float(reg_covar), sample_weight)
    has_nan = bool(np.isnan(X).any())
    missing = missing or ("marginalize" if has_nan else "error")
    if background is not None and (has_nan or noise_cov is not None):
        raise ConfigError(
            "a background-noise component (noise) with missing values or measurement errors "
            "is not available (yet); use one of them at a time."
        )
    if background is not None:
        em = EMRun(X, n_components, fam, prior, float(reg_covar), sample_weight, labels,
                   background, noise_init)  # fmt: skip
    elif noise_cov is not None:
        em = NoiseEMRun(X, n_components, fam, prior, float(reg_covar), sample_weight, noise_cov,
                        labels)  # fmt: skip
    else:
        run_type = MissingEMRun if has_nan else EMRun
        em = run_type(X, n_components, fam, prior, float(reg_covar), sample_weight, labels)
    n_runs = 1 if means_init is not None else n_init
    best, failures = None, []
    for _ in range(n_runs):
        try:
            run = em.run(rng, init, means_init, weights_init, float(tol), max_iter)
        except RunFailed as exc:
            failures.append(str(exc))
            continue
        if best is None or run["objective"] > best["objective"]:
            best = run
    if best is None:
        reason = (
            f"EM failed in all {n_runs} starts ({failures[-1]}): mixture components keep "
            "collapsing onto too few or duplicated points."
        )
        raise DegenerateFitError(f"{reason} {_REMEDIES}", reason=reason)
    if not best["converged"]:
        trace = best["trace"]
        change = (
            f" (last change per sample {abs(trace[-1] - trace[-2]) / n:.3g} > tol={tol:g})"
            if len(trace) > 1
            else ""
        )
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations{change}. Raise max_iter, "
            "loosen tol, use more starts (n_init), or standardise the data.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return replace(_make_result(em, best, prior, names, n_runs), missing=missing)


_FIT_DEFAULTS = {
    name: p.default
    for name, p in inspect.signature(fit_em).parameters.items()
    if name in ("init", "n_init", "tol", "max_iter", "reg_covar")
}


def _make_result(em: EMRun, run: dict, prior: EMPrior | None, names, n_runs: int) -> EMResult:
    st, fam, K, D = run["state"], em.fam, em.K, em.D
    noise_weight = None if em.background is None else float(st.weights[K])
    means = st.means + em.center
    # sorted by their means, unless known labels number the components
    order = np.lexsort(means.T[::-1]) if em.labels is None else np.arange(K)
    per_component = fam.per_component
    cov = st.cov[order] if per_component else st.cov
    chol_cov = fam.to_full(st.chol[order] if per_component else st.chol, K, D)
    result = EMResult(
        weights=st.weights[:K][order],
        means=means[order],
        covariances=cov,
        covariance_type=fam.name,
        chol_cov=chol_cov,
        prec_chol=st.prec_chol[order] if per_component else st.prec_chol,
        log_likelihood=run["log_likelihood"],
        log_posterior=run["objective"],
        objective_trace=run["trace"],
        converged=run["converged"],
        n_iter=run["n_iter"],
        n_reseeds=run["n_reseeds"],
        n_init=n_runs,
        prior=prior,
        feature_names=names,
        n_samples=em.n,
        sum_log_max_resp=run["sum_log_max_resp"],
        noise_weight=noise_weight,
        background=em.background,
    )
    arrays = [result.weights, result.means, result.covariances, result.prec_chol]
    if not all(np.isfinite(a).all() for a in arrays):
        reason = "EM produced non-finite parameters."
        raise DegenerateFitError(f"{reason} {_REMEDIES}", reason=reason)
    return result
