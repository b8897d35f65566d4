"""Known measurement errors (noise_cov) in EM, the extreme-deconvolution algorithm: the
log-likelihood against scipy, a non-decreasing objective, zero errors as no errors, steps
equal to a direct implementation (and to astroML's XDGMM), deconvolved covariances that
recover the truth where the naive fit overestimates them, and clear errors."""

import numpy as np
import pytest
from conftest import check_objective_trace
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm import fit_em, load_faithful
from bayesgmm.core.families import MCLUST_MODELS
from bayesgmm.exceptions import ConfigError, DataError

FAMILIES = ["full", "tied", "diag", "spherical", *[m for m in MCLUST_MODELS if m not in
            ("VVV", "EEE", "VVI", "VII")]]  # fmt: skip
TRUE_MEANS = np.array([[0.0, 0.0], [6.0, 3.0]])
TRUE_COV = np.array([[[1.0, 0.5], [0.5, 0.8]], [[0.6, -0.2], [-0.2, 0.5]]])


@pytest.fixture(scope="module")
def noisy():
    """True values from a known mixture plus errors of known, varying covariance."""
    rng = np.random.default_rng(3)
    z = rng.choice(2, size=600, p=[0.45, 0.55])
    true = np.stack([rng.multivariate_normal(TRUE_MEANS[k], TRUE_COV[k]) for k in z])
    a = rng.normal(size=(600, 2, 2)) * rng.uniform(0.3, 1.2, size=(600, 1, 1))
    S = a @ a.transpose(0, 2, 1) + 0.05 * np.eye(2)
    X = true + np.stack([rng.multivariate_normal(np.zeros(2), s) for s in S])
    return X, S


def _loglik(X, S, w, mu, cov):
    return sum(logsumexp([np.log(w[k]) + multivariate_normal(mu[k], cov[k] + s).logpdf(x)
                          for k in range(len(w))]) for x, s in zip(X, S, strict=True))  # fmt: skip


@pytest.mark.parametrize("prior", ["default", None], ids=["map", "ml"])
@pytest.mark.parametrize("covariance_type", FAMILIES)
def test_xd_reports_the_log_likelihood_of_the_noisy_data(noisy, covariance_type, prior):
    X, S = noisy
    X, S = X[:150], S[:150]
    fit = fit_em(X, 2, covariance_type=covariance_type, prior=prior, noise_cov=S,
                 random_seed=0, n_init=2)  # fmt: skip
    direct = _loglik(X, S, fit.weights, fit.means, fit.covariance_matrices())
    np.testing.assert_allclose(fit.log_likelihood, direct, rtol=0, atol=1e-8)
    assert check_objective_trace(fit)
    np.testing.assert_allclose(fit.log_density(X, noise_cov=S).sum(), direct, rtol=1e-10)


def test_zero_errors_are_the_fit_without_errors():
    X = load_faithful()
    a = fit_em(X, 2, covariance_type="VEV", random_seed=4, n_init=2)
    for zeros in (np.zeros((len(X), 2)), np.zeros((len(X), 2, 2))):
        b = fit_em(X, 2, covariance_type="VEV", random_seed=4, n_init=2, noise_cov=zeros)
        for name in ("weights", "means", "covariances", "objective_trace"):
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name))


def _xd_steps(X, S, w, mu, V, steps):
    """Extreme deconvolution written out (Bovy, Hogg & Roweis 2011, eq. 16-18)."""
    for _ in range(steps):
        T = V[None] + S[:, None]
        Tinv = np.linalg.inv(T)
        logp = np.array([[np.log(w[k]) + multivariate_normal(mu[k], T[i, k]).logpdf(X[i])
                          for k in range(len(w))] for i in range(len(X))])  # fmt: skip
        q = np.exp(logp - logsumexp(logp, axis=1, keepdims=True))
        b = mu[None] + np.einsum("kde,nkef,nkf->nkd", V, Tinv, X[:, None] - mu[None])
        B = V[None] - np.einsum("kde,nkef,kfg->nkdg", V, Tinv, V)
        qk = q.sum(axis=0)
        w = qk / len(X)
        mu = np.einsum("nk,nkd->kd", q, b) / qk[:, None]
        dev = b - mu[None]
        V = np.einsum("nk,nkd,nke->kde", q, dev, dev) + np.einsum("nk,nkde->kde", q, B)
        V /= qk[:, None, None]
    return w, mu, V


