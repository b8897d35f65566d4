"""The NumPyro backend's compiled-sampler cache: reused across datasets, never stale."""

import numpy as np
import pytest

pytest.importorskip("numpyro")

from bayesgmm import Prior, build_model, fit_em, make_spec
from bayesgmm.core.config import SamplerConfig
from bayesgmm.inference.jaxnuts import clear_cache
from bayesgmm.inference.sampling import sample_posterior

CFG = SamplerConfig(
    draws=60, tune=60, chains=2, nuts_sampler="numpyro", random_seed=3, progressbar=False
)


def _data(shift: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.array([[-4.0, 0.0], [4.0, 1.0]]) + shift
    return np.concatenate([c + rng.normal(scale=0.7, size=(30, 2)) for c in centres])


def _fit(X, priors=None):
    X, spec = make_spec(X, 2, priors=priors)
    em = fit_em(X, 2, prior=spec.priors.to_em_prior("full"), random_seed=0)
    idata = sample_posterior(build_model(X, spec=spec), spec, em, CFG)
    return idata, em


def _sorted_means(idata) -> np.ndarray:
    means = idata["posterior"]["means"].mean(("chain", "draw")).values
    return means[np.argsort(means[:, 0])]


def test_cache_is_reused_with_the_new_data_and_priors():
    clear_cache()
    first, _ = _fit(_data(0.0, 0))
    assert first["posterior"].attrs["compile_cache_hit"] is False
    # same shapes, data moved by 100: the reused sampler must see the new data
    moved, em = _fit(_data(100.0, 1))
    assert moved["posterior"].attrs["compile_cache_hit"] is True
    np.testing.assert_allclose(_sorted_means(moved), em.means[np.argsort(em.means[:, 0])], atol=1)
    # ... and new prior values: means pinned near (50, 50) by a very tight prior
    pinned, _ = _fit(_data(0.0, 0), priors={"means": Prior("Normal", mu=50.0, sigma=0.01)})
    assert pinned["posterior"].attrs["compile_cache_hit"] is True
    np.testing.assert_allclose(_sorted_means(pinned), 50.0, atol=0.2)


def test_reused_sampler_gives_the_same_draws_as_a_fresh_compile():
    X = _data(0.0, 5)
    _fit(_data(3.0, 4))  # fills the cache for this structure
    cached, _ = _fit(X)
    clear_cache()
    fresh, _ = _fit(X)
    assert cached["posterior"].attrs["compile_cache_hit"] is True
    assert fresh["posterior"].attrs["compile_cache_hit"] is False
    for name in ("means", "sds", "weights", "correlation"):
        np.testing.assert_array_equal(cached["posterior"][name], fresh["posterior"][name])
    np.testing.assert_array_equal(
        cached["sample_stats"]["diverging"], fresh["sample_stats"]["diverging"]
    )


def test_sample_stats_and_layout():
    idata, _ = _fit(_data(0.0, 0))
    stats = idata["sample_stats"]
    for name in ("diverging", "n_steps", "tree_depth", "acceptance_rate", "energy", "lp"):
        assert stats[name].dims == ("chain", "draw"), name
    assert stats["diverging"].dtype == bool
    assert np.all(stats["n_steps"] >= 1)
    assert np.all((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1))
    post = idata["posterior"]
    assert post["covariance"].dims == ("chain", "draw", "component", "feature", "feature_bis")
    assert post["chol_corr"].dims == ("chain", "draw", "component", "feature", "feature_bis")
    assert not any(name.endswith("__") for name in post.data_vars)
    assert set(idata.children) >= {"posterior", "sample_stats", "log_likelihood", "observed_data"}


def test_parallel_chains_give_the_same_draws_as_one_after_the_other():
    from dataclasses import replace

    X = _data(0.0, 7)
    X, spec = make_spec(X, 2)
    em = fit_em(X, 2, prior=spec.priors.to_em_prior("full"), random_seed=0)
    model = build_model(X, spec=spec)
    cfg = replace(CFG, chains=3)
    one = sample_posterior(model, spec, em, replace(cfg, cores=1))
    three = sample_posterior(model, spec, em, replace(cfg, cores=3))
    assert one["posterior"].attrs["workers"] == 1 and three["posterior"].attrs["workers"] == 3
    for name in ("means", "sds", "weights", "correlation"):
        np.testing.assert_array_equal(one["posterior"][name], three["posterior"][name])


def test_the_pointwise_log_likelihood_from_jax_equals_the_numpy_engines():
    from bayesgmm.inference.sampling import pointwise_log_likelihood

    X, spec = make_spec(_data(0.0, 8), 2)
    em = fit_em(X, 2, prior=spec.priors.to_em_prior("full"), random_seed=0)
    model = build_model(X, spec=spec)
    idata = sample_posterior(model, spec, em, CFG)
    numpy_ll = pointwise_log_likelihood(model, idata["posterior"].to_dataset())["x"]
    np.testing.assert_allclose(idata["log_likelihood"]["x"].values, numpy_ll.values, rtol=1e-10)
    assert idata["log_likelihood"]["x"].dims == ("chain", "draw", "obs")


def test_post_processing_runs_once_per_kept_chunk_and_equals_the_whole_array_version(
    monkeypatch,
):
    """Two rounds of draws (tune=60, draws=60: chunks of 50 straddle both boundaries): the
    constrained draws and pointwise log-likelihood, computed chunk by chunk, equal
    ``post_fn`` over each chain's kept draws at once; every chunk holding a kept draw is
    processed exactly once over both rounds, the tuning-only chunk never."""
    from dataclasses import replace

    import jax.numpy as jnp

    from bayesgmm.inference import jaxnuts

    X, spec = make_spec(_data(0.0, 9), 2)
    em = fit_em(X, 2, prior=spec.priors.to_em_prior("full"), random_seed=0)
    model = build_model(X, spec=spec)
    cfg = replace(CFG, target_ess=10)  # rounds of draws, decided by ``enough`` below
    seen, runs = [], []
    tree_of = jaxnuts._posterior_tree

    def recording_tree(model, run, *args):
        runs.append(run)
        return tree_of(model, run, *args)

    monkeypatch.setattr(jaxnuts, "_posterior_tree", recording_tree)
    sample_posterior(model, spec, em, cfg)  # compiled (or found in the cache)
    compiled = runs[-1].compiled
    original = compiled.post_fn

    def counting_post_fn(z, args):
        seen.append(int(next(iter(z.values())).shape[0]))
        return original(z, args)

    monkeypatch.setattr(compiled, "post_fn", counting_post_fn)
    progress = iter([0.5, 1.0])
    idata = sample_posterior(model, spec, em, cfg, enough=lambda tree: next(progress))
    assert runs[-1].compiled is compiled  # the cached sampler, with the counting post_fn
    assert idata["posterior"].attrs["rounds"] == 2 and idata["posterior"].sizes["draw"] == 120
    # kept draws 60..179 lie in chunks 1, 2, 3 (iterations 50..199); chunk 0 is tuning only
    assert seen == [jaxnuts._CHUNK] * (3 * CFG.chains)
    run = runs[-1]
    for c in range(CFG.chains):
        z = {n: jnp.concatenate([p[n] for p in run.z[c]])[60:180] for n in run.compiled.value_names}
        *outs, ll = original(z, run.args)
        for name, value in zip(run.compiled.out_names, outs, strict=True):
            np.testing.assert_allclose(
                idata["posterior"][name].values[c], value, rtol=1e-12, atol=1e-13
            )
        np.testing.assert_allclose(idata["log_likelihood"]["x"].values[c], ll, rtol=1e-12)
