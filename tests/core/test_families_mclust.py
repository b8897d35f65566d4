"""mclust's fourteen covariance families (bayesgmm.core.eigen_families) in EM.

References are independent of the M-step code: scipy.stats densities and priors, mclust's
parameter-count formula (``nVarParams`` in mclust's R/mclust.R, transcribed below), the
four families whose closed forms bayesgmm already had, and the definition of the M-step
as the family's maximiser (checked by perturbing volume, shape and orientation within
the family).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import check_objective_trace
from scipy import stats
from scipy.linalg import expm
from scipy.special import logsumexp
from threadpoolctl import threadpool_limits

from bayesgmm.core import gaussian as _gaussian
from bayesgmm.core.datasets import load_faithful
from bayesgmm.core.eigen_families import EigenFamily, constrained_covariances
from bayesgmm.core.em import EMPrior, EMResult, fit_em
from bayesgmm.core.families import (
    COVARIANCE_TYPES,
    EM_COVARIANCE_TYPES,
    MCLUST_MODELS,
    UNIVARIATE_MODELS,
    family,
)
from bayesgmm.exceptions import ConfigError, ConvergenceWarning, DegenerateFitError

ALIASES = {"VVV": "full", "EEE": "tied", "VVI": "diag", "VII": "spherical"}
NEW = tuple(m for m in MCLUST_MODELS if m not in ALIASES)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    with threadpool_limits(limits=1):
        yield


def mclust_n_var_params(model: str, d: int, G: int) -> int:
    """mclust 6.1's ``nVarParams(modelName, d, G)``, transcribed."""
    return {
        "E": 1, "V": G, "EII": 1, "VII": G, "EEI": d, "VEI": G + (d - 1),
        "EVI": 1 + G * (d - 1), "VVI": G * d, "EEE": d * (d + 1) // 2,
        "EVE": 1 + G * (d - 1) + d * (d - 1) // 2,
        "VEE": G + (d - 1) + d * (d - 1) // 2,
        "VVE": G + G * (d - 1) + d * (d - 1) // 2,
        "EEV": 1 + (d - 1) + G * d * (d - 1) // 2,
        "VEV": G + (d - 1) + G * d * (d - 1) // 2,
        "EVV": 1 - G + G * d * (d + 1) // 2, "VVV": G * d * (d + 1) // 2,
    }[model]  # fmt: skip


def _structure(name: str) -> str:
    fam = family(name)
    return getattr(fam, "structure", fam.mclust)


def _orthogonal(rng, d):
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def random_covariances(structure: str, K: int, d: int, rng) -> np.ndarray:
    """(K, d, d) covariances of the family: volume, shape and orientation drawn per part."""
    vol, shp, ori = structure

    def part(letter, draw):
        if letter == "V":
            return [draw() for _ in range(K)]
        return [draw()] * K

    lam = part(vol, lambda: rng.uniform(0.5, 2.0))
    shapes = part(shp, lambda: np.sort(np.exp(rng.normal(scale=0.7, size=d)))[::-1])
    shapes = [np.ones(d) if shp == "I" else s / np.exp(np.log(s).mean()) for s in shapes]
    rots = part(ori, lambda: _orthogonal(rng, d))
    rots = [np.eye(d) if ori == "I" else r for r in rots]
    return np.stack([lam[k] * (rots[k] * shapes[k]) @ rots[k].T for k in range(K)])


def in_layout(name: str, covs: np.ndarray) -> np.ndarray:
    """Full (K, d, d) matrices in the family's layout."""
    K, d, _ = covs.shape
    shape = family(name).layout(K, d)
    if shape == (K, d, d):
        return covs
    if shape == (d, d):
        return covs[0]
    diag = np.diagonal(covs, axis1=1, axis2=2)
    return diag if shape == (K, d) else diag[:, 0]


def scipy_mixture(X, weights, means, covs) -> np.ndarray:
    comp = [stats.multivariate_normal(m, c).logpdf(X) for m, c in zip(means, covs, strict=True)]
    return logsumexp(np.stack(comp, axis=1) + np.log(weights), axis=1)


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """Three rotated, anisotropic clusters in 3-D (n = 180)."""
    rng = np.random.default_rng(18)
    covs = random_covariances("VVV", 3, 3, rng)
    centres = np.array([[0.0, 0.0, 0.0], [4.0, 1.0, -2.0], [-3.0, 3.0, 2.0]])
    return np.vstack(
        [rng.multivariate_normal(c, s, size=60) for c, s in zip(centres, covs, strict=True)]
    )


# --------------------------------------------------------------------------- #
# 1. the table
# --------------------------------------------------------------------------- #


