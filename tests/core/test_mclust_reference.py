"""EM and BIC against R's mclust: values computed once by tests/data/mclust/make_references.R
(stored in references.json beside it, with the R and mclust versions); R is not needed here.

Two kinds of reference (see the R script): ``hc``, what mclust reports (EM from its
hierarchical start), and ``random``, the best of 60 further runs of mclust's EM from random
starts. mclust's reported fit is often not the best one: EM here must reach at least
mclust's likelihood, and the slow checks compare the whole BIC table with the best R found.
"""

from __future__ import annotations

import json
import math
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm.core.bic import best_bic, bic_table
from bayesgmm.core.datasets import load_faithful
from bayesgmm.core.em import fit_em
from bayesgmm.core.families import family

REF_DIR = Path(__file__).parents[1] / "data" / "mclust"
REFS = json.loads((REF_DIR / "references.json").read_text())
MODELS = REFS["models"]  # mclust's fourteen, in its order


@cache
def data(name: str) -> np.ndarray:
    if name == "faithful":
        return load_faithful().to_numpy()
    return pd.read_csv(REF_DIR / f"{name}.csv").to_numpy(dtype=float)


def family_ref(model: str, K: int) -> dict:
    return next(f for f in REFS["faithful"]["families"] if f["model"] == model and f["K"] == K)


def joint_log(X, weights, means, covariances) -> np.ndarray:
    """``log w_k + log N(x_i | mu_k, Sigma_k)`` (n, K) by scipy, from full covariances."""
    return np.stack(
        [
            math.log(w) + multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(weights, means, covariances, strict=True)
        ],
        axis=1,
    )


def mixture_loglik(X, weights, means, covariances) -> float:
    return float(logsumexp(joint_log(X, weights, means, covariances), axis=1).sum())


def log_resp(X, weights, means, covariances) -> np.ndarray:
    joint = joint_log(X, weights, means, covariances)
    return joint - logsumexp(joint, axis=1, keepdims=True)


