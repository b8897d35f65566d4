"""Label switching: relabelling (pivot, Stephens) and label-invariant summaries."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
import xarray as xr
from conftest import sample_from_starts
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesgmm.core.predict import co_clustering, score_samples
from bayesgmm.core.relabel import relabel
from bayesgmm.exceptions import ConfigError, DataError

CHECK_VARS = ["weights", "means", "sds"]


def _raw(idata: xr.DataTree) -> xr.Dataset:
    group = "posterior_raw" if "posterior_raw" in idata.children else "posterior"
    return idata[group].to_dataset()


def _permute(post: xr.Dataset, perm: np.ndarray) -> xr.Dataset:
    """Apply ``perm`` (chain, draw, component) to every component-indexed variable."""
    out = post.copy()
    C, S, _ = perm.shape
    chain, draw = np.arange(C)[:, None, None], np.arange(S)[None, :, None]
    for name, da in post.data_vars.items():
        if "component" in da.dims:
            order = ["chain", "draw", "component"]
            order += [d for d in da.dims if d not in order]
            values = da.transpose(*order).values[chain, draw, perm]
            out[name] = xr.DataArray(values, dims=order).transpose(*da.dims)
    return out


def _max_rhat(post: xr.Dataset) -> float:
    r = az.rhat(post[CHECK_VARS])
    return max(float(r[v].max()) for v in CHECK_VARS)


def _min_ess(post: xr.Dataset) -> float:
    e = az.ess(post[CHECK_VARS])
    return min(float(e[v].min()) for v in CHECK_VARS)


def _tree_with(idata: xr.DataTree, post: xr.Dataset) -> xr.DataTree:
    groups = {"posterior": post}
    for g in ("sample_stats", "log_likelihood", "observed_data"):
        if g in idata.children:
            groups[g] = idata[g].to_dataset()
    return xr.DataTree.from_dict(groups)


# --------------------------------------------------------------------------- #
# forced label switching on well-separated data
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def scrambled(separated_fit):
    """The real 4-chain posterior with chains put in different labellings.

    Chain 0 switches labels half-way (a mid-run switch); chains 1-3 each sit in another
    permutation of the labels for the whole run.
    """
    raw = _raw(separated_fit.idata_)
    C, S = raw.sizes["chain"], raw.sizes["draw"]
    applied = np.broadcast_to(np.arange(3), (C, S, 3)).copy()
    applied[0, S // 2 :] = [1, 2, 0]
    applied[1] = [2, 1, 0]
    applied[2] = [1, 0, 2]
    applied[3] = [2, 0, 1]
    return _tree_with(separated_fit.idata_, _permute(raw, applied)), applied


def test_real_fit_needs_no_relabelling(separated_fit):
    # all chains start at the EM solution on well-separated data: one labelling throughout
    _, info = relabel(separated_fit.idata_, reference=separated_fit.em_)
    assert info.n_permuted.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("method", ["pivot", "stephens"])
def test_forced_label_switching_is_undone(separated_fit, scrambled, method):
    tree, applied = scrambled
    assert _max_rhat(tree["posterior"].to_dataset()) > 1.5

    out, info = relabel(tree, reference=separated_fit.em_, method=method)
    post = out["posterior"].to_dataset()
    assert _max_rhat(post) <= 1.01
    assert _min_ess(post) >= 400
    # every permuted draw is found, and the original labelling comes back exactly
    S = applied.shape[1]
    assert info.n_permuted.tolist() == [S - S // 2, S, S, S]
    original = _raw(separated_fit.idata_)
    for v in original.data_vars:
        np.testing.assert_array_equal(post[v].values, original[v].values)
    # the sampler's output stays available
    xr.testing.assert_identical(out["posterior_raw"].to_dataset(), tree["posterior"].to_dataset())
    np.testing.assert_array_equal(out["relabel"]["n_permuted"].values, info.n_permuted)
    if method == "stephens":
        assert info.converged and info.n_iter >= 1


def test_default_reference_is_max_likelihood_draw(scrambled):
    tree, applied = scrambled
    out, info = relabel(tree)
    assert info.reference["source"].startswith("max-likelihood draw")
    assert _max_rhat(out["posterior"].to_dataset()) <= 1.01
    # the composition applied∘recovered is one global permutation for every draw
    g = np.take_along_axis(applied, info.permutations, axis=2).reshape(-1, 3)
    assert len(np.unique(g, axis=0)) == 1


@pytest.mark.slow
def test_chains_started_from_permuted_em_solutions(separated_X):
    """Real label switching: 4 NUTS chains started at differently permuted EM solutions."""

    from bayesgmm import build_model, fit_em, make_spec
    from bayesgmm.inference.starts import em_start

    X, spec = make_spec(separated_X, 3)
    em = fit_em(X, 3, prior=spec.priors.to_em_prior("full"), random_seed=0, n_init=3)
    model = build_model(X, spec=spec)
    start = em_start(em, spec)
    inits = [
        {k: (v[list(p)] if v.shape[:1] == (3,) else v) for k, v in start.items()}
        for p in [(0, 1, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    ]
    idata = sample_from_starts(model, inits, draws=1000, tune=500, random_seed=3)
    assert _max_rhat(idata["posterior"].to_dataset()) > 1.5
    for method in ("pivot", "stephens"):
        out, info = relabel(idata, reference=em, method=method)
        post = out["posterior"].to_dataset()
        assert _max_rhat(post) <= 1.01
        assert _min_ess(post) >= 400
        assert info.n_permuted.tolist() == [0, 1000, 1000, 1000]


# --------------------------------------------------------------------------- #
# Stephens on overlapping clusters
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def overlapping():
    """Overlapping clusters, posterior-like draws around the truth, each draw permuted."""
    rng = np.random.default_rng(7)
    K, D, C, S, N = 3, 2, 2, 200, 300
    w_true = np.array([0.5, 0.3, 0.2])
    mu_true = np.array([[0.0, 0.0], [1.6, 0.0], [0.8, 1.4]])  # 1.6 sd apart: overlapping
    cov_true = np.array([np.eye(2), [[1.0, 0.5], [0.5, 1.0]], [[0.6, -0.2], [-0.2, 0.9]]])
    z = rng.choice(K, N, p=w_true)
    X = np.array([rng.multivariate_normal(mu_true[k], cov_true[k]) for k in z])
    w = rng.dirichlet(N * w_true, size=(C, S))
    mu = mu_true + rng.normal(0, 0.12, size=(C, S, K, D))
    cov = cov_true * np.exp(rng.normal(0, 0.08, size=(C, S, K, 1, 1)))
    applied = np.array([[rng.permutation(K) for _ in range(S)] for _ in range(C)])
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        },
        coords={"component": [0, 1, 2], "feature": ["a", "b"], "feature_bis": ["a", "b"]},
    )
    tree = xr.DataTree.from_dict({"posterior": _permute(post, applied)})
    truth = {"weights": w_true, "means": mu_true, "covariances": cov_true}
    return tree, X, applied, truth


def _fraction_recovered(applied: np.ndarray, perm: np.ndarray) -> float:
    """Share of draws whose true labelling is the most common one (up to a global relabelling)."""
    g = np.take_along_axis(applied, perm, axis=2).reshape(-1, applied.shape[-1])
    _, counts = np.unique(g, axis=0, return_counts=True)
    return counts.max() / g.shape[0]


def test_stephens_recovers_permutations_where_pivot_is_ambiguous(overlapping):
    tree, X, applied, truth = overlapping
    # a pivot that merged the two most overlapping clusters (as EM can on such data):
    # components 0 and 1 are identical in it, so aligning to it is ambiguous
    merged = {k: np.array(v, dtype=float) for k, v in truth.items()}
    merged["means"][[0, 1]] = truth["means"][[0, 1]].mean(axis=0)
    merged["covariances"][[0, 1]] = truth["covariances"][[0, 1]].mean(axis=0)

    _, pivot_info = relabel(tree, reference=merged, method="pivot")
    _, st_info = relabel(tree, reference=merged, method="stephens", X=X)
    assert _fraction_recovered(applied, pivot_info.permutations) < 0.75
    assert st_info.converged
    assert _fraction_recovered(applied, st_info.permutations) >= 0.99
    # and without any reference (max-likelihood draw as the pivot)
    _, info = relabel(tree, method="stephens", X=X)
    assert _fraction_recovered(applied, info.permutations) >= 0.99


def test_stephens_subsamples_points(overlapping):
    tree, X, applied, _ = overlapping
    _, info = relabel(tree, method="stephens", X=X, max_points=100, random_seed=3)
    assert info.n_points == 100
    assert _fraction_recovered(applied, info.permutations) >= 0.99
    assert "stephens" in str(info) and "100 points" in str(info)


# --------------------------------------------------------------------------- #
# structure, families and errors (synthetic posteriors, no sampling)
# --------------------------------------------------------------------------- #


def _synthetic_posterior(covariance_type: str, rng, C=2, S=5, K=2, D=2) -> xr.Dataset:
    coords = {"component": list(range(K)), "feature": ["a", "b"], "feature_bis": ["a", "b"]}
    cov = np.broadcast_to(np.eye(D), (C, S, K, D, D)) * rng.uniform(0.5, 2, (C, S, K, 1, 1))
    data = {
        "weights": (("chain", "draw", "component"), rng.dirichlet(np.ones(K), (C, S))),
        "means": (("chain", "draw", "component", "feature"), rng.normal(size=(C, S, K, D))),
        "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
    }
    if covariance_type == "tied":
        data["sds"] = (("chain", "draw", "feature"), rng.uniform(1, 2, (C, S, D)))
        data["chol_corr"] = (
            ("chain", "draw", "feature", "feature_bis"),
            rng.normal(size=(C, S, D, D)),
        )
    else:
        data["sds"] = (("chain", "draw", "component", "feature"), rng.uniform(1, 2, (C, S, K, D)))
        data["chol_corr"] = (
            ("chain", "draw", "component", "feature", "feature_bis"),
            rng.normal(size=(C, S, K, D, D)),
        )
    return xr.Dataset(data, coords=coords)


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_every_component_variable_is_permuted_and_others_kept(covariance_type):
    rng = np.random.default_rng(0)
    post = _synthetic_posterior(covariance_type, rng)
    ref = {
        "weights": post["weights"].values[0, 0],
        "means": post["means"].values[0, 0],
        "covariances": post["covariance"].values[0, 0],
    }
    out, info = relabel(xr.DataTree.from_dict({"posterior": post}), reference=ref)
    new = out["posterior"].to_dataset()
    perm = info.permutations
    for name, da in post.data_vars.items():
        if "component" in da.dims:
            for c, s in np.ndindex(perm.shape[:2]):
                np.testing.assert_array_equal(
                    new[name].values[c, s], da.values[c, s][perm[c, s]], err_msg=name
                )
        else:
            np.testing.assert_array_equal(new[name].values, da.values)
    assert out["relabel"]["permutation"].dims == ("chain", "draw", "component")
    assert info.permutations[0, 0].tolist() == [0, 1]  # the reference draw itself


def test_relabelling_twice_starts_from_the_raw_draws(scrambled, separated_fit):
    tree, _ = scrambled
    once, info1 = relabel(tree, reference=separated_fit.em_)
    twice, info2 = relabel(once, reference=separated_fit.em_, method="stephens")
    xr.testing.assert_identical(twice["posterior_raw"].to_dataset(), tree["posterior"].to_dataset())
    np.testing.assert_array_equal(info1.permutations, info2.permutations)


def test_bad_arguments_raise_clear_errors(scrambled, separated_fit):
    tree, _ = scrambled
    with pytest.raises(ConfigError, match="unknown relabel method"):
        relabel(tree, method="ecr")
    with pytest.raises(ConfigError, match="reference shapes"):
        relabel(
            tree, reference={"weights": [1.0], "means": [[0.0, 0.0]], "covariances": [np.eye(2)]}
        )
    with pytest.raises(ConfigError, match="lacks"):
        relabel(tree, reference={"weights": [0.5, 0.5]})
    with pytest.raises(ConfigError, match="EMResult or a dict"):
        relabel(tree, reference=[1, 2, 3])
    with pytest.raises(ConfigError, match="max_points"):
        relabel(tree, method="stephens", max_points=0)
    with pytest.raises(DataError, match="posterior"):
        relabel(xr.DataTree.from_dict({"sample_stats": tree["sample_stats"].to_dataset()}))
    with pytest.raises(DataError, match="features"):
        relabel(tree, method="stephens", X=np.zeros((10, 3)))


# --------------------------------------------------------------------------- #
# label-invariant summaries
# --------------------------------------------------------------------------- #


def test_co_clustering_is_label_invariant_and_sensible(scrambled, separated_fit, separated_X):
    tree, _ = scrambled
    relabelled, _ = relabel(tree, reference=separated_fit.em_)
    m_raw = co_clustering(tree, max_draws=100)
    m_rel = co_clustering(relabelled, max_draws=100)
    # the predict module's co-clustering (the public one) needs no relabelling
    np.testing.assert_allclose(m_raw, m_rel, atol=1e-12)
    n = separated_X.shape[0]
    assert m_raw.shape == (n, n)
    np.testing.assert_allclose(m_raw, m_raw.T, atol=1e-12)
    # clusters are 6 sd apart: points 0-49, 50-99, 100-149 co-cluster, others do not
    blocks = np.repeat(np.arange(3), 50)
    same = blocks[:, None] == blocks[None, :]
    assert m_raw[same].min() > 0.95 and m_raw[~same].max() < 0.05


def test_posterior_predictive_density_matches_scipy(scrambled, separated_fit):
    """The predictive density (bayesgmm.core.predict.score_samples) needs no relabelling."""
    tree, _ = scrambled
    tree = tree.isel(draw=slice(0, 20))
    X_new = np.array([[-6.0, 0.0], [0.0, 0.0], [10.0, 10.0]])
    lp = score_samples(tree, X_new)
    relabelled, _ = relabel(tree, reference=separated_fit.em_)
    np.testing.assert_allclose(score_samples(relabelled, X_new), lp, rtol=1e-12)
    # independent reference: scipy densities over every draw
    post = tree["posterior"].to_dataset().stack(sample=("chain", "draw"))
    per_draw = []
    for s in range(post.sizes["sample"]):
        d = post.isel(sample=s)
        comps = [
            np.log(d["weights"].values[k])
            + multivariate_normal(d["means"].values[k], d["covariance"].values[k]).logpdf(X_new)
            for k in range(3)
        ]
        per_draw.append(logsumexp(comps, axis=0))
    np.testing.assert_allclose(lp, logsumexp(per_draw, axis=0) - np.log(len(per_draw)), rtol=1e-10)
    with pytest.raises(DataError, match="features"):
        score_samples(tree, np.zeros((2, 3)))


def _stephens_reference(P, perm, max_iter):
    """Stephens' iteration written plainly: the permuted memberships built draw by draw."""
    from bayesgmm.core.relabel import _assign

    S = P.shape[0]
    for it in range(1, max_iter + 1):
        permuted = np.stack([P[s, perm[s]] for s in range(S)])
        log_q = np.log(np.maximum(permuted.mean(axis=0), np.finfo(float).tiny))
        new = _assign(-np.matmul(P, log_q.T))
        if np.array_equal(new, perm):
            return perm, it, True
        perm = new
    return perm, max_iter, False


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_permutation_and_stephens_equal_plain_loops(seed):
    """The row-gather permutation (and Stephens' iteration built on it, over the memberships
    in one block of draws or several) gives exactly what per-draw indexing gives, for
    permuted and identity starts, and never returns the raw array for a relabelled
    variable."""
    from bayesgmm.core.relabel import _apply, _stephens
    from bayesgmm.core.relabel import _permute as permute_rows

    rng = np.random.default_rng(seed)
    S, K, N = 120, 3 + seed % 2, 40
    P = rng.dirichlet(np.full(K, 0.5), size=(S, N)).transpose(0, 2, 1).copy()  # (S, K, N)
    perms = np.array([rng.permutation(K) for _ in range(S)])
    for start in (perms, np.tile(np.arange(K), (S, 1))):
        want = np.stack([P[s, start[s]] for s in range(S)])
        np.testing.assert_array_equal(permute_rows(P, start), want)
        ref = _stephens_reference(P, start, 20)
        for blocks in ([P], np.array_split(P, [7, 50, 51])):  # one block, or uneven ones
            got = _stephens(list(blocks), start, 20)
            np.testing.assert_array_equal(got[0], ref[0])
            assert got[1:] == ref[1:]
    C, D = 2, 2
    perm3 = perms[: C * 30].reshape(C, 30, K)
    post = xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), rng.normal(size=(C, 30, K))),
            # component not the third axis: moved there and back
            "odd": (("feature", "chain", "component", "draw"), rng.normal(size=(D, C, K, 30))),
            "shared": (("chain", "draw", "feature"), rng.normal(size=(C, 30, D))),
        }
    )
    out = _apply(post, perm3)
    np.testing.assert_array_equal(out["shared"].values, post["shared"].values)
    expected = _permute(post, perm3)  # this module's helper: fancy indexing per draw
    for name in ("weights", "odd"):
        assert out[name].dims == post[name].dims
        np.testing.assert_array_equal(out[name].values, expected[name].values)
    unmoved = _apply(post, np.tile(np.arange(K), (C, 30, 1)))
    np.testing.assert_array_equal(unmoved["weights"].values, post["weights"].values)
    assert not np.shares_memory(unmoved["weights"].values, post["weights"].values)


