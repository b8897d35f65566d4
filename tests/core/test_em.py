"""EM fits (bayesgmm.core.em) and the Gaussian numerics they share (bayesgmm.core.gaussian).

References are independent: scipy.stats densities, scikit-learn's GaussianMixture and
published log-likelihoods for Old Faithful (mclust).
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import check_objective_trace
from scipy import stats
from scipy.special import logsumexp
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from bayesgmm.core import gaussian as _gaussian
from bayesgmm.core.datasets import load_faithful
from bayesgmm.core.em import EMPrior, EMResult, fit_em
from bayesgmm.exceptions import ConfigError, ConvergenceWarning, DataError, DegenerateFitError

FAMILIES = ("full", "tied", "diag", "spherical")


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # Small problems: threads only add contention on shared machines (and bit noise).
    with threadpool_limits(limits=1):
        yield


@pytest.fixture(scope="module")
def faithful() -> np.ndarray:
    return load_faithful().to_numpy()


@pytest.fixture(scope="module")
def iris() -> np.ndarray:
    return load_iris().data


@pytest.fixture(scope="module")
def duplicated() -> np.ndarray:
    """Feature 0 has 4 distinct values: maximum likelihood components collapse on them."""
    rng = np.random.default_rng(7)
    return np.column_stack([rng.integers(0, 4, 120).astype(float), rng.normal(size=120)])


def random_params(rng: np.random.Generator, K: int, D: int, ct: str):
    weights = rng.dirichlet(np.full(K, 2.0))
    means = rng.normal(scale=2.0, size=(K, D))
    A = rng.normal(size=(K, D, D))
    full = A @ A.transpose(0, 2, 1) + 0.5 * np.eye(D)
    cov = {
        "full": full,
        "tied": full[0],
        "diag": rng.uniform(0.3, 3.0, (K, D)),
        "spherical": rng.uniform(0.3, 3.0, K),
    }[ct]
    return weights, means, cov


def scipy_log_density(X, weights, means, cov, ct):
    K, D = means.shape
    covs = _gaussian.full_covariances(cov, ct, K, D)
    comp = np.stack(
        [stats.multivariate_normal(means[k], covs[k]).logpdf(X) for k in range(K)], axis=1
    )
    return logsumexp(comp + np.log(weights), axis=1)


def scipy_log_prior(prior: EMPrior, weights, means, cov, ct) -> float:
    """log p(theta) from scipy.stats, independently of bayesgmm's closed forms."""
    lp = stats.dirichlet.logpdf(weights, prior.weight_concentration) if len(weights) > 1 else 0
    lp += stats.norm.logpdf(means, prior.mean_loc, prior.mean_scale).sum()
    nu, psi = prior.cov_dof, prior.cov_scale
    if ct == "full":
        lp += sum(stats.invwishart.logpdf(c, df=nu, scale=psi) for c in cov)
    elif ct == "tied":
        lp += stats.invwishart.logpdf(cov, df=nu, scale=psi)
    elif ct == "diag":
        lp += stats.invgamma.logpdf(cov, a=nu / 2, scale=np.diag(psi) / 2).sum()
    else:
        lp += stats.invgamma.logpdf(cov, a=nu / 2, scale=np.diag(psi).mean() / 2).sum()
    return float(lp)


# --------------------------------------------------------------------------- #
# 1. maximum likelihood agrees with scikit-learn
# --------------------------------------------------------------------------- #


def _sklearn_precisions(fit: EMResult) -> np.ndarray:
    pc = fit.prec_chol
    if fit.covariance_type == "full":
        return pc @ pc.transpose(0, 2, 1)
    if fit.covariance_type == "tied":
        return pc @ pc.T
    return pc**2