@pytest.mark.filterwarnings("ignore:EM did not converge")
def test_xd_steps_equal_a_direct_implementation_and_astroml(noisy):
    X, S = noisy
    X, S = X[:200], S[:200]
    start = {"means_init": np.array([[1.0, 1.0], [5.0, 2.0]]), "weights_init": [0.5, 0.5]}
    kw = dict(prior=None, noise_cov=S, tol=0.0, reg_covar=0.0, **start)
    first = fit_em(X, 2, max_iter=1, **kw)  # the start itself: EM stops before its M-step
    steps = 25
    ours = fit_em(X, 2, max_iter=steps + 1, **kw)
    w, mu, V = _xd_steps(X, S, first.weights, first.means, first.covariances, steps)
    np.testing.assert_allclose(ours.weights, w, rtol=1e-9)
    np.testing.assert_allclose(ours.means, mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.covariances, V, rtol=1e-8, atol=1e-12)
    astroml = pytest.importorskip("astroML.density_estimation")
    xd = astroml.XDGMM(2)
    xd.alpha, xd.mu, xd.V = first.weights.copy(), first.means.copy(), first.covariances.copy()
    for _ in range(steps):
        xd._EMstep(X, S)
    np.testing.assert_allclose(ours.weights, xd.alpha, rtol=1e-9)
    np.testing.assert_allclose(ours.means, xd.mu, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.covariances, xd.V, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.log_likelihood, xd.logL(X, S), rtol=1e-9)


def test_deconvolution_recovers_the_spread_the_naive_fit_overestimates(noisy):
    X, S = noisy
    naive = fit_em(X, 2, random_seed=0)
    xd = fit_em(X, 2, noise_cov=S, random_seed=0)
    for fit in (naive, xd):
        np.testing.assert_allclose(fit.means, TRUE_MEANS, atol=0.2)
    true_var = np.diagonal(TRUE_COV, axis1=1, axis2=2)
    naive_var = np.diagonal(naive.covariances, axis1=1, axis2=2)
    xd_var = np.diagonal(xd.covariances, axis1=1, axis2=2)
    assert np.all(naive_var > 1.5 * true_var)  # the noise inflates the naive fit
    np.testing.assert_allclose(xd_var, true_var, rtol=0.25)
    # a new point measured with large errors is less certain than a precise one
    x = [[3.0, 1.5]]
    sharp, wide = xd.predict_proba(x), xd.predict_proba(x, noise_cov=[[4.0, 4.0]])
    assert abs(wide[0, 0] - 0.5) < abs(sharp[0, 0] - 0.5) or np.allclose(wide, sharp, atol=0.1)


@pytest.mark.parametrize(
    ("noise", "error", "match"),
    [
        (np.ones((3, 3)), DataError, r"shape \(n, D\) = \(3, 2\)"),
        (-np.ones((3, 2)), DataError, "must be >= 0; row 0"),
        (np.full((3, 2), np.nan), DataError, "must be finite; row 0"),
        (np.tile([[1.0, 2.0], [0.0, 1.0]], (3, 1, 1)), DataError, "symmetric"),
        (np.tile([[1.0, 2.0], [2.0, 1.0]], (3, 1, 1)), DataError, "positive semi-definite"),
        ("abc", DataError, "must hold numbers"),
    ],
)
def test_bad_errors_are_clear_errors(noise, error, match):
    X = np.array([[0.0, 1.0], [3.0, 2.0], [1.0, 5.0]])
    with pytest.raises(error, match=match):
        fit_em(X, 1, noise_cov=noise)


def test_errors_with_missing_values_are_refused():
    X = np.array([[0.0, np.nan], [3.0, 2.0], [1.0, 5.0]])
    with pytest.raises(ConfigError, match="noise_cov with missing values"):
        fit_em(X, 1, missing="marginalize", noise_cov=np.ones((3, 2)))