def ml_fit(X, K, model, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes are not what is checked here
        return fit_em(X, K, covariance_type=model, prior=None, **kwargs)


def bic_grid(dataset: str, source: str) -> dict[tuple[str, int], float]:
    """{(model, K): BIC} of mclust's table (``hc``) or the best R found (``best``)."""
    ref = REFS[dataset]
    grid = {
        (m, K): v
        for m in MODELS
        for K, v in zip(REFS["K"], ref["bic_hc"][m], strict=True)
        if v is not None
    }
    if source == "best":
        for cell in ref["random"]:
            key = (cell["model"], cell["K"])
            if cell.get("bic") is not None and cell["bic"] > grid.get(key, -math.inf):
                grid[key] = cell["bic"]
    return grid


def top(grid: dict[tuple[str, int], float], n: int = 3) -> list[tuple[str, int]]:
    return sorted(grid, key=lambda key: -grid[key])[:n]


# --------------------------------------------------------------------------- #
# The reference file
# --------------------------------------------------------------------------- #


def test_reference_file_holds_the_published_values():
    assert REFS["mclust_version"].startswith("6.") and REFS["r_version"].startswith("R version")
    fa, di = REFS["faithful"], REFS["diabetes"]
    assert (fa["n"], di["n"], REFS["galaxies"]["n"]) == (272, 145, 82)
    assert fa["bic_hc"]["EEE"][2] == pytest.approx(-2314.316, abs=1e-3)
    assert [(t["model"], t["K"], round(t["bic"], 3)) for t in di["top3_hc"]] == [
        ("VVV", 3, -4734.561), ("VVE", 5, -4750.758), ("VVE", 6, -4761.356)
    ]  # fmt: skip
    assert di["top3_hc"][0]["loglik"] == pytest.approx(-2295.118, abs=1e-3)
    assert REFS["galaxies"]["V_4_random"]["loglik"] == pytest.approx(-197.45, abs=0.05)
    # the stored data: heplots' Diabetes (glufast, glutest, instest), MASS galaxies / 1000
    X = data("diabetes")
    assert X.shape == (145, 3) and X[103].tolist() == [75.0, 455.0, 392.0]
    assert data("galaxies").shape == (82, 1) and data("galaxies").min() == 9.172


@pytest.mark.parametrize("source", ["hc", "random"])
def test_stored_parameters_give_the_stored_loglik(source):
    # mclust reports the log-likelihood of its last E-step, one M-step before its
    # parameters; at convergence the two differ by < 0.02 here
    for f in REFS["faithful"]["families"]:
        p = f[source]
        ll = mixture_loglik(data("faithful"), p["weights"], p["means"], p["covariances"])
        assert ll == pytest.approx(p["loglik"], abs=0.02), (f["model"], f["K"])


# --------------------------------------------------------------------------- #
# Parameter counts
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("model", [*MODELS, "E", "V"])
def test_parameter_counts_equal_mclusts(model):
    rows = [r for r in REFS["n_parameters"] if r["model"] == model]
    assert len(rows) == (5 if model in ("E", "V") else 20)
    fam = family(model)
    for r in rows:
        K, d = r["K"], r["d"]
        ours = K - 1 + K * d + fam.n_parameters(K, d)  # as EMResult.n_parameters
        assert ours == r["n_parameters"], (model, d, K)


# --------------------------------------------------------------------------- #
# Published fits
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("dataset", "model", "K"), [("faithful", "EEE", 3), ("diabetes", "VVV", 3)]
)
def test_published_loglik_bic_icl(dataset, model, K):
    ref = next(t for t in REFS[dataset]["top3_hc"] if (t["model"], t["K"]) == (model, K))
    fit = ml_fit(data(dataset), K, model, n_init=20, random_seed=0)
    assert fit.log_likelihood == pytest.approx(ref["loglik"], abs=0.05)
    assert fit.n_parameters() == ref["df"]
    assert fit.bic() == pytest.approx(ref["bic"], abs=0.1)
    # mclust's ICL (its icl()): BIC + 2 sum_i log z_i,map(i), the hard classification
    X = data(dataset)
    log_z = log_resp(X, fit.weights, fit.means, fit.covariance_matrices())
    assert fit.icl() == pytest.approx(fit.bic() + 2 * log_z.max(axis=1).sum(), abs=1e-6)
    # EEE,3 on Old Faithful is flat where components 2 and 3 overlap: fits 0.01 apart in
    # logL differ by 0.6 in ICL (at mclust's parameters the formula gives -2357.90,
    # mclust -2357.82, its z one E-step behind its parameters)
    assert fit.icl() == pytest.approx(ref["icl"], abs=1.0)


def test_icl_is_mclusts_at_mclusts_parameters():
    p = family_ref("EEE", 3)["hc"]
    X = data("faithful")
    log_z = log_resp(X, p["weights"], p["means"], p["covariances"])
    assert p["bic"] + 2 * log_z.max(axis=1).sum() == pytest.approx(p["icl"], abs=0.1)
    # and not the soft (entropy) version
    entropy_icl = p["bic"] + 2 * (np.exp(log_z) * log_z).sum()
    assert abs(entropy_icl - p["icl"]) > 1.0


def test_diabetes_top_three_cells():
    # each of mclust's three best (model, K) is reached: EM finds mclust's fit or a better one
    table = bic_table(data("diabetes"), [3, 5, 6], ["VVV", "VVE"], n_init=20, random_seed=0)
    ours = table.set_index(["mclust", "K"])
    for t in REFS["diabetes"]["top3_hc"]:
        row = ours.loc[(t["model"], t["K"])]
        assert row["status"] == "ok", row["reason"]
        assert row["bic"] >= t["bic"] - 0.1, (t["model"], t["K"])
    assert ours.loc[("VVV", 3), "bic"] == pytest.approx(-4734.561, abs=0.1)
    assert (best_bic(table)["mclust"], int(best_bic(table)["K"])) == ("VVV", 3)


