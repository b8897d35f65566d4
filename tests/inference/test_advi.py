"""Minibatch ADVI (bayesgmm.inference.advi): same DataTree layout as NUTS, recovery on
separated data, labelled approximate in summaries/diagnostics/reports, minibatch scaling,
settings, determinism and failures.

One ADVI fit (N=300 > batch_size=128, so minibatches are used) is shared by most tests;
the layout is compared with a short NUTS fit of the same data.
"""

from __future__ import annotations

import warnings

import numpy as np
import pymc as pm
import pytensor
import pytest
import xarray as xr
from pymc.variational.minibatch_rv import MinibatchRandomVariable

from bayesgmm import ADVIConfig, BayesianGMM, fit_advi
from bayesgmm.estimator.estimator import load, save
from bayesgmm.exceptions import ConfigError, VariationalFitError
from bayesgmm.inference import advi as advi_module
from bayesgmm.inference.model import build_model, make_spec

CENTERS = np.array([[-4.0, 0.0], [4.0, 1.0]])
SDS = np.array([[1.0, 1.0], [1.0, 0.5]])
N_PER = 150
SETTINGS = {
    "n_steps": 2000,
    "batch_size": 128,
    "draws": 300,
    "random_seed": 1,
    "progressbar": False,
}


@pytest.fixture(scope="module")
def X() -> np.ndarray:
    """Two well-separated 2-D clusters (first 150 rows cluster 0, then cluster 1)."""
    rng = np.random.default_rng(20261129)
    return np.vstack([rng.normal(c, s, size=(N_PER, 2)) for c, s in zip(CENTERS, SDS, strict=True)])