def test_draw_log_likelihood_equals_xarrays_sum():
    from bayesgmm.core.relabel import draw_log_likelihood

    rng = np.random.default_rng(0)
    ll = rng.normal(-3.0, 1.0, size=(2, 7, 11))
    ll[1, 3, 4] = np.nan  # skipped, as xarray's sum skips it
    for dims, values in (
        (("chain", "draw", "obs"), ll),
        (("draw", "obs", "chain"), ll.transpose(1, 2, 0)),
    ):
        tree = xr.DataTree.from_dict({"log_likelihood": xr.Dataset({"x": (dims, values)})})
        want = tree["log_likelihood"]["x"].sum("obs").transpose("chain", "draw").values
        np.testing.assert_array_equal(draw_log_likelihood(tree), want)
    assert draw_log_likelihood(xr.DataTree.from_dict({"posterior": xr.Dataset()})) is None


def test_kl_cost_matches_the_gaussian_kl_and_tolerates_a_singular_draw():
    from bayesgmm.core.relabel import _assign, _kl_cost

    rng = np.random.default_rng(0)
    K, D = 3, 4
    A = rng.normal(size=(K, D, D))
    ref = {"means": rng.normal(size=(K, D)), "covariances": A @ np.swapaxes(A, 1, 2) + np.eye(D)}
    B = rng.normal(size=(2, K, D, D))
    covs = B @ np.swapaxes(B, -1, -2) + 0.5 * np.eye(D)
    means = rng.normal(size=(2, K, D))
    cost = _kl_cost(means, covs, ref)
    for j in range(K):
        for k in range(K):
            P = np.linalg.inv(ref["covariances"][k])
            d = means[0, j] - ref["means"][k]
            kl = 0.5 * (
                np.trace(P @ covs[0, j]) + d @ P @ d - D
                + np.linalg.slogdet(ref["covariances"][k])[1] - np.linalg.slogdet(covs[0, j])[1]
            )  # fmt: skip
            assert cost[0, j, k] == pytest.approx(kl, rel=1e-10)
    # a rank-one covariance (numerically singular) is assigned, not an error
    v = rng.normal(size=D)
    covs[1, 0] = np.outer(v, v)
    perm = _assign(_kl_cost(means, covs, ref))
    assert np.isfinite(_kl_cost(means, covs, ref)).all() and sorted(perm[1]) == [0, 1, 2]


@pytest.mark.parametrize("block_bytes", [1, 8 * 2 * 5 * 7, 1 << 21])
def test_membership_blocks_are_the_memberships_in_pieces(block_bytes, monkeypatch):
    """Stephens' memberships in blocks of draws (one draw each, pieces of 7 draws across
    the engine's blocks of 3, or one piece) are exactly the engine's memberships."""
    from bayesgmm.core import engine
    from bayesgmm.core.draws import example_posterior
    from bayesgmm.core.predict import membership_array, membership_blocks

    post = example_posterior()  # 20 draws, K = 2, D = 2
    X = np.random.default_rng(0).normal(size=(5, 2)) * 2
    want = membership_array(post, X)
    monkeypatch.setattr(engine, "_WORK_ELEMS", 3 * 2 * 2 * 5)  # engine blocks of 3 draws
    blocks = membership_blocks(post, X, block_bytes)
    assert all(b.nbytes <= max(block_bytes, 8 * 2 * 5) for b in blocks)
    assert len(blocks) == {1: 20, 8 * 2 * 5 * 7: 3, 1 << 21: 1}[block_bytes]
    np.testing.assert_array_equal(np.concatenate(blocks), want)