def test_galaxies_v4_default_starts_find_the_optimum():
    # mclust's hierarchical start ends at -199.25; the optimum (R, 400 random starts) -197.46
    ref = REFS["galaxies"]
    row = bic_table(data("galaxies"), [4], ["V"], random_seed=0).iloc[0]
    assert row["status"] == "ok"
    assert row["log_likelihood"] == pytest.approx(ref["V_4_random"]["loglik"], abs=0.05)
    assert row["log_likelihood"] > ref["V_4_hc"]["loglik"] + 1.0


# --------------------------------------------------------------------------- #
# Every family on Old Faithful
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("model", MODELS)
def test_family_loglik_faithful_k2(model):
    # K = 2: mclust's fit is the best R found (hc and 60 random starts agree), so EM must
    # reach it. EM may exceed it: for VVE (-1132.113 vs mclust's -1132.187, both with
    # one orientation; R's own dmvnorm confirms the higher value), mclust's orientation
    # update does not maximise the likelihood (see bayesgmm.core.eigen_families).
    ref = family_ref(model, 2)["hc"]
    X = data("faithful")
    fit = ml_fit(X, 2, model, n_init=10, random_seed=0)
    assert fit.log_likelihood >= ref["loglik"] - 0.05
    assert fit.n_parameters() == ref["df"]
    ll = mixture_loglik(X, fit.weights, fit.means, fit.covariance_matrices())
    assert fit.log_likelihood == pytest.approx(ll, abs=1e-8)


@pytest.mark.parametrize("model", MODELS)
def test_family_em_from_mclusts_solution_faithful_k3(model):
    # K = 3: EM started at mclust's means and weights ends at least as high as mclust
    ref = family_ref(model, 3)["hc"]
    fit = ml_fit(data("faithful"), 3, model, means_init=ref["means"], weights_init=ref["weights"])
    assert fit.log_likelihood >= ref["loglik"] - 0.05


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_family_best_fit_faithful_k3(model):
    # with bic_table's default starts, at least the best regular fit R found (mclust's or
    # one of 60 random starts; R's bests here hold >= 14 points and sds >= 0.06)
    ref = family_ref(model, 3)
    best = max(ref["hc"]["loglik"], ref["random"]["loglik"])
    row = bic_table(data("faithful"), [3], [model], random_seed=0).iloc[0]
    assert row["status"] == "ok", row["reason"]
    assert row["log_likelihood"] >= best - 0.05, (row["log_likelihood"], best)


# --------------------------------------------------------------------------- #
# The whole BIC table (slow)
# --------------------------------------------------------------------------- #


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["faithful", "diabetes"])
def test_bic_table_all_models(dataset):
    table = bic_table(data(dataset), REFS["K"], "mclust", random_seed=0)
    assert len(table) == 14 * 9
    ours = {(r.mclust, r.K): r.bic for r in table.itertuples() if r.status == "ok"}
    hc, best = bic_grid(dataset, "hc"), bic_grid(dataset, "best")
    # mclust's three best are reached (its fit or better) ...
    for key in top(hc):
        assert ours[key] >= hc[key] - 0.1, key
    # ... and the ranking's top three is that of the best fits R found: for diabetes
    # VVV,3; VVE,4; VVE,5 (mclust's hierarchical start reports VVE,4 at -4762.83, below
    # its VVE,5 and VVE,6, but 60 random starts of mclust's EM reach -4740.03)
    assert top(ours) == top(best)
    for key in top(best):
        assert ours[key] >= best[key] - 0.1, key
    # no (model, K) is missed badly: every cell reaches mclust's reported BIC
    missed = {k: round(hc[k] - v, 2) for k, v in ours.items() if k in hc and v < hc[k] - 0.1}
    # (EVV on faithful at K = 3, 7, 8 needs the starts seeded on scaled columns: from
    # k-means++ on the raw ones, 0 of 200 reached R's basins)
    assert not missed, missed


@pytest.mark.slow
def test_galaxies_v4_default_starts_over_seeds():
    lls = [
        bic_table(data("galaxies"), [4], ["V"], random_seed=s).iloc[0]["log_likelihood"]
        for s in range(1, 11)
    ]
    assert np.allclose(lls, REFS["galaxies"]["V_4_random"]["loglik"], atol=0.05), lls
