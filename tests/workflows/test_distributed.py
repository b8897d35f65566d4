"""Many fits on a Dask LocalCluster equal the in-process loop; dask-array predictions."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

pytest.importorskip("distributed")
pytest.importorskip("threadpoolctl")

import dask.array as da
from distributed import Client, LocalCluster

from bayesgmm.core import predict as _predict
from bayesgmm.core.draws import example_posterior as _example_posterior
from bayesgmm.exceptions import ConfigError, DataError
from bayesgmm.workflows.distributed import (
    fit_many,
    predict_dask,
    predict_proba_dask,
    results_table,
    score_samples_dask,
    sweep,
    task_seeds,
)

TINY = {"draws": 60, "tune": 60, "chains": 2}
FAST = {"sampler": TINY, "em": {"n_init": 2}}


def _data(seed: int, n: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.vstack([rng.normal(-3.0, 1.0, (n, 2)), rng.normal(3.0, 1.0, (n, 2))])


@pytest.fixture(scope="module")
def client():
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _in_fresh_process(func, *args, **kwargs):
    """Run ``func`` in a new (spawned) Python process.

    The in-process reference runs in a fresh interpreter: run in the test process, next
    to a live LocalCluster/Client, its posteriors differed from the workers' by ~1e-7
    (not bitwise), while a fresh process matches the workers bit for bit.
    """
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_without_models, func, *args, **kwargs).result()


def _without_models(func, *args, **kwargs):
    results = func(*args, **kwargs)
    for r in results:  # a pm.Model does not pickle back to the test process
        if r.estimator is not None:
            r.estimator.__dict__.pop("model_", None)
    return results


def _assert_same_posteriors(a, b):
    assert [r.params for r in a] == [r.params for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra.status == rb.status == "ok", (ra.status, rb.status)
        for var in ("weights", "means", "covariance"):
            np.testing.assert_allclose(
                ra.estimator.posterior[var].values, rb.estimator.posterior[var].values, rtol=0
            )
        np.testing.assert_allclose(ra.estimator.em_.means, rb.estimator.em_.means, rtol=0)


# about 60 s: runs with the slow tests; the 4-dataset batch test keeps a cluster in the default run
@pytest.mark.slow
def test_sweep_on_cluster_equals_inprocess(client):
    X = _data(0)
    on_cluster = sweep(X, [1, 2, 3], client=client, random_seed=7, **FAST)
    in_process = _in_fresh_process(sweep, X, [1, 2, 3], client="inprocess", random_seed=7, **FAST)
    _assert_same_posteriors(on_cluster, in_process)
    assert [r.params["n_components"] for r in on_cluster] == [1, 2, 3]
    assert [r.params["random_seed"] for r in on_cluster] == task_seeds(7, 3)
    gmm = on_cluster[1].estimator
    assert gmm.diagnostics_.verdict in ("ok", "warn", "fail")
    assert gmm.model_ is not None  # rebuilt on the client
    assert gmm.predict(X).shape == (len(X),)
    table = results_table(on_cluster)
    assert list(table["status"]) == ["ok"] * 3


def test_fit_many_reports_a_failed_task_and_keeps_the_others(client):
    datasets = [_data(s) for s in range(3)]
    bad = _data(9)
    bad[3, 1] = np.nan
    results = fit_many([*datasets, bad], 2, client=client, random_seed=3, **FAST)
    assert [r.status for r in results[:3]] == ["ok"] * 3
    assert results[3].estimator is None and not results[3].ok
    assert results[3].status.startswith("DataError") and "NaN" in results[3].status
    assert "Traceback" in results[3].error
    assert [r.params["random_seed"] for r in results] == task_seeds(3, 4)


# a fresh process compiles its own sampler (10-15 s): with the slow tests
@pytest.mark.slow
def test_a_tasks_posterior_does_not_depend_on_the_batch_or_the_process(client):
    datasets = [_data(s) for s in range(3)]
    on_cluster = fit_many(datasets, 2, client=client, random_seed=3, **FAST)
    in_process = _in_fresh_process(
        fit_many, datasets[:1], 2, client="inprocess", random_seed=3, **FAST
    )
    _assert_same_posteriors(on_cluster[:1], in_process)


def test_settings_are_checked_before_submitting():
    with pytest.raises(ConfigError, match="random_seed"):
        fit_many([_data(0)], sampler={"random_seed": 1}, client="inprocess")
    with pytest.raises(ConfigError, match="unknown estimator"):
        fit_many([_data(0)], n_init=3, client="inprocess")
    with pytest.raises(ConfigError, match="2 datasets"):
        fit_many([_data(0), _data(1)], [2, 3, 4], client="inprocess")
    assert task_seeds(0, 5)[:3] == task_seeds(0, 3)
    assert len(set(task_seeds(0, 50))) == 50


def test_dask_predictions_equal_in_memory(client):
    post = _example_posterior(n_chain=2, n_draw=50)
    X = da.random.default_rng(1).normal(1.5, 2.0, size=(200_000, 2), chunks=(25_000, 1))
    scores = score_samples_dask(post, X, chunk_size=5_000)
    proba = predict_proba_dask(post, X)
    labels = predict_dask(post, X)
    assert scores.shape == (200_000,) and proba.shape == (200_000, 2)
    assert scores.chunks[0] == X.chunks[0]
    sub = slice(60_000, 64_000)  # crosses no block border issues: blocks are independent
    X_sub = X[sub].compute()
    s_all, p_sub, l_sub = client.compute([scores, proba[sub], labels[sub]], sync=True)
    np.testing.assert_allclose(s_all[sub], _predict.score_samples(post, X_sub), rtol=1e-12)
    np.testing.assert_allclose(p_sub, _predict.predict_proba(post, X_sub), rtol=1e-12)
    np.testing.assert_array_equal(l_sub, _predict.predict(post, X_sub))
    assert np.isfinite(s_all).all()


def test_dask_predictions_check_shape():
    post = _example_posterior()
    with pytest.raises(DataError, match="n_samples, 2"):
        score_samples_dask(post, da.zeros((10, 3), chunks=5))
    with pytest.raises(ConfigError, match="return_intervals"):
        predict_proba_dask(post, da.zeros((10, 2), chunks=5), return_intervals=True)
