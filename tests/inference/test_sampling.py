"""EM-started NUTS: the start reaches every backend; sampler settings are validated."""

import sys

import numpy as np
import pytest

from bayesgmm import ConfigError, SamplerConfig, available_samplers, build_model, fit_em, make_spec
from bayesgmm.inference.sampling import sample_posterior
from bayesgmm.inference.starts import em_start, jittered_starts


@pytest.fixture(scope="module")
def separated():
    """Three tight, far-apart clusters: the EM start is far from PyMC's default start."""
    rng = np.random.default_rng(42)
    centres = np.array([[-12.0, 0.0], [0.0, 15.0], [12.0, 0.0]])
    X = np.concatenate([c + rng.normal(scale=0.5, size=(40, 2)) for c in centres])
    X, spec = make_spec(X, 3)
    em = fit_em(X, 3, prior=spec.priors.to_em_prior("full"), random_seed=0)
    return X, spec, em, build_model(X, spec=spec)


# nutpie compiles with numba for ~40 s, so its check runs with the slow tests
@pytest.mark.parametrize(
    "nuts_sampler",
    ["pymc", pytest.param("nutpie", marks=pytest.mark.slow), "numpyro", "blackjax"],
)
def test_em_start_reaches_sampler(separated, nuts_sampler):
    if nuts_sampler not in available_samplers():
        pytest.skip(f"{nuts_sampler} not installed")
    _, spec, em, model = separated
    cfg = SamplerConfig(
        draws=3, tune=0, chains=2, nuts_sampler=nuts_sampler, random_seed=7, progressbar=False
    )
    idata = sample_posterior(model, spec, em, cfg)
    first = idata["posterior"]["means"].isel(draw=0).values  # (chain, component, feature)
    # every chain's first draw sits at the EM solution (in its labelling): within the
    # jitter (0.05 standardised units ~ 0.5 here) plus a step; PyMC's default start puts
    # all means at the data mean, at least 10 units from every cluster centre.
    dist = np.abs(first - em.means[None]).max()
    assert dist < 2.0, (nuts_sampler, first, em.means)
    assert idata.attrs["nuts_sampler"] == nuts_sampler


def test_jittered_starts_are_close_and_distinct(separated):
    _, spec, em, model = separated
    start = em_start(em, spec)
    starts = jittered_starts(model, start, 4, 0.05, np.random.default_rng(0))
    assert len(starts) == 4
    for s in starts:
        np.testing.assert_allclose(s["weights"].sum(), 1.0)
        assert np.abs(s["means_z"] - start["means_z"]).max() < 0.3
        assert np.all(s["sds_z"] > 0)
        chol = s["chol_corr"]
        np.testing.assert_allclose((chol**2).sum(-1), 1.0, atol=1e-12)  # unit rows
    assert not np.allclose(starts[0]["means_z"], starts[1]["means_z"])
    exact = jittered_starts(model, start, 2, 0.0, np.random.default_rng(0))
    for name in start:
        np.testing.assert_allclose(exact[0][name], start[name], atol=1e-12)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"draw": 10}, "unknown sampler setting(s) ['draw']"),
        ({"draws": 0}, "draws must be an integer >= 1"),
        ({"target_accept": 1.5}, "target_accept must be in (0, 1)"),
        ({"nuts_sampler": "stan"}, "nuts_sampler must be one of"),
        ({"random_seed": -3}, "random_seed must be a non-negative integer"),
        ({"chains": 2.5}, "chains must be an integer"),
        ({"jitter": -1}, "jitter must be in [0, 1]"),
    ],
)
def test_sampler_config_validation(settings, fragment):
    with pytest.raises(ConfigError) as err:
        SamplerConfig.from_dict(settings)
    assert fragment in str(err.value)


def test_sampler_config_roundtrip():
    cfg = SamplerConfig.from_dict({"draws": 10, "nuts_sampler": "pymc"})
    assert SamplerConfig.from_dict(cfg.to_dict()) == cfg
    assert SamplerConfig().resolved_sampler() in available_samplers()


def test_pymc_chains_are_not_forked_once_jax_is_loaded(monkeypatch):
    """PyMC forks its chain processes; with JAX's threads running in this process that is
    unsafe, so its chains then run here, one after the other."""
    import types

    from bayesgmm.inference.sampling import _pymc_cores

    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    assert _pymc_cores(2) == 1
    monkeypatch.delitem(sys.modules, "jax")
    assert _pymc_cores(2) == 2
    assert _pymc_cores(1) == 1


def test_a_fits_sampler_coordinates_have_posterior_sds_near_posterior_sd(separated):
    """sample_posterior sets the coordinates' units: in them, every coordinate's posterior
    sd (within each chain, so labels cannot mix) is of order POSTERIOR_SD."""
    pytest.importorskip("numpyro")
    import pytensor
    import pytensor.tensor as pt

    from bayesgmm.inference.coordinates import POSTERIOR_SD, unit_name

    X, spec, em, _ = separated
    model = build_model(X, spec=spec)  # its own: the units are set by the fit
    cfg = SamplerConfig(
        draws=300, tune=300, chains=2, nuts_sampler="numpyro", random_seed=1, progressbar=False
    )
    post = sample_posterior(model, spec, em, cfg)["posterior"]
    assert not np.allclose(model[unit_name("means_z")].get_value(), 1.0)
    for rv in model.free_RVs:
        draws = post[rv.name].values  # (chain, draw, ...)
        x = pt.tensor(shape=(None, *draws.shape[2:]), dtype="float64")
        forward = model.rvs_to_transforms[rv].forward(x, *rv.owner.inputs)
        coords = pytensor.function([x], forward)(draws.reshape(-1, *draws.shape[2:]))
        coords = coords.reshape(*draws.shape[:2], -1)  # (chain, draw, coordinate)
        ratio = coords.std(axis=1).mean(axis=0) / POSTERIOR_SD
        assert np.all((ratio > 0.2) & (ratio < 5.0)), (rv.name, ratio)