def test_every_name_has_a_record_and_aliases_share_it():
    assert COVARIANCE_TYPES == ("full", "tied", "diag", "spherical")
    assert len(MCLUST_MODELS) == 14 and set(EM_COVARIANCE_TYPES) >= set(MCLUST_MODELS)
    for alias, name in ALIASES.items():
        assert family(alias) is family(name) and family(name).mclust == alias
    for name in (*NEW, *UNIVARIATE_MODELS):
        fam = family(name)
        assert isinstance(fam, EigenFamily) and fam.name == name


@pytest.mark.parametrize("name", MCLUST_MODELS + UNIVARIATE_MODELS)
def test_parameter_counts_equal_mclust(name):
    dims = [1] if name in UNIVARIATE_MODELS else [1, 2, 3, 5]
    for d in dims:
        for K in (1, 2, 4):
            assert family(name).n_parameters(K, d) == mclust_n_var_params(name, d, K)


def test_em_result_counts_as_mclust(blobs):
    fit = fit_em(blobs, 3, covariance_type="VEV", prior=None, random_seed=0, n_init=2)
    # mclust's nMclustParams: nVarParams + G d means + G - 1 proportions
    assert fit.n_parameters() == mclust_n_var_params("VEV", 3, 3) + 3 * 3 + 2
    assert fit.n_parameters() == 3 * 6 - 2 * 2 + 9 + 2  # VEV = K D(D+1)/2 - (K-1)(D-1)