@pytest.mark.parametrize("ct", FAMILIES)
@pytest.mark.parametrize(("data", "K"), [("faithful", 2), ("faithful", 3), ("iris", 3)])
def test_mle_matches_sklearn(request, data, K, ct):
    X = request.getfixturevalue(data)
    fit = fit_em(
        X, K, covariance_type=ct, prior=None, n_init=10, tol=1e-10, reg_covar=1e-10,
        random_seed=0,
    )  # fmt: skip
    assert fit.converged and fit.n_reseeds == 0
    n = X.shape[0]
    common = dict(covariance_type=ct, reg_covar=1e-10, tol=1e-9, max_iter=3000)
    # sklearn started at our optimum stays there: it is a fixed point of the same EM
    warm = GaussianMixture(
        K, weights_init=fit.weights, means_init=fit.means,
        precisions_init=_sklearn_precisions(fit), **common,
    ).fit(X)  # fmt: skip
    assert warm.score(X) * n == pytest.approx(fit.log_likelihood, abs=1e-3)
    # sklearn's own restarts: the best non-degenerate optimum is ours
    floor = 1e-6 * X.var(axis=0).min()
    best = -np.inf
    for init in ("kmeans", "k-means++", "random_from_data"):
        gm = GaussianMixture(K, init_params=init, n_init=8, random_state=0, **common).fit(X)
        covs = _gaussian.full_covariances(gm.covariances_, ct, K, X.shape[1])
        if np.linalg.eigvalsh(covs).min() > floor:  # skip spurious singular solutions
            best = max(best, gm.score(X) * n)
    assert fit.log_likelihood == pytest.approx(best, abs=1e-3)
    assert fit.log_posterior == fit.log_likelihood
    assert fit.bic_sklearn() == pytest.approx(warm.bic(X), abs=2e-3)
    assert fit.n_parameters() == warm._n_parameters()


# --------------------------------------------------------------------------- #
# 2. published values (mclust, Old Faithful)
# --------------------------------------------------------------------------- #


def test_published_faithful_full_2():
    fit = fit_em(load_faithful(), 2, prior=None, random_seed=1)
    assert fit.log_likelihood == pytest.approx(-1130.26, abs=0.05)


def test_published_faithful_tied_3():
    fit = fit_em(load_faithful(), 3, covariance_type="tied", prior=None, random_seed=1)
    assert fit.log_likelihood == pytest.approx(-1126.33, abs=0.05)


def test_published_waiting_equal_variance():
    fit = fit_em(load_faithful()[["waiting"]], 2, covariance_type="tied", prior=None, random_seed=2)
    assert fit.log_likelihood == pytest.approx(-1034.002, abs=0.05)
    np.testing.assert_allclose(fit.weights, [0.361, 0.639], atol=0.0015)
    np.testing.assert_allclose(fit.means.ravel(), [54.61, 80.09], atol=0.015)
    assert np.sqrt(fit.covariances[0, 0]) == pytest.approx(5.869, abs=0.0015)
    assert fit.feature_names == ("waiting",)


# --------------------------------------------------------------------------- #
# 3. monotone objective
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("prior", [None, "default"])
@pytest.mark.parametrize("ct", FAMILIES)
def test_objective_never_decreases(faithful, iris, ct, prior):
    checked = 0
    for X, K in [(faithful, 3), (iris, 4)]:
        for seed, init in [(0, "k-means++"), (1, "random"), (2, "k-means++")]:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                fit = fit_em(
                    X, K, covariance_type=ct, prior=prior, init=init, n_init=1, max_iter=300,
                    random_seed=seed,
                )  # fmt: skip
            checked += check_objective_trace(fit)
    assert checked >= 4


