"""BIC/ICL at the EM solution (bayesgmm.core.bic): mclust's values and convention,
degenerate fits reported (with reasons consistent with their numbers) and not ranked,
per-fit seeds, the short-EM search, any family of the table. More values from R's mclust:
tests/core/test_mclust_reference.py."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from bayesgmm.core.bic import best_bic, bic_table, degeneracy_reason
from bayesgmm.core.datasets import load_faithful
from bayesgmm.core.em import fit_em
from bayesgmm.core.families import MCLUST_MODELS
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
    table = bic_table(three_clusters(), range(1, 6), ["full"], n_init=20, random_seed=0)
    bic = table.set_index("K")["bic"]
    assert (table["status"] == "ok").all()
    assert bic[3] > bic[2] and bic[3] > bic[4]
    assert int(best_bic(table)["K"]) == 3


@pytest.fixture(scope="module")
def faithful_table() -> pd.DataFrame:
    return bic_table(load_faithful(), range(1, 6), n_init=20, random_seed=0)


def test_faithful_bic_matches_mclust(faithful_table):
    best = best_bic(faithful_table)
    # mclust 6: Mclust(faithful) -> "EEE,3", BIC -2314.316, logL -1126.326 (MLE, no prior)
    assert (best["covariance_type"], best["mclust"], int(best["K"])) == ("tied", "EEE", 3)
    assert best["bic"] == pytest.approx(-2314.316, abs=0.1)
    assert best["log_likelihood"] == pytest.approx(-1126.326, abs=0.05)
    assert best["n_parameters"] == 11
    assert len(faithful_table) == 20
    assert set(faithful_table["status"]) <= {"ok", "degenerate", "failed"}
    assert faithful_table.attrs["convention"] == "mclust"
    k1 = faithful_table[faithful_table["K"] == 1]
    assert (k1["n_starts"] == 1).all() and (
        faithful_table[faithful_table["K"] > 1]["n_starts"] == 20
    ).all()
    ok = faithful_table[faithful_table["status"] == "ok"]
    assert ((ok["n_best"] >= 1) & (ok["n_best"] <= 20)).all()


def test_bic_sign_convention_against_sklearn():
    from sklearn.mixture import GaussianMixture

    X = load_faithful().to_numpy()
    row = bic_table(X, [2], ["full"], n_init=10).iloc[0]
    gm = GaussianMixture(2, covariance_type="full", n_init=10, reg_covar=0.0, random_state=0)
    gm.fit(X)
    # scikit-learn's BIC is the negative of mclust's (lower is better there)
    assert gm.bic(X) == pytest.approx(-row["bic"], abs=0.05)
    sk = bic_table(X, [2], ["full"], n_init=10, convention="sklearn")
    assert sk.attrs["convention"] == "sklearn"
    assert sk.iloc[0]["bic"] == pytest.approx(gm.bic(X), abs=0.05)
    assert sk.iloc[0]["icl"] == -row["icl"]


def test_best_bic_follows_the_convention():
    X = three_clusters(seed=4)
    mc = bic_table(X, [2, 3, 4], ["full"], n_init=5)
    sk = bic_table(X, [2, 3, 4], ["full"], n_init=5, convention="sklearn")
    pd.testing.assert_series_equal(sk["bic"], -mc["bic"])
    for criterion in ("bic", "icl"):
        assert int(best_bic(mc, criterion)["K"]) == int(best_bic(sk, criterion)["K"]) == 3
    wrong = sk.copy()
    wrong.attrs["convention"] = "R"
    with pytest.raises(ConfigError, match="convention"):
        best_bic(wrong)


def test_bic_table_is_reproducible_and_per_fit_seeded(capsys):
    X = three_clusters(seed=3)
    a = bic_table(X, [2, 3], ["full", "diag"], n_init=20, random_seed=7, progress=True)
    b = bic_table(X, [2, 3], ["full", "diag"], n_init=20, random_seed=7)
    pd.testing.assert_frame_equal(a, b)
    # a fit's seed depends only on (master seed, family, K), not on the rest of the sweep
    c = bic_table(X, [3], ["diag"], n_init=20, random_seed=7)
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
    table = bic_table(X, [1, 2], ["full"], n_init=1).set_index("K")
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
    tiny = replace(fit, weights=np.array([0.9999, 0.0001]))
    reason = degeneracy_reason(tiny, X)
    mass, distinct, m = rule_one_numbers(reason)
    assert mass < m and distinct < m == 2
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


def rule_one_numbers(reason: str) -> tuple[float, int, int]:
    """The responsibility mass, distinct points and points needed a rule-1 reason states."""
    found = re.search(
        r"holds ([0-9.]+) points of responsibility mass and (\d+) distinct point\(s\) by MAP "
        r"assignment, fewer than the (\d+) ",
        reason,
    )
    assert found, reason
    return float(found[1]), int(found[2]), int(found[3])


def test_rule_one_states_numbers_consistent_with_it():
    # issue 18: a component of two distinct points with sd 0.04 was reported as holding
    # "2.0 points, fewer than the 2 a full covariance needs". In one dimension two
    # distinct points give a non-singular variance: that is enough, whatever the mass.
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, 200), [10.0, 10.08]])[:, None]
    fit = fit_em(X, 2, covariance_type="full", prior=None, n_init=5, random_seed=0)
    assert fit.covariances[1, 0, 0] == pytest.approx(0.04**2, rel=1e-3)
    two_points = replace(fit, weights=np.array([200.004, 1.996]) / 202)  # mass 1.996 < 2
    assert degeneracy_reason(two_points, X) is None
    # a component on one distinct point (doubled) is too few; the stated mass reads < 2
    X1 = np.concatenate([rng.normal(0, 1, 200), [10.0, 10.0]])[:, None]
    one = replace(fit, weights=np.array([200.004, 1.996]) / 202)
    mass, distinct, m = rule_one_numbers(degeneracy_reason(one, X1))
    assert (mass, distinct, m) == (1.99, 1, 2)


def test_bic_table_accepts_every_family_of_the_table():
    X = three_clusters(seed=5, n_per=40)
    t = bic_table(X, [2], "mclust", n_init=2)
    assert list(t["covariance_type"]) == list(MCLUST_MODELS) == list(t["mclust"])
    assert (t["status"] == "ok").all()
    npar = dict(zip(t["covariance_type"], t["n_parameters"], strict=True))
    assert (npar["EII"], npar["VVV"], npar["EEE"], npar["VEV"]) == (6, 11, 8, 10)
    # aliases name one family: the same seed, the same fit
    a = bic_table(X, [3], ["tied", "VVI"], n_init=3, random_seed=2)
    b = bic_table(X, [3], ["EEE", "diag"], n_init=3, random_seed=2)
    assert list(a["mclust"]) == list(b["mclust"]) == ["EEE", "VVI"]
    assert list(a["log_likelihood"]) == list(b["log_likelihood"])
    uni = bic_table(X[:, :1], [1, 2], "mclust", n_init=2)
    assert list(uni["covariance_type"]) == ["E", "E", "V", "V"]


def test_the_kept_fit_is_the_best_non_degenerate_start():
    # Old Faithful, VVE, K = 3: the highest-likelihood starts collapse onto tied waiting
    # times (logL about -1103, rule 3); bic_table keeps the best regular fit, as mclust
    # does (the best of 60 R starts: -1122.354; mclust's own: -1126.092)
    row = bic_table(load_faithful(), [3], ["VVE"], n_init=100).iloc[0]
    assert row["status"] == "ok" and row["reason"] == ""
    assert -1122.354 - 0.05 <= row["log_likelihood"] < -1115


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k_range": []}, "non-empty"),
        ({"k_range": [0, 1]}, "background-noise component alone"),  # K = 0 needs noise
        ({"k_range": [2, 2]}, "repeated"),
        ({"k_range": 3}, "iterable"),
        ({"covariance_types": ["ful"]}, "family names the table knows"),
        ({"covariance_types": []}, "non-empty"),
        ({"covariance_types": ["full", "VVV"]}, "same family twice"),
        ({"n_init": 0}, "n_init"),
        ({"convention": "R"}, "convention"),
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
