"""BIC/ICL at the EM solution (bayesgmm.core.bic): mclust's values and convention,
degenerate fits reported and not ranked, per-fit seeds."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bayesgmm.core.bic import best_bic, bic_table, degeneracy_reason
from bayesgmm.core.datasets import load_faithful
from bayesgmm.core.em import fit_em
from bayesgmm.exceptions import ConfigError, DataError, DegenerateFitError


def three_clusters(seed: int = 0, n_per: int = 70) -> np.ndarray:
    """Three well-separated unit-variance clusters in 2-D (6 sds apart)."""
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0], [6.0, 0.0], [3.0, 5.5]])
    return np.concatenate([rng.normal(c, 1.0, size=(n_per, 2)) for c in centers])


# --------------------------------------------------------------------------- #
# BIC / ICL
# --------------------------------------------------------------------------- #


def test_bic_prefers_three_on_three_clusters():
    table = bic_table(three_clusters(), range(1, 6), ["full"], random_seed=0)
    bic = table.set_index("K")["bic"]
    assert (table["status"] == "ok").all()
    assert bic[3] > bic[2] and bic[3] > bic[4]
    assert int(best_bic(table)["K"]) == 3


@pytest.fixture(scope="module")
def faithful_table() -> pd.DataFrame:
    return bic_table(load_faithful(), range(1, 6), random_seed=0)


def test_faithful_bic_matches_mclust(faithful_table):
    best = best_bic(faithful_table)
    # mclust 6: Mclust(faithful) -> "EEE,3", BIC -2314.316, logL -1126.326 (MLE, no prior)
    assert (best["covariance_type"], int(best["K"])) == ("tied", 3)
    assert best["bic"] == pytest.approx(-2314.316, abs=0.1)
    assert best["log_likelihood"] == pytest.approx(-1126.326, abs=0.05)
    assert best["n_parameters"] == 11
    assert len(faithful_table) == 20
    assert set(faithful_table["status"]) <= {"ok", "degenerate", "failed"}


def test_bic_sign_convention_against_sklearn():
    from sklearn.mixture import GaussianMixture

    X = load_faithful().to_numpy()
    row = bic_table(X, [2], ["full"]).iloc[0]
    gm = GaussianMixture(2, covariance_type="full", n_init=10, reg_covar=0.0, random_state=0)
    gm.fit(X)
    # scikit-learn's BIC is the negative of mclust's (lower is better there)
    assert gm.bic(X) == pytest.approx(-row["bic"], abs=0.05)


def test_bic_table_is_reproducible_and_per_fit_seeded(capsys):
    X = three_clusters(seed=3)
    a = bic_table(X, [2, 3], ["full", "diag"], random_seed=7, progress=True)
    b = bic_table(X, [2, 3], ["full", "diag"], random_seed=7)
    pd.testing.assert_frame_equal(a, b)
    # a fit's seed depends only on (master seed, family, K), not on the rest of the sweep
    c = bic_table(X, [3], ["diag"], random_seed=7)
    assert (
        c.iloc[0]["log_likelihood"]
        == a.set_index(["covariance_type", "K"]).loc[("diag", 3), "log_likelihood"]
    )
    out = capsys.readouterr().out
    assert out.count("bic_table:") == 4 and "K=3" in out


def test_degenerate_fits_are_reported_not_ranked():
    rng = np.random.default_rng(0)
    # 100 points in a blob + 30 on the line x2 = 4 (with 1e-4 jitter): the likelihood is
    # unbounded as a component's x2-variance shrinks onto the line
    line = np.column_stack([rng.normal(3, 1, 30), 4.0 + 1e-4 * rng.normal(size=30)])
    X = np.vstack([rng.normal(size=(100, 2)), line])
    table = bic_table(X, [1, 2], ["full"], n_init=5).set_index("K")
    assert table.loc[1, "status"] == "ok"
    assert table.loc[2, "status"] == "degenerate"
    assert "collapsed" in table.loc[2, "reason"]
    # its likelihood is far higher, but its BIC is not reported and it is not picked
    assert table.loc[2, "log_likelihood"] > table.loc[1, "log_likelihood"] + 50
    assert np.isnan(table.loc[2, "bic"]) and np.isnan(table.loc[2, "icl"])
    assert int(best_bic(table.reset_index())["K"]) == 1


def test_em_failures_are_degenerate_rows():
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(100, 2)), np.column_stack([rng.normal(3, 1, 30), [4.0] * 30])])
    table = bic_table(X, [1, 3], ["diag"], n_init=3).set_index("K")
    assert table.loc[3, "status"] == "degenerate"
    assert "EM failed" in table.loc[3, "reason"]
    all_bad = table.assign(status="degenerate").reset_index()
    with pytest.raises(DegenerateFitError, match="every one is degenerate"):
        best_bic(all_bad)


def test_degeneracy_rules_one_by_one():
    rng = np.random.default_rng(2)
    X = np.column_stack([rng.normal(size=300), np.round(rng.normal(0, 3, size=300))])
    fit = fit_em(X, 2, covariance_type="diag", prior=None, random_seed=0)
    assert degeneracy_reason(fit, X) is None
    # rule 1: a component with fewer points than its covariance needs
    tiny = replace(fit, weights=np.array([0.995, 0.005]))
    assert "fewer than the 2" in degeneracy_reason(tiny, X)
    # rule 2: a nearly singular covariance (standardised eigenvalue 1e-8)
    cov = np.array(fit.covariances)
    cov[1, 0] = 1e-8 * X[:, 0].var()
    assert "collapsed" in degeneracy_reason(replace(fit, covariances=cov), X)
    # rule 3: narrower than the integer grid of feature 1 (sd 0.2 < 1/sqrt(12) = 0.289)
    cov = np.array(fit.covariances)
    cov[0, 1] = 0.2**2
    reason = degeneracy_reason(replace(fit, covariances=cov), X)
    assert "resolution" in reason and "collapsed" not in reason
    cov[0, 1] = 0.35**2  # wider than the grid: fine
    assert degeneracy_reason(replace(fit, covariances=cov), X) is None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_range": []}, "non-empty"),
        ({"k_range": [0, 1]}, "invalid"),
        ({"k_range": [2, 2]}, "repeated"),
        ({"k_range": 3}, "iterable"),
        ({"covariance_types": ["ful"]}, "subset"),
        ({"prior": "mclust"}, "prior must be"),
        ({"random_seed": -1}, "random_seed"),
    ],
)
def test_bic_table_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        bic_table(three_clusters(), **kwargs)
    with pytest.raises(DataError):
        bic_table(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ConfigError, match="criterion"):
        best_bic(pd.DataFrame(), criterion="aic")