# --------------------------------------------------------------------------- #
# 2. densities at fixed parameters, and EM on every family
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", MCLUST_MODELS)
def test_log_density_at_fixed_parameters_matches_scipy(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    K, d = 3, 4
    covs = random_covariances(_structure(name), K, d, rng)
    weights, means = rng.dirichlet(np.full(K, 2.0)), rng.normal(scale=2.0, size=(K, d))
    X = rng.normal(scale=3.0, size=(400, d))
    got = _gaussian.log_mixture_density(X, weights, means, in_layout(name, covs), name)
    np.testing.assert_allclose(got, scipy_mixture(X, weights, means, covs), rtol=0, atol=1e-8)


def _fits(X, name, prior, seeds=(0, 1)):
    for seed, init in zip(seeds, ("k-means++", "random"), strict=False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            yield fit_em(
                X, 3, covariance_type=name, prior=prior, init=init, n_init=1, max_iter=300,
                random_seed=seed,
            )  # fmt: skip


@pytest.mark.parametrize("prior", [None, "default"])
@pytest.mark.parametrize("name", NEW)
def test_em_objective_never_decreases_and_loglik_is_scipys(blobs, name, prior):
    checked = 0
    for fit in _fits(blobs, name, prior):
        covs = fit.covariance_matrices()
        ref = scipy_mixture(blobs, fit.weights, fit.means, covs)
        np.testing.assert_allclose(fit.log_density(blobs), ref, rtol=0, atol=1e-8)
        assert fit.log_likelihood == pytest.approx(ref.sum(), rel=1e-12)
        checked += check_objective_trace(fit)
    assert checked >= 1


def _scipy_log_prior(structure: str, prior: EMPrior, covs: np.ndarray) -> float:
    """The covariance prior from scipy.stats: one density per distinct covariance matrix
    (inverse-Wishart; inverse-gamma on the variances when the orientation is I, on the one
    variance when the shape is I too)."""
    distinct = covs if "V" in structure else covs[:1]
    nu, psi = prior.cov_dof, prior.cov_scale
    if structure[2] != "I":
        return float(sum(stats.invwishart.logpdf(c, df=nu, scale=psi) for c in distinct))
    var = np.diagonal(distinct, axis1=1, axis2=2)
    if structure[1] == "I":
        return float(stats.invgamma.logpdf(var[:, 0], nu / 2, scale=np.diag(psi).mean() / 2).sum())
    return float(stats.invgamma.logpdf(var, nu / 2, scale=np.diag(psi) / 2).sum())


@pytest.mark.parametrize("name", NEW)
def test_log_posterior_is_loglik_plus_scipy_log_prior(blobs, name):
    fit = fit_em(blobs, 3, covariance_type=name, random_seed=0, n_init=1)
    prior = fit.prior
    weight_mean = stats.dirichlet.logpdf(fit.weights, prior.weight_concentration)
    weight_mean += stats.norm.logpdf(fit.means, prior.mean_loc, prior.mean_scale).sum()
    expected = weight_mean + _scipy_log_prior(_structure(name), prior, fit.covariance_matrices())
    assert fit.log_posterior - fit.log_likelihood == pytest.approx(expected, rel=1e-9, abs=1e-8)
    args = (fit.weights, fit.means, fit.covariances, name)
    assert prior.log_density(*args) == pytest.approx(expected, rel=1e-12, abs=1e-9)


# --------------------------------------------------------------------------- #
# 3. the M-step is the family's maximiser
# --------------------------------------------------------------------------- #


def _objective(S, m, covs):
    logdet = np.linalg.slogdet(covs)[1]
    trace = np.einsum("kii->k", np.linalg.solve(covs, S))
    return -0.5 * float((m * logdet + trace).sum())


def _decompose(structure, covs):
    """(volumes, shapes, orientations) of covariances of the family, checking that they are."""
    d = covs.shape[-1]
    vol, shp, ori = structure
    if ori == "I":
        D = np.broadcast_to(np.eye(d), covs.shape)
    elif ori == "E":
        D = np.broadcast_to(np.linalg.eigh(covs[0])[1], covs.shape)
    else:
        D = np.linalg.eigh(covs)[1]
    lam = np.einsum("kji,kjl,kli->ki", D, covs, D)
    np.testing.assert_allclose(np.einsum("kij,kj,klj->kil", D, lam, D), covs, atol=1e-9)
    volume = np.exp(np.log(lam).mean(axis=1))
    shape = lam / volume[:, None]
    if vol == "E":
        np.testing.assert_allclose(volume, volume[0], rtol=1e-9)
    if shp == "E":
        np.testing.assert_allclose(shape, np.broadcast_to(shape[0], shape.shape), rtol=1e-7)
    if shp == "I":
        np.testing.assert_allclose(shape, 1.0, rtol=1e-9)
    return volume, shape, np.array(D)


def _perturbed(structure, volume, shape, D, eps, rng):
    G, d = shape.shape
    vol, shp, ori = structure

    def draw(letter, size):
        if letter == "I":
            return np.zeros((G, *size))
        x = rng.normal(size=(G if letter == "V" else 1, *size))
        return np.broadcast_to(x, (G, *size))

    v = volume * np.exp(eps * draw(vol, ())[:, ...])
    log_s = draw(shp, (d,))
    s = shape * np.exp(eps * (log_s - log_s.mean(axis=-1, keepdims=True)))
    skew = draw(ori, (d, d))
    R = np.stack([expm(eps * (a - a.T)) for a in skew])
    Dp = D @ R
    return np.einsum("kij,kj,klj->kil", Dp, v[:, None] * s, Dp)


def _scatters(rng, G, d):
    n = rng.integers(20, 60, size=G)
    A = [
        rng.normal(size=(k, d)) @ (rng.uniform(0.3, 3.0, d)[:, None] * _orthogonal(rng, d))
        for k in n
    ]
    return np.stack([a.T @ a for a in A]), n.astype(float)


@pytest.mark.parametrize("name", MCLUST_MODELS)
def test_ml_mstep_maximises_the_family_objective(name):
    rng = np.random.default_rng(sum(map(ord, name)))
    structure = _structure(name)
    W, N = _scatters(rng, 3, 3)
    fam = EigenFamily(name)  # also the four closed forms, through the eigen code
    S, m = (W, N) if fam.per_component else (W.sum(0, keepdims=True), N.sum(keepdims=True))
    covs = constrained_covariances(structure, S, m)
    volume, shape, D = _decompose(structure, covs)
    best = _objective(S, m, covs)
    for _ in range(6):
        other = _perturbed(structure, volume, shape, D, 1e-2, rng)
        assert _objective(S, m, other) <= best + 1e-9 * abs(best)


@pytest.mark.parametrize("name", MCLUST_MODELS)
def test_map_mstep_maximises_the_family_log_posterior(name):
    rng = np.random.default_rng(7 + sum(map(ord, name)))
    structure = _structure(name)
    W, N = _scatters(rng, 3, 3)
    prior = EMPrior(np.ones(3), np.zeros(3), np.ones(3), 5.0, np.diag([2.0, 1.0, 0.5]))
    fam = EigenFamily(name)
    scatter = W if fam.per_component else W.sum(0)
    covs = fam.to_full(fam.map_covariance(scatter, N, fam.prior_terms(prior.cov_scale, 5.0)), 3, 3)

    def log_post(c):
        return _objective(W, N, c) + _scipy_log_prior(structure, prior, c)

    volume, shape, D = _decompose(structure, covs if fam.per_component else covs[:1])
    best = log_post(covs)
    for _ in range(6):
        other = _perturbed(structure, volume, shape, D, 1e-2, rng)
        other = np.broadcast_to(other, covs.shape)
        assert log_post(other) <= best + 1e-9 * abs(best)


@pytest.mark.parametrize("name", ["VVV", "EEE", "VVI", "VII"])
def test_eigen_mstep_reproduces_the_closed_form_records(name):
    rng = np.random.default_rng(4)
    K, d = 3, 2
    W, N = _scatters(rng, K, d)
    record, eigen = family(name), EigenFamily(name)
    diag = np.diagonal(W, axis1=1, axis2=2)
    # the records' own statistics: (K, D, D), pooled (D, D), (K, D) variances, (K,) traces
    scatter = {"VVV": W, "EEE": W.sum(0), "VVI": diag, "VII": diag.sum(axis=1)}[name]
    full_W = W if eigen.per_component else W.sum(0)
    ml, _ = record.ml_covariance(scatter, N, N, 0.0, 0.0, d)
    ml_eigen, _ = eigen.ml_covariance(full_W, N, N, 0.0, 0.0, d)
    np.testing.assert_allclose(record.to_full(ml, K, d), eigen.to_full(ml_eigen, K, d), rtol=1e-12)
    psi = np.diag([2.0, 0.5])
    got = eigen.map_covariance(full_W, N, eigen.prior_terms(psi, 5.0))
    ref = record.map_covariance(scatter, N, record.prior_terms(psi, 5.0))
    np.testing.assert_allclose(record.to_full(ref, K, d), eigen.to_full(got, K, d), rtol=1e-12)


# --------------------------------------------------------------------------- #
# 4. names, aliases, univariate models, what the Bayesian model refuses
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("alias", "name"), ALIASES.items())
def test_mclust_names_of_the_four_give_the_same_fits(blobs, alias, name):
    for prior in (None, "default"):
        a = fit_em(blobs, 3, covariance_type=alias, prior=prior, random_seed=3, n_init=2)
        b = fit_em(blobs, 3, covariance_type=name, prior=prior, random_seed=3, n_init=2)
        assert a.covariance_type == name
        for field in ("weights", "means", "covariances", "prec_chol", "objective_trace"):
            assert np.array_equal(getattr(a, field), getattr(b, field))


def test_univariate_models():
    waiting = load_faithful()[["waiting"]]
    e = fit_em(waiting, 2, covariance_type="E", prior=None, random_seed=2)
    assert e.log_likelihood == pytest.approx(-1034.002, abs=0.05)  # mclust's E, G = 2
    assert e.n_parameters() == 1 + 2 + 1 and e.covariance_type == "E"
    v = fit_em(waiting, 2, covariance_type="V", prior=None, random_seed=2)
    full = fit_em(waiting, 2, covariance_type="full", prior=None, random_seed=2)
    assert v.log_likelihood == pytest.approx(full.log_likelihood, abs=1e-6)
    with pytest.raises(ConfigError, match=r"'E' is mclust's univariate model.*'EII'"):
        fit_em(load_faithful(), 2, covariance_type="E")


def test_unknown_name_lists_every_family():
    with pytest.raises(ConfigError, match=r"'spherical', 'EII', 'VII'.*'VVV', 'E', 'V'"):
        fit_em(np.random.default_rng(0).normal(size=(30, 2)), 2, covariance_type="VVX")


# --------------------------------------------------------------------------- #
# 5. degenerate fits, serialisation
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", NEW)
def test_collapsing_components_never_give_nan(name):
    rng = np.random.default_rng(7)
    X = np.column_stack([rng.integers(0, 4, 120).astype(float), rng.normal(size=120)])
    try:
        fit = fit_em(X, 5, covariance_type=name, prior=None, random_seed=0, n_init=2)
    except DegenerateFitError as exc:
        assert "fewer components" in str(exc) and "reg_covar" in str(exc)
        return
    arrays = [fit.weights, fit.means, fit.covariances, fit.chol_cov, fit.prec_chol]
    assert all(np.isfinite(a).all() for a in arrays) and np.isfinite(fit.log_likelihood)


def test_a_singular_scatter_is_flagged_not_nan():
    fam = family("EVV")
    W = np.stack([np.eye(2), np.array([[1.0, 1.0], [1.0, 1.0]])])  # component 1 on a line
    cov, singular = fam.ml_covariance(W, np.array([5.0, 2.0]), np.array([5.0, 2.0]), 0, 1e-12, 2)
    assert singular.tolist() == [False, True] and np.isfinite(cov).all()
    assert fam.min_component_size(2) == 3 and family("VEV").min_component_size(2) == 2


def test_round_trip(blobs):
    fit = fit_em(blobs, 3, covariance_type="EVE", random_seed=0, n_init=1)
    again = EMResult.from_dict(fit.to_dict())
    assert again.covariance_type == "EVE" and again.covariances.shape == (3, 3, 3)
    # equal to rounding: the fitted factors are stored transposed, the restored C-ordered
    np.testing.assert_allclose(again.log_density(blobs), fit.log_density(blobs), rtol=0, atol=1e-12)