# --------------------------------------------------------------------------- #
# 4. exact densities and the log prior
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("ct", FAMILIES)
def test_gaussian_numerics_match_scipy(ct):
    rng = np.random.default_rng(11)
    K, D = 3, 4
    weights, means, cov = random_params(rng, K, D, ct)
    X = rng.normal(scale=3.0, size=(5000, D))  # > one chunk of the kernel
    ref_comp = np.stack(
        [
            stats.multivariate_normal(means[k], c).logpdf(X)
            for k, c in enumerate(_gaussian.full_covariances(cov, ct, K, D))
        ],
        axis=1,
    )
    chol = _gaussian.chol_from_cov(cov, ct)
    prec_chol = _gaussian.prec_chol_from_chol_cov(chol, ct)
    np.testing.assert_allclose(
        _gaussian.log_gaussian_prob(X, means, prec_chol, ct), ref_comp, rtol=0, atol=1e-10
    )
    ref = logsumexp(ref_comp + np.log(weights), axis=1)
    np.testing.assert_allclose(
        _gaussian.log_mixture_density(X, weights, means, cov, ct), ref, rtol=0, atol=1e-10
    )
    log_resp = _gaussian.log_responsibilities(X, weights, means, cov, ct)
    np.testing.assert_allclose(log_resp, ref_comp + np.log(weights) - ref[:, None], atol=1e-10)
    if ct in ("full", "tied"):  # factor conventions: Sigma = L L^T, inv(Sigma) = U U^T
        L = chol.reshape(-1, D, D)
        U = prec_chol.reshape(-1, D, D)
        np.testing.assert_allclose(L @ L.transpose(0, 2, 1), cov.reshape(-1, D, D), atol=1e-12)
        np.testing.assert_allclose(
            U @ U.transpose(0, 2, 1) @ cov.reshape(-1, D, D), np.broadcast_to(np.eye(D), L.shape),
            atol=1e-10,
        )  # fmt: skip
        assert np.allclose(np.triu(U), U) and np.allclose(np.tril(L), L)


def test_single_component_weights_reduce_to_one_gaussian():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(50, 2))
    _, means, cov = random_params(rng, 2, 2, "full")
    got = _gaussian.log_mixture_density(X, [1.0, 0.0], means, cov, "full")
    np.testing.assert_allclose(got, stats.multivariate_normal(means[0], cov[0]).logpdf(X))


def test_non_positive_definite_covariance_is_a_clear_error():
    with pytest.raises(DegenerateFitError, match=r"component\(s\) \[1\].*fewer components"):
        _gaussian.chol_from_cov(np.stack([np.eye(2), np.ones((2, 2))]), "full")
    with pytest.raises(DegenerateFitError, match="reg_covar"):
        _gaussian.chol_from_cov(np.array([1.0, 0.0]), "spherical")
    with pytest.raises(ConfigError, match="'full', 'tied', 'diag', 'spherical'"):
        _gaussian.chol_from_cov(np.eye(2), "fulll")


@pytest.mark.parametrize("ct", FAMILIES)
def test_fitted_log_density_matches_scipy(faithful, ct):
    fit = fit_em(faithful, 3, covariance_type=ct, random_seed=0, n_init=2)
    ref = scipy_log_density(faithful, fit.weights, fit.means, fit.covariances, ct)
    np.testing.assert_allclose(fit.log_density(faithful), ref, rtol=0, atol=1e-10)
    assert fit.log_likelihood == pytest.approx(ref.sum(), rel=1e-12)


@pytest.mark.parametrize("ct", FAMILIES)
def test_log_posterior_is_loglik_plus_scipy_log_prior(faithful, ct):
    fit = fit_em(faithful, 2, covariance_type=ct, random_seed=0, n_init=2)
    args = (fit.weights, fit.means, fit.covariances, ct)
    log_prior = scipy_log_prior(fit.prior, *args)
    assert fit.log_posterior - fit.log_likelihood == pytest.approx(log_prior, rel=1e-9, abs=1e-8)
    assert fit.prior.log_density(*args) == pytest.approx(log_prior, rel=1e-12, abs=1e-9)


def _perturbed(fit: EMResult, eps: float, rng: np.random.Generator):
    """Parameters moved by eps along one random direction (weights via logits, variances via
    log or the Cholesky factor so they stay valid)."""
    ct, K, D = fit.covariance_type, fit.n_components, fit.n_features
    dirs = [rng.normal(size=K), rng.normal(size=(K, D)), rng.normal(size=fit.covariances.shape)]

    def at(t: float):
        w = fit.weights * np.exp(t * dirs[0])
        w /= w.sum()
        mu = fit.means + t * dirs[1]
        if ct in ("full", "tied"):
            L = np.linalg.cholesky(fit.covariances) + t * np.tril(dirs[2])
            cov = L @ np.swapaxes(L, -1, -2)
        else:
            cov = fit.covariances * np.exp(t * dirs[2])
        return w, mu, cov, ct

    return at(eps), at(-eps)