@pytest.fixture(scope="module")
def advi_fit(X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gmm = BayesianGMM(2, inference="advi", advi=SETTINGS).fit(X)
    gmm.fit_warnings_ = [str(w.message) for w in caught if "BLAS" not in str(w.message)]
    return gmm


@pytest.fixture(scope="module")
def nuts_fit(X):
    """A short NUTS fit with the default backend, only for comparing layouts."""
    sampler = {"draws": 20, "tune": 20, "chains": 1, "random_seed": 1, "progressbar": False}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BayesianGMM(2, sampler=sampler).fit(X)


def _truth_order(gmm) -> np.ndarray:
    """Posterior component order matching CENTERS (by the first feature's mean)."""
    return np.argsort(gmm.posterior["means"].mean(("chain", "draw")).values[:, 0])


# --------------------------------------------------------------------------------------- #
# layout
# --------------------------------------------------------------------------------------- #


def test_same_layout_as_nuts(advi_fit, nuts_fit, X):
    a, n = advi_fit.idata_, nuts_fit.idata_
    assert set(a.children) - {"variational"} == set(n.children) - {"sample_stats"}
    assert "sample_stats" not in a.children  # no pretend MCMC statistics
    for group in set(n.children) - {"sample_stats"}:
        nds, ads = n[group].to_dataset(), a[group].to_dataset()
        assert set(ads.data_vars) == set(nds.data_vars), group
        for name, da in nds.data_vars.items():
            assert ads[name].dims == da.dims, (group, name)
        for dim in set(nds.dims) - {"draw", "chain"}:
            assert ads.sizes[dim] == nds.sizes[dim], (group, dim)
            np.testing.assert_array_equal(ads[dim].values, nds[dim].values)
    post = a["posterior"]
    assert post.sizes["chain"] == 1 and post.sizes["draw"] == SETTINGS["draws"]
    assert {"weights", "means", "sds", "covariance", "correlation"} <= set(post.data_vars)
    # the full data, not a minibatch
    np.testing.assert_array_equal(a["observed_data"]["x"].values, X)
    assert a["log_likelihood"]["x"].dims == ("chain", "draw", "obs")
    assert a["log_likelihood"]["x"].shape == (1, SETTINGS["draws"], X.shape[0])
    assert a.attrs["inference"] == "advi" and a.attrs["approximate"] is True
    assert "nuts_sampler" not in a.attrs and "nuts_sampler" in n.attrs
    loss = a["variational"]["loss"]
    assert loss.dims == ("step",) and loss.size == SETTINGS["n_steps"]
    assert np.all(np.isfinite(loss.values))


# --------------------------------------------------------------------------------------- #
# recovery and predictions
# --------------------------------------------------------------------------------------- #


def test_posterior_means_near_em_and_truth(advi_fit):
    post = advi_fit.posterior
    order = _truth_order(advi_fit)
    draws = post["means"].values[0][:, order]  # (draw, K, D), components as in CENTERS
    mean, sd = draws.mean(0), draws.std(0)
    em_means = advi_fit.em_.means[np.argsort(advi_fit.em_.means[:, 0])]
    # started at the EM solution and kept there (ADVI's mean ~ the posterior mean ~ MAP);
    # measured: at most 0.18 sd
    assert np.all(np.abs(mean - em_means) < 0.5 * sd), np.abs(mean - em_means) / sd
    # the truth within a few posterior sds
    assert np.all(np.abs(mean - CENTERS) < 4 * sd), np.abs(mean - CENTERS) / sd
    # posterior sd of a cluster mean is about sd / sqrt(points per cluster); measured
    # ratios 0.93-1.09 (300 draws: about 4% Monte Carlo error each)
    ratio = sd / (SDS / np.sqrt(N_PER))
    assert np.all((ratio > 0.7) & (ratio < 1.4)), ratio
    w = post["weights"].values[0][:, order].mean(0)
    np.testing.assert_allclose(w, [0.5, 0.5], atol=0.06)


def test_predictions_on_the_advi_fit(advi_fit, X):
    truth = np.repeat([0, 1], N_PER)
    order = _truth_order(advi_fit)
    proba = advi_fit.predict_proba(X)
    assert proba.shape == (X.shape[0], 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.mean(order[np.argmax(proba, axis=1)] == truth) > 0.99
    scores = advi_fit.score_samples(X)
    assert scores.shape == (X.shape[0],) and np.all(np.isfinite(scores))
    # the posterior predictive density is close to the EM plug-in density on average
    em_score = np.mean(advi_fit.em_.log_density(X))
    assert abs(np.mean(scores) - em_score) < 0.05
    table = advi_fit.assignments()
    assert len(table) == X.shape[0]
    assert np.mean(order[table["cluster"].to_numpy()] == truth) > 0.99


# --------------------------------------------------------------------------------------- #
# labelled approximate
# --------------------------------------------------------------------------------------- #


def test_summary_labelled_approximate_without_mcmc_columns(advi_fit, nuts_fit):
    table = advi_fit.summary()
    assert {"mean", "sd"} <= set(table.columns)
    assert not {"r_hat", "ess_bulk", "ess_tail", "mcse_mean"} & set(table.columns)
    assert "approximate" in str(table.columns.name)
    assert table.attrs["approximate"] is True
    assert "approximate" in table.to_string().splitlines()[0]
    assert "r_hat" in nuts_fit.summary().columns  # NUTS summaries keep them


def test_diagnostics_report_the_elbo_not_mcmc(advi_fit):
    report = advi_fit.diagnostics_
    assert report.inference == "advi"
    assert list(report.table.index) == ["elbo_trend", "elbo_progress"]
    assert report.verdict == "ok", str(report)
    assert "no MCMC diagnostics" in str(report)
    assert "approximate" in report._repr_html_()
    assert list(report.parameters.columns) == ["mean", "sd"]
    assert not [m for m in advi_fit.fit_warnings_ if "diagnostics" in m]
    assert repr(advi_fit).startswith("BayesianGMM(inference='advi'")


def _with_loss(tree: xr.DataTree, loss: np.ndarray) -> xr.DataTree:
    out = tree.copy()
    out["variational"] = xr.Dataset({"loss": (("step",), loss)})
    return out


def test_diagnostics_flag_an_elbo_that_rises_or_still_falls(advi_fit):
    from bayesgmm.analysis.diagnostics import diagnose

    rng = np.random.default_rng(0)
    steps = np.arange(2000)
    noise = rng.normal(0.0, 10.0, steps.size)
    rising = diagnose(_with_loss(advi_fit.idata_, 1000.0 + 0.5 * steps + noise))
    assert rising.table.loc["elbo_progress", "verdict"] == "fail"
    assert rising.table.loc["elbo_trend", "verdict"] == "fail"
    falling = diagnose(_with_loss(advi_fit.idata_, 2000.0 - 0.05 * steps + noise))
    assert falling.table.loc["elbo_trend", "verdict"] != "ok"
    assert falling.table.loc["elbo_progress", "verdict"] == "ok"
    flat = diagnose(_with_loss(advi_fit.idata_, 1000.0 + noise))
    assert flat.verdict == "ok"


def test_save_load_round_trip(advi_fit, X, tmp_path):
    path = save(advi_fit, tmp_path / "model")
    loaded = load(path)
    assert loaded.idata_.attrs["inference"] == "advi"
    assert loaded.idata_.attrs["approximate"] is True
    assert loaded.inference == "advi" and loaded.advi_config_ == advi_fit.advi_config_
    np.testing.assert_array_equal(loaded.predict_proba(X), advi_fit.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), advi_fit.score_samples(X))
    np.testing.assert_array_equal(
        loaded.idata_["variational"]["loss"].values, advi_fit.idata_["variational"]["loss"].values
    )
    assert loaded.diagnostics_.inference == "advi"
    assert "approximate" in loaded.summary().columns.name


def test_report_labelled_approximate(advi_fit, tmp_path):
    pytest.importorskip("matplotlib")
    from bayesgmm.analysis.report import write_report

    page = write_report(advi_fit, tmp_path / "report").read_text()
    assert "<title>bayesgmm fit report (approximate: minibatch ADVI)</title>" in page
    assert "not MCMC" in page and "NUTS (" not in page
    summary = (tmp_path / "report" / "summary.txt").read_text()
    assert summary.startswith("approximate: minibatch mean-field ADVI")


# --------------------------------------------------------------------------------------- #
# minibatch
# --------------------------------------------------------------------------------------- #


def test_minibatch_likelihood_is_scaled_to_the_full_data(X):
    X_, spec = make_spec(X, 2)
    full = build_model(X_, spec=spec)
    mini = build_model(X_, spec=spec, batch_size=1)
    same = build_model(X_, spec=spec, batch_size=X.shape[0])
    (obs,) = mini.observed_RVs
    assert isinstance(obs.owner.op, MinibatchRandomVariable)
    assert not isinstance(same.observed_RVs[0].owner.op, MinibatchRandomVariable)
    # the Python linker: these small graphs need no compiling
    with pytensor.config.change_flags(mode="FAST_COMPILE"):
        point = full.initial_point()
        per_point = full.compile_fn(full.logp(vars=full.observed_RVs, sum=False)[0])(point)
        datalogp = mini.compile_fn(mini.datalogp)
        values = np.array([datalogp(point) for _ in range(20)])
        same_value = same.compile_fn(same.datalogp)(point)
    assert per_point.shape == (X.shape[0],)
    # one random point per evaluation, its log-density times N
    hits = np.isclose(values[:, None] / X.shape[0], per_point[None, :], rtol=1e-10, atol=0)
    assert np.all(hits.any(axis=1))
    assert len(np.unique(values)) > 1  # a fresh batch per evaluation
    np.testing.assert_allclose(same_value, per_point.sum())


def test_fit_used_minibatches_and_reports_the_full_data_elbo(advi_fit, X):
    attrs = advi_fit.idata_["variational"].attrs
    assert attrs["batch_size"] == SETTINGS["batch_size"] < attrs["n_obs"] == X.shape[0]
    loss = advi_fit.idata_["variational"]["loss"].values
    # -ELBO ~ -log-likelihood of all N points at the EM solution (PyMC's default loss
    # normalisation would make it hundreds of times smaller here)
    ll = advi_fit.em_.log_likelihood
    assert abs(loss[-200:].mean() + ll) < 0.05 * abs(ll), (loss[-200:].mean(), ll)
    assert loss.std() > 0  # noisy: each step saw a different minibatch


# --------------------------------------------------------------------------------------- #
# settings
# --------------------------------------------------------------------------------------- #


def test_config_rejects_unknown_keys_and_lists_every_bad_value():
    with pytest.raises(ConfigError, match=r"unknown ADVI setting\(s\) \['steps'\]; valid: "):
        ADVIConfig.from_dict({"steps": 10})
    bad = {
        "n_steps": 0,
        "batch_size": 2.5,
        "draws": True,
        "learning_rate": 0.01,
        "final_learning_rate": 0.1,
        "method": "svgd",
        "random_seed": -1,
        "progressbar": "yes",
    }
    with pytest.raises(ConfigError) as err:
        ADVIConfig.from_dict(bad)
    msg = str(err.value)
    for name in bad:
        if name != "learning_rate":
            assert f"{name} must" in msg, name
    with pytest.raises(ConfigError, match="learning_rate must be in"):
        ADVIConfig.from_dict({"learning_rate": 0.0})
    cfg = ADVIConfig.from_dict({"n_steps": 500})
    assert cfg.to_dict()["n_steps"] == 500 and ADVIConfig.from_dict(cfg.to_dict()) == cfg


def test_estimator_validates_inference_and_advi_settings(X):
    from sklearn.base import clone

    with pytest.raises(ConfigError, match="unknown inference 'vi'"):
        BayesianGMM(2, inference="vi").fit(X)
    with pytest.raises(ConfigError, match="unknown ADVI setting"):
        BayesianGMM(2, inference="advi", advi={"n_step": 10}).fit(X)
    est = BayesianGMM(2, inference="advi", advi={"n_steps": 10})
    params = est.get_params()
    assert params["inference"] == "advi" and params["advi"] == {"n_steps": 10}
    assert clone(est).get_params() == params
    assert "inference='advi'" in repr(est) and "inference" not in repr(BayesianGMM(2))


def test_deterministic_for_a_fixed_seed_and_log_likelihood_size_limit(advi_fit, X, monkeypatch):
    # one more fit checks both (a fit costs tens of seconds of compiling)
    limit = SETTINGS["draws"] * X.shape[0] - 1
    monkeypatch.setattr(advi_module, "MAX_LOG_LIKELIHOOD_SIZE", limit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = BayesianGMM(2, inference="advi", advi=SETTINGS).fit(X)
    assert "log_likelihood" not in again.idata_.children
    assert f"draws x points = 90,000 > {limit:,}" in again.idata_.attrs["log_likelihood"]
    assert "log_likelihood" in advi_fit.idata_.children
    for name in ("means", "weights", "covariance"):
        np.testing.assert_array_equal(
            again.idata_["posterior_raw"][name].values,
            advi_fit.idata_["posterior_raw"][name].values,
        )
    np.testing.assert_array_equal(
        again.idata_["variational"]["loss"].values, advi_fit.idata_["variational"]["loss"].values
    )


# --------------------------------------------------------------------------------------- #
# failures
# --------------------------------------------------------------------------------------- #


class _FakeInference:
    def __init__(self, hist):
        self.hist = np.asarray(hist, dtype=float)
        self.approx = type("A", (), {"params": [], "hist": self.hist})()


@pytest.mark.parametrize(
    ("hist", "raises", "step"),
    [([5.0, 4.0], True, 3), ([5.0, np.inf, 4.0], False, 2)],
)
def test_nan_or_infinite_elbo_raises_with_advice(X, monkeypatch, hist, raises, step):
    X_, spec = make_spec(X, 2)
    from bayesgmm.core.em import fit_em

    em = fit_em(X_, 2, prior=spec.priors.to_em_prior("full"), random_seed=0, n_init=2)
    fake = _FakeInference(hist)
    monkeypatch.setattr(advi_module, "_inference", lambda *a, **k: fake)

    def fit(*args, **kwargs):
        if raises:  # what pm.fit does when the loss is NaN
            raise FloatingPointError("NaN occurred in optimization. ")
        return fake.approx

    monkeypatch.setattr(pm, "fit", fit)
    with pytest.raises(VariationalFitError, match=f"at step {step} of 2,000") as err:
        fit_advi(X_, spec, em, SETTINGS)
    assert "Lower learning_rate" in str(err.value) and "inference='nuts'" in str(err.value)


def test_docstring_examples_run():
    import doctest

    result = doctest.testmod(advi_module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
