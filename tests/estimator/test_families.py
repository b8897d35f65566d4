"""mclust's families end to end: fit (EM start, NUTS, relabelling), posterior draws in the
family, predictions, save / load, the summary, and choosing among families."""

import warnings

import numpy as np
import pytest

from bayesgmm import BayesianGMM, load
from bayesgmm.core.eigen_families import constrained_covariances
from bayesgmm.core.families import family

SAMPLER = {"draws": 200, "tune": 300, "chains": 2, "random_seed": 4, "progressbar": False}


def family_data(structure: str, n: int = 120, seed: int = 0):
    """Three separated 2-D clusters whose covariances are in the family ``structure``
    (its maximum-likelihood fit to three random covariances); returns X, labels, the
    true covariances and the true means."""
    rng = np.random.default_rng(seed)
    cov = []
    for k in range(3):
        angle = rng.uniform(0, np.pi)
        Q = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        cov.append(Q * (np.array([2.0, 0.5]) * (1.0 + 0.6 * k)) ** 2 @ Q.T)
    cov, m = np.stack(cov), np.full(3, float(n))
    fam = family(structure)
    if fam.per_component:
        cov = constrained_covariances(structure, cov * m[:, None, None], m, cov)
    else:
        pooled = constrained_covariances(structure.replace("E", "V"), cov.sum(0, keepdims=True)
                                         * n, m.sum()[None], cov[:1])  # fmt: skip
        cov = np.repeat(pooled, 3, axis=0)
    centres = np.array([[-12.0, 0.0], [0.0, 12.0], [12.0, 0.0]])
    X = np.concatenate([rng.multivariate_normal(centres[k], cov[k], size=n) for k in range(3)])
    # columns in different units, but for the families that rescaling the columns
    # separately would take out of the family (EII, EVE, VVE, EEV, VEV)
    units = np.array([40.0, 40.0] if fam.isotropic else [1.0, 40.0])
    return X * units, np.repeat(np.arange(3), n), cov * np.outer(units, units), centres * units


def _in_family(structure: str, cov: np.ndarray) -> bool:
    """The family's own maximum-likelihood M-step returns ``cov`` unchanged (rescaled by
    one number, so that its tolerances do not depend on the units)."""
    cov = cov / np.diagonal(cov, axis1=-2, axis2=-1).mean()
    m = np.array([10.0, 20.0, 30.0])
    fam = family(structure)
    if not fam.per_component:
        return bool(np.allclose(cov, cov[:1], rtol=1e-8))
    again = constrained_covariances(structure, cov * m[:, None, None], m, cov)
    return bool(np.allclose(again, cov, rtol=1e-5, atol=1e-8))


def _fit(structure, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianGMM(3, covariance_type=structure, sampler=SAMPLER, **kw).fit(X)


# one family of each form: a diagonal shape, an LKJ correlation, a rotation shared by all
# components and one per component (the others: the slow step)
FORMS = ["EEI", "VEE", "EVE", "VEV"]
OTHERS = ["EII", "VEI", "EVI", "EVV", "VVE", "EEV"]


@pytest.mark.parametrize(
    "structure", FORMS + [pytest.param(s, marks=pytest.mark.slow) for s in OTHERS]
)
def test_a_family_fits_end_to_end_and_its_draws_stay_in_it(structure, tmp_path):
    X, labels, true_cov, centres = family_data(structure)
    gmm = _fit(structure, X)
    assert gmm.covariance_type == structure
    post = gmm.idata_["posterior"]
    cov = post["covariance"].transpose("chain", "draw", "component", ...).values
    for c, s in [(0, 0), (1, 57), (0, 199)]:
        assert _in_family(structure, cov[c, s]), (c, s)
    # recovered: clusters and covariances (relabelled to the EM start's order)
    pred = gmm.predict(X)
    agree = max(np.mean(pred == np.array(p)[labels]) for p in _perms())
    assert agree > 0.97
    order = [int(np.argmin(np.linalg.norm(gmm.em_.means - mu, axis=1))) for mu in centres]
    mean_cov = cov.mean(axis=(0, 1))[order]
    np.testing.assert_allclose(mean_cov, true_cov, rtol=0.35, atol=0.15 * np.abs(true_cov).max())
    rhat = gmm.diagnostics_.parameters["r_hat"]
    assert float(rhat.max()) < 1.05
    # the summary, predictions and a saved model
    summary = gmm.summary()
    assert {"weights[0]", "sds[2, feature_1]"} <= set(summary.index)
    has_corr = any(name.startswith("correlation[") for name in summary.index)
    assert has_corr == family(structure).correlated
    proba = gmm.predict_proba(X[:25])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    gmm.save(tmp_path / "model")
    again = load(tmp_path / "model")
    np.testing.assert_array_equal(again.predict_proba(X[:25]), proba)
    assert again.covariance_type == structure


def _perms():
    import itertools

    return itertools.permutations(range(3))


def test_priors_of_the_eigen_parameters_are_validated():
    from bayesgmm import ConfigError, Prior

    X = family_data("VEV", n=20)[0]
    with pytest.raises(ConfigError, match=r"shape.sigma must be > 0"):
        BayesianGMM(3, covariance_type="VEV", priors={"shape": {"sigma": -1.0}}).fit(X)
    three = Prior("ZeroSumNormal", mu=[0.0, 1.0, 2.0])  # three values for two features
    with pytest.raises(ConfigError, match=r"shape.mu"):
        BayesianGMM(3, covariance_type="VEV", priors={"shape": three}).fit(X)
    with pytest.raises(ConfigError, match=r"sds.*single number"):
        BayesianGMM(3, covariance_type="EII", priors={"sds": {"sigma": [1.0, 2.0]}}).fit(X)