@pytest.mark.parametrize("ct", FAMILIES)
def test_map_is_a_maximum_of_the_independent_log_posterior(faithful, ct):
    """Checks the MAP update formulas: scipy's log posterior is flat and maximal there."""
    fit = fit_em(faithful, 2, covariance_type=ct, random_seed=0, n_init=1, tol=1e-13)
    X = faithful

    def log_post(w, mu, cov, ct):
        return scipy_log_density(X, w, mu, cov, ct).sum() + scipy_log_prior(
            fit.prior, w, mu, cov, ct
        )

    centre = log_post(fit.weights, fit.means, fit.covariances, ct)
    assert centre == pytest.approx(fit.log_posterior, rel=1e-12)
    rng = np.random.default_rng(3)
    eps = 1e-5
    for _ in range(4):
        plus, minus = _perturbed(fit, eps, rng)
        f_plus, f_minus = log_post(*plus), log_post(*minus)
        assert abs(f_plus - f_minus) / (2 * eps) < 1e-3  # directional derivative ~ 0
        assert max(f_plus, f_minus) <= centre + 1e-9


def test_scaled_seeding_does_not_depend_on_the_columns_units(faithful):
    # the same seeds whatever the columns' units; raw k-means++ seeds on Old Faithful's
    # seconds-dominated distances instead (its waiting column's sd is 13.6 against 1.1)
    X = np.asarray(faithful)
    kw = dict(covariance_type="VVV", n_init=1, max_iter=2, prior=None, random_seed=3)
    unit = fit_em(X, 3, init="k-means++-scaled", **kw)
    rescaled = fit_em(X * [60.0, 1.0 / 60.0], 3, init="k-means++-scaled", **kw)
    # (to ML's reg_covar, added to the diagonals whatever the units)
    np.testing.assert_allclose(rescaled.means, unit.means * [60.0, 1.0 / 60.0], rtol=1e-5)
    raw = fit_em(X * [60.0, 1.0 / 60.0], 3, init="k-means++", **kw)
    assert not np.allclose(raw.means, rescaled.means, rtol=1e-3)


# --------------------------------------------------------------------------- #
# 5. reproducibility
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("init", ["k-means++", "k-means++-scaled", "random"])
def test_same_seed_same_result(faithful, init):
    kw = dict(covariance_type="full", init=init, n_init=3, prior="default")
    a = fit_em(faithful, 3, random_seed=42, **kw)
    b = fit_em(faithful, 3, random_seed=42, **kw)
    c = fit_em(faithful, 3, random_seed=np.random.default_rng(42), **kw)
    for name in ("weights", "means", "covariances", "chol_cov", "prec_chol", "objective_trace"):
        assert np.array_equal(getattr(a, name), getattr(b, name))
        assert np.array_equal(getattr(a, name), getattr(c, name))
    assert a.log_posterior == b.log_posterior and a.n_iter == b.n_iter
    other = fit_em(faithful, 3, random_seed=43, **kw)  # may or may not differ; must be valid
    assert np.isfinite(other.log_posterior)


# --------------------------------------------------------------------------- #
# 6. bad input and degenerate fits
# --------------------------------------------------------------------------- #

_GOOD = np.random.default_rng(0).normal(size=(30, 2))


def _with(value, row=3, col=1):
    X = _GOOD.copy()
    X[row, col] = value
    return X


