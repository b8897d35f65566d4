"""EMPrior.log_density: the parameters it is given must have the family's layout and
structure (mclust's volume / shape / orientation), else a ConfigError says which."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import two_blobs

from bayesgmm.core.em import fit_em
from bayesgmm.core.em_prior import EMPrior
from bayesgmm.core.families import EM_COVARIANCE_TYPES, UNIVARIATE_MODELS
from bayesgmm.exceptions import ConfigError

K, D = 2, 2
S = np.array([[2.0, 0.6], [0.6, 1.0]])  # volume sqrt(1.64), correlated
R = np.array([[0.0, -1.0], [1.0, 0.0]])  # a quarter turn
W, M = np.array([0.4, 0.6]), np.array([[0.0, 0.0], [3.0, 1.0]])


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return two_blobs(D, seed=11)


@pytest.fixture(scope="module")
def prior(data) -> EMPrior:
    return EMPrior.default(data, K)


@pytest.mark.parametrize("name", EM_COVARIANCE_TYPES)
def test_ems_own_estimate_is_accepted_and_scored_as_em_scores_it(name, data):
    X = data[:, :1] if name in UNIVARIATE_MODELS else data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_em(X, K, covariance_type=name, n_init=1, max_iter=20, random_seed=0)
    lp = fit.prior.log_density(fit.weights, fit.means, fit.covariances, name)
    np.testing.assert_allclose(lp, fit.log_posterior - fit.log_likelihood, rtol=1e-10)


@pytest.mark.parametrize(
    ("covariances", "name", "needle"),
    [
        (S, "full", r"shape \(2, 2, 2\).*got \(2, 2\)"),
        (np.stack([S, S]), "tied", r"shape \(2, 2\).*got \(2, 2, 2\)"),
        (np.stack([S, S, S]), "VVV", r"shape \(2, 2, 2\).*got \(3, 2, 2\)"),
        (np.ones(2), "diag", r"shape \(2, 2\).*got \(2,\)"),
        (np.ones((2, 2)), "spherical", r"shape \(2,\).*got \(2, 2\)"),
        (np.stack([S, S + np.array([[0.0, 0.1], [0.0, 0.0]])]), "full", "symmetric"),
        (np.diag([1.0, 2.0]), "EII", "equal eigenvalues"),
        (S, "EEI", "diagonal"),
        (np.stack([S, S]), "VEI", "diagonal"),
        (np.stack([np.diag([1.0, 2.0]), np.diag([1.0, 3.0])]), "EVI", "equal volumes"),
        (np.stack([np.diag([1.0, 2.0]), np.diag([2.0, 1.0])]), "VEI", "same shape"),
        (np.stack([S, 2.0 * S]), "EEV", "equal volumes"),
        (np.stack([S, R @ np.diag([3.0, 1.0]) @ R.T]), "VEV", "same shape"),
        (np.stack([S, np.diag([1.0, 2.0])]), "VEE", "same shape"),
        (np.stack([S, np.diag([2.0, 0.82])]), "EVE", "common orientation"),
        (np.stack([S, np.diag([1.0, 2.0])]), "VVE", "common orientation"),
        (np.stack([S, 2.0 * S]), "EVV", "equal volumes"),
    ],
)
def test_covariances_without_the_familys_structure_are_refused(prior, covariances, name, needle):
    with pytest.raises(ConfigError, match=needle):
        prior.log_density(W, M, covariances, name)


def test_weights_and_means_must_match_the_prior(prior):
    with pytest.raises(ConfigError, match=r"weights must have shape \(2,\)"):
        prior.log_density([1.0], M, np.stack([S, S]), "full")
    with pytest.raises(ConfigError, match=r"means must have shape \(2, 2\)"):
        prior.log_density(W, M[:, :1], np.stack([S, S]), "full")


def test_the_structures_that_hold_are_accepted(prior):
    # one matrix of each structure, built from its parts, is accepted (no false alarms)
    A = np.diag([2.0, 0.5])
    Q = np.array([[0.8, -0.6], [0.6, 0.8]])  # a rotation
    ok = {
        "EII": 1.5 * np.eye(2),
        "EEI": np.diag([1.5, 0.5]),
        "VEI": np.stack([A, 3.0 * A]),
        "EVI": np.stack([A, np.diag([0.25, 4.0])]),
        "VEE": np.stack([Q @ A @ Q.T, 2.0 * Q @ A @ Q.T]),
        "EVE": np.stack([Q @ A @ Q.T, Q @ np.diag([0.5, 2.0]) @ Q.T]),
        "VVE": np.stack([Q @ A @ Q.T, Q @ np.diag([3.0, 1.0]) @ Q.T]),
        "EEV": np.stack([Q @ A @ Q.T, A]),
        "VEV": np.stack([Q @ A @ Q.T, 5.0 * A]),
        "EVV": np.stack([Q @ A @ Q.T, S / np.sqrt(np.linalg.det(S))]),
    }
    for name, covariances in ok.items():
        assert np.isfinite(prior.log_density(W, M, covariances, name)), name