BAD_INPUTS = [
    ("nan", _with(np.nan), {}, DataError, "NaN"),
    ("inf", _with(np.inf), {}, DataError, "infinite"),
    ("1-D", _GOOD[:, 0], {}, DataError, "2-D"),
    ("3-D", _GOOD.reshape(5, 6, 2), {}, DataError, "2-D"),
    ("empty", np.empty((0, 2)), {}, DataError, "empty"),
    ("too few points", _GOOD[:2], {"n_components": 3}, DataError, "n_components=3"),
    (
        "non-numeric column",
        pd.DataFrame({"a": _GOOD[:, 0], "b": ["x"] * 30}),
        {},
        DataError,
        "non-numeric",
    ),
    ("constant column", np.column_stack([_GOOD[:, 0], np.ones(30)]), {}, DataError, "constant"),
    ("n_components=0", _GOOD, {"n_components": 0}, ConfigError, "n_components"),
    ("n_components float", _GOOD, {"n_components": 2.5}, ConfigError, "n_components"),
    ("covariance_type", _GOOD, {"covariance_type": "fulll"}, ConfigError, "'spherical'"),
    ("init", _GOOD, {"init": "kmeans"}, ConfigError, "'k-means\\+\\+-scaled', 'random'"),
    ("n_init", _GOOD, {"n_init": 0}, ConfigError, "n_init"),
    ("tol", _GOOD, {"tol": -1.0}, ConfigError, "tol"),
    ("max_iter", _GOOD, {"max_iter": 0}, ConfigError, "max_iter"),
    ("reg_covar", _GOOD, {"reg_covar": float("nan")}, ConfigError, "reg_covar"),
    ("prior", _GOOD, {"prior": "flat"}, ConfigError, "EMPrior"),
    ("random_seed", _GOOD, {"random_seed": "abc"}, ConfigError, "random_seed"),
    ("means_init", _GOOD, {"means_init": np.zeros((3, 2))}, ConfigError, "means_init"),
    ("weights_init", _GOOD, {"weights_init": [0.5, 0.6]}, ConfigError, "weights_init"),
    (
        "prior size",
        _GOOD,
        {"prior": EMPrior(np.ones(3), np.zeros(2), np.ones(2), 4.0, np.eye(2))},
        ConfigError,
        "3 components",
    ),
]


@pytest.mark.parametrize(
    ("X", "kwargs", "error", "match"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gives_clear_error(X, kwargs, error, match):
    kwargs = {"n_components": 2, "random_seed": 0, **kwargs}
    with pytest.raises(error, match=match):
        fit_em(X, **kwargs)


def test_config_errors_are_reported_together():
    with pytest.raises(ConfigError) as info:
        fit_em(_GOOD, 2, covariance_type="x", init="y", tol=-1)
    assert all(word in str(info.value) for word in ("covariance_type", "init", "tol"))


@pytest.mark.parametrize("ct", FAMILIES)
def test_collapsing_components_never_give_nan(duplicated, ct):
    try:
        fit = fit_em(duplicated, 5, covariance_type=ct, prior=None, random_seed=0, n_init=2)
    except DegenerateFitError as exc:
        assert "fewer components" in str(exc) and "reg_covar" in str(exc)
        return
    arrays = [fit.weights, fit.means, fit.covariances, fit.chol_cov, fit.prec_chol]
    assert all(np.isfinite(a).all() for a in arrays) and np.isfinite(fit.log_likelihood)


def test_collapse_is_detected(duplicated):
    """diag components sitting on one value of feature 0 are singular: re-seed or error."""
    outcomes = []
    for seed in range(3):
        try:
            fit = fit_em(duplicated, 5, covariance_type="diag", prior=None, random_seed=seed)
        except DegenerateFitError:
            outcomes.append("error")
        else:
            assert fit.n_reseeds > 0 and np.isfinite(fit.covariances).all()
            outcomes.append("reseeded")
    assert outcomes


# --------------------------------------------------------------------------- #
# 7. MAP is well behaved where maximum likelihood degenerates
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("ct", ["full", "diag"])
def test_map_is_finite_where_mle_degenerates(duplicated, ct):
    with pytest.raises(DegenerateFitError):
        fit_em(duplicated, 5, covariance_type=ct, prior=None, random_seed=0, n_init=2)
    fit = fit_em(duplicated, 5, covariance_type=ct, random_seed=0, n_init=2)
    assert fit.converged and fit.n_reseeds == 0
    floor = np.linalg.eigvalsh(fit.prior.cov_scale).min() / (fit.prior.cov_dof + 3 + 120)
    assert np.linalg.eigvalsh(fit.covariance_matrices()).min() >= floor * (1 - 1e-12)


def test_map_faithful_diag_5(faithful):
    fit = fit_em(faithful, 5, covariance_type="diag", random_seed=0)
    assert fit.converged and fit.n_reseeds == 0
    psi, nu = np.diag(fit.prior.cov_scale), fit.prior.cov_dof
    assert (fit.covariances >= psi / (nu + 2 + faithful.shape[0])).all()
    assert np.isfinite(fit.log_posterior) and (fit.weights > 0).all()


def test_small_concentration_floors_weights(faithful):
    prior = EMPrior.default(faithful, 4)
    prior = EMPrior.from_dict({**prior.to_dict(), "weight_concentration": [0.3] * 4})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = fit_em(faithful, 4, prior=prior, random_seed=0, n_init=1, max_iter=200)
    assert fit.weights.sum() == pytest.approx(1.0) and (fit.weights >= 1e-10 * 0.99).all()
    assert np.isfinite(fit.log_posterior)


# --------------------------------------------------------------------------- #
# 8. predictions, criteria, serialisation, reporting
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("ct", FAMILIES)
def test_responsibilities_and_predict(faithful, ct):
    fit = fit_em(load_faithful(), 3, covariance_type=ct, random_seed=0, n_init=2)
    proba = fit.predict_proba(faithful)
    assert proba.shape == (272, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fit.predict(faithful), proba.argmax(axis=1))
    # DataFrames are matched by column name
    df = load_faithful()[["waiting", "eruptions"]]
    np.testing.assert_array_equal(fit.predict(df), fit.predict(faithful))
    # mclust's ICL: BIC + 2 sum log max_k tau_ik
    assert fit.icl() == pytest.approx(fit.bic() + 2 * np.log(proba.max(axis=1)).sum(), rel=1e-10)
    assert fit.icl(faithful) == pytest.approx(fit.icl(), rel=1e-10)
    assert fit.bic(faithful) == pytest.approx(fit.bic(), rel=1e-12)
    assert fit.bic_sklearn() == -fit.bic()


def test_components_are_sorted_and_factors_consistent(faithful):
    fit = fit_em(faithful, 3, covariance_type="tied", random_seed=0, n_init=2)
    assert np.all(np.diff(fit.means[:, 0]) > 0)
    assert fit.chol_cov.shape == (3, 2, 2)
    covs = fit.covariance_matrices()
    np.testing.assert_allclose(fit.chol_cov @ fit.chol_cov.transpose(0, 2, 1), covs, atol=1e-10)
    with pytest.raises(ValueError, match="read-only"):
        fit.means[0, 0] = 0.0


def test_k_equals_one_is_the_sample_gaussian(faithful):
    fit = fit_em(faithful, 1, prior=None, reg_covar=0.0, random_seed=0)
    np.testing.assert_allclose(fit.means[0], faithful.mean(axis=0))
    np.testing.assert_allclose(fit.covariances[0], np.cov(faithful.T, bias=True), rtol=1e-10)
    assert fit.weights.tolist() == [1.0]


def test_user_start(faithful):
    ref = fit_em(faithful, 2, random_seed=0)
    fit = fit_em(faithful, 2, means_init=ref.means[::-1], weights_init=[0.5, 0.5], n_init=7)
    assert fit.n_init == 1
    assert fit.log_posterior == pytest.approx(ref.log_posterior, abs=1e-6)


def test_convergence_warning(faithful):
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        fit = fit_em(faithful, 3, max_iter=2, n_init=1, random_seed=0)
    assert not fit.converged and fit.n_iter == 2


def test_json_round_trip_in_fresh_process(tmp_path, faithful):
    fit = fit_em(load_faithful(), 3, covariance_type="diag", random_seed=0, n_init=2)
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(fit.to_dict()))
    again = EMResult.from_dict(json.loads(path.read_text()))
    for name in ("weights", "means", "covariances", "chol_cov", "prec_chol", "objective_trace"):
        assert np.array_equal(getattr(again, name), getattr(fit, name))
    assert again.prior.to_dict() == fit.prior.to_dict()
    code = (
        "import json, sys; from bayesgmm.core.em import EMResult; "
        "from bayesgmm.core.datasets import load_faithful; "
        f"fit = EMResult.from_dict(json.load(open({str(path)!r}))); "
        "print(json.dumps(fit.log_density(load_faithful()).tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    np.testing.assert_array_equal(json.loads(out.stdout), fit.log_density(faithful))


def test_from_dict_rejects_unknown_keys(faithful):
    fit = fit_em(faithful, 2, random_seed=0, n_init=1)
    with pytest.raises(ConfigError, match="unknown keys \\['colour'\\]"):
        EMResult.from_dict({**fit.to_dict(), "colour": 1})
    with pytest.raises(ConfigError, match="missing keys \\['cov_dof'\\]"):
        d = fit.prior.to_dict()
        del d["cov_dof"]
        EMPrior.from_dict(d)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("weight_concentration", [1.0, 0.0], "weight_concentration must be > 0"),
        ("mean_scale", [1.0, -1.0], "mean_scale must be > 0"),
        ("cov_dof", 0.5, "cov_dof must be a finite number > n_features - 1 = 1"),
        ("cov_scale", [[1.0, 2.0], [2.0, 1.0]], "cov_scale must be positive definite"),
        ("cov_scale", [[1.0, 0.5], [0.0, 1.0]], "cov_scale must be symmetric"),
        ("mean_loc", [0.0, 0.0, 0.0], "disagree on n_features"),
        ("mean_loc", [0.0, np.nan], "mean_loc must be a non-empty 1-D array of finite"),
    ],
)
def test_prior_validation(field, value, match):
    good = dict(
        weight_concentration=[1.0, 1.0], mean_loc=[0.0, 0.0], mean_scale=[1.0, 1.0],
        cov_dof=4.0, cov_scale=np.eye(2),
    )  # fmt: skip
    with pytest.raises(ConfigError, match=match):
        EMPrior(**{**good, field: value})


def test_default_prior_values(faithful):
    prior = EMPrior.default(load_faithful(), 3)
    var = faithful.var(axis=0, ddof=1)
    np.testing.assert_allclose(prior.mean_loc, faithful.mean(axis=0))
    np.testing.assert_allclose(prior.mean_scale, 2 * np.sqrt(var))
    np.testing.assert_allclose(prior.cov_scale, np.diag(var / 3.0 ** (2 / 2)))
    assert prior.cov_dof == 4.0 and prior.weight_concentration.tolist() == [1.0] * 3


def test_summary_and_repr():
    fit = fit_em(load_faithful(), 2, random_seed=0, n_init=2)
    text = fit.summary()
    assert "eruptions" in text and "waiting" in text and "MAP" in text
    assert f"{fit.weights[0]:.4f}" in text and "higher is better" in text
    assert repr(fit).startswith("EMResult(covariance_type='full', n_components=2")


def test_full_statistics_without_precomputed_second_moments(faithful, monkeypatch):
    """Large n * D**2: the x x^T rows are not precomputed; the fit must be the same."""
    import bayesgmm.core.em_steps as em

    ref = fit_em(faithful, 3, random_seed=0, n_init=1)
    monkeypatch.setattr(em, "_STATS_MAX_BYTES", 0)
    fit = fit_em(faithful, 3, random_seed=0, n_init=1)
    assert fit.n_iter == ref.n_iter
    np.testing.assert_allclose(fit.covariances, ref.covariances, rtol=1e-9)
    assert fit.log_posterior == pytest.approx(ref.log_posterior, rel=1e-12)


@pytest.mark.parametrize("module", ["bayesgmm.core.em", "bayesgmm.core.gaussian"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


def test_maximum_likelihood_warns_when_reg_covar_is_not_small_against_the_data(faithful):
    """reg_covar is absolute (scikit-learn's): in units a thousandth of Old Faithful's,
    it is 77% of the eruptions' variance and the fit loses ~190 log-likelihood units."""
    X = np.asarray(faithful)
    n, D = X.shape
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        big = fit_em(X, 2, prior=None, random_seed=0)
        fit_em(X * 1e-3, 2, random_seed=0)  # the default prior scales with the data
        fit_em(X * 1e-3, 2, prior=None, reg_covar=1e-12, random_seed=0)
    with pytest.warns(UserWarning, match=r"reg_covar=1e-06 is 77% of the variance of column 0"):
        small = fit_em(X * 1e-3, 2, prior=None, random_seed=0)
    assert small.log_likelihood + n * D * np.log(1e-3) < big.log_likelihood - 100
    with pytest.warns(UserWarning, match=r"7\.7e\+03 times the variance"):
        fit_em(X * 1e-5, 2, prior=None, random_seed=0)
