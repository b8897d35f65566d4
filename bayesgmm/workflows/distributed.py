"""Many fits and large-data predictions on Dask (``pip install 'bayesgmm[dask]'``).

Two things run on a Dask cluster:

* **Many complete fits** (:func:`fit_many`, :func:`sweep`): each task is one
  ``BayesianGMM(...).fit(X)`` (EM start, NUTS, relabelling, diagnostics) in a worker
  process. Results come back as one :class:`FitResult` per task, in submission order, with
  ``status`` "ok" or the error message, so one failed fit never loses the others.
* **Predictions on data larger than memory** (:func:`predict_proba_dask`,
  :func:`predict_dask`, :func:`score_samples_dask`): lazy ``dask.array`` results computed
  block by block with the streaming numpy functions of :mod:`bayesgmm.core.predict`.

Reproducibility: task ``i`` samples with ``random_seed = task_seeds(master, n)[i]``, a
child of ``numpy.random.SeedSequence(master)`` that depends on ``i`` only (not on ``n``).
``client="inprocess"`` runs the very same task function in a loop in this process, and its
posteriors equal the cluster's bit for bit (checked by ``tests/workflows/test_distributed.py``).
"""

from __future__ import annotations

import itertools
import time
import traceback
import warnings
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesgmm.core import predict as _predict
from bayesgmm.core.checks import check_mapping, child_seed
from bayesgmm.core.data import check_new_data
from bayesgmm.core.draws import posterior_dataset
from bayesgmm.estimator.estimator import BayesianGMM
from bayesgmm.exceptions import ConfigError, DataError

__all__ = [
    "FitResult",
    "fit_many",
    "predict_dask",
    "predict_proba_dask",
    "results_table",
    "score_samples_dask",
    "sweep",
    "task_seeds",
]

_INPROCESS = "inprocess"


# --------------------------------------------------------------------------- #
# Many fits
# --------------------------------------------------------------------------- #


@dataclass
class FitResult:
    """Outcome of one fitting task.

    Attributes
    ----------
    params : dict
        What the task fitted: ``index``, ``n_components``, ``covariance_type`` and the
        derived ``random_seed``.
    status : str
        ``"ok"``, or ``"<ExceptionType>: <message>"`` when the fit raised.
    estimator : BayesianGMM or None
        The fitted estimator (``idata_``, ``em_``, ``diagnostics_``, ...). It pickles
        without its ``model_`` (a ``pm.Model`` does not pickle), which is rebuilt from
        ``idata_["observed_data"]`` and ``spec_`` when first used, as after
        :meth:`bayesgmm.BayesianGMM.load`. ``None`` when the fit failed.
    error : str or None
        The worker's traceback when the fit failed.
    warnings : list of str
        Messages of the warnings raised during the fit (e.g. ``SamplingWarning``).
    elapsed : float
        Wall time of the fit in the worker, in seconds.
    """

    params: dict[str, Any]
    status: str
    estimator: Any = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the fit succeeded."""
        return self.status == "ok"


def task_seeds(random_seed: int, n: int) -> list[int]:
    """Per-task sampler seeds derived from one master seed.

    Seed ``i`` depends only on ``random_seed`` and ``i``, so the first tasks of a larger
    batch get the same seeds as a smaller batch.

    Examples
    --------
    >>> task_seeds(0, 3)[:2] == task_seeds(0, 2)
    True
    """
    return [child_seed(random_seed, i) for i in range(n)]


def _fit_task(X, params: dict[str, Any], estimator_kwargs: dict[str, Any]) -> FitResult:
    """One complete fit, run in a worker (or in this process for ``client="inprocess"``)."""
    from threadpoolctl import threadpool_limits

    start = time.perf_counter()
    sampler = dict(estimator_kwargs.get("sampler") or {})
    sampler.update(random_seed=params["random_seed"], cores=1)
    sampler.setdefault("progressbar", False)
    kwargs = {**estimator_kwargs, "sampler": sampler}
    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
        warnings.simplefilter("always")
        try:
            gmm = BayesianGMM(
                params["n_components"], covariance_type=params["covariance_type"], **kwargs
            ).fit(X)
        except Exception as exc:  # reported per task; the other tasks go on
            return FitResult(
                params,
                status=f"{type(exc).__name__}: {exc}",
                error=traceback.format_exc(),
                warnings=[str(w.message) for w in caught],
                elapsed=time.perf_counter() - start,
            )
    return FitResult(
        params,
        status="ok",
        estimator=gmm,
        warnings=[str(w.message) for w in caught],
        elapsed=time.perf_counter() - start,
    )


@contextmanager
def _client_for(client):
    """Yield a usable client: the one given, or a LocalCluster closed afterwards."""
    if client is not None:
        yield client
        return
    from distributed import Client, LocalCluster

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster,
        Client(cluster) as own,
    ):
        yield own


def _check_estimator_kwargs(estimator_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    valid = ("priors", "sampler", "em", "relabel")
    unknown = sorted(set(estimator_kwargs) - set(valid))
    if unknown:
        raise ConfigError(
            f"unknown estimator setting(s) {unknown}; valid: {list(valid)} "
            "(n_components, covariance_type and random_seed are arguments of their own)."
        )
    sampler = check_mapping(estimator_kwargs.get("sampler"), "sampler")
    if sampler is not None and "random_seed" in sampler:
        raise ConfigError(
            "sampler['random_seed'] is set per task from the master seed; pass "
            "random_seed=... to fit_many/sweep instead."
        )
    return dict(estimator_kwargs)


def _run(tasks: list[tuple[Any, dict[str, Any]]], client, estimator_kwargs) -> list[FitResult]:
    if isinstance(client, str):
        if client != _INPROCESS:
            raise ConfigError(f"client must be a distributed.Client, None or {_INPROCESS!r}.")
        return [_fit_task(X, params, estimator_kwargs) for X, params in tasks]
    with _client_for(client) as c:
        futures = [
            c.submit(_fit_task, X, params, estimator_kwargs, pure=False) for X, params in tasks
        ]
        results = []
        for fut, (_, params) in zip(futures, tasks, strict=True):
            try:  # the task catches fit errors itself; this catches lost workers etc.
                results.append(fut.result())
            except Exception as exc:
                results.append(
                    FitResult(params, status=f"{type(exc).__name__}: {exc}", error=repr(exc))
                )
            finally:
                fut.release()
    return results


def fit_many(
    datasets: Sequence[Any],
    n_components: int | Sequence[int] = 2,
    *,
    covariance_type: str = "full",
    client=None,
    random_seed: int = 0,
    **estimator_kwargs: Any,
) -> list[FitResult]:
    """Fit one ``BayesianGMM`` per dataset, each fit a Dask task.

    Parameters
    ----------
    datasets : sequence of array-like of shape (n_samples, n_features)
    n_components : int or sequence of int, default=2
        One K for all datasets, or one per dataset.
    covariance_type : str, default="full"
    client : distributed.Client, None or "inprocess"
        ``None`` starts a ``LocalCluster(n_workers=2, threads_per_worker=1,
        processes=True)`` and closes it afterwards. ``"inprocess"`` runs the same tasks in
        a loop in this process (same seeds, same results; for comparison and debugging).
    random_seed : int, default=0
        Master seed; task ``i`` samples with ``task_seeds(random_seed, n)[i]`` (which also
        seeds its EM start and relabelling).
    **estimator_kwargs
        ``priors``, ``sampler``, ``em``, ``relabel`` as in :class:`BayesianGMM`.
        ``sampler`` must not hold ``random_seed``.

    Returns
    -------
    list of FitResult
        In the order of ``datasets``; ``result.status`` is "ok" or the error message.

    Notes
    -----
    Threads inside a task, so that tasks on one machine do not oversubscribe its cores:

    * BLAS/OpenMP pools (numpy, scipy: EM, relabelling, log-likelihood) are limited to one
      thread with ``threadpoolctl.threadpool_limits(1)`` while the task runs.
    * The chains of one fit run one after the other: the sampler's ``cores`` is set to 1
      (PyMC's own NUTS), NumPyro's chains always run one after the other
      (:mod:`bayesgmm.inference.jaxnuts`; each worker process compiles a model structure once and
      reuses it for every later task of that shape), and BlackJAX asks for
      ``chain_method="parallel"``, which on a single CPU device (the default, without
      ``XLA_FLAGS=--xla_force_host_platform_device_count=N``) falls back to sequential
      chains. XLA's own intra-op thread pool is not limited; start workers with
      ``XLA_FLAGS="--xla_cpu_multi_thread_eigen=false"`` to pin it too.
    * ``progressbar`` defaults to False.

    Examples
    --------
    >>> results = fit_many([X1, X2], 2, sampler={"draws": 500})  # doctest: +SKIP
    >>> [r.status for r in results]  # doctest: +SKIP
    ['ok', 'ok']
    """
    kwargs = _check_estimator_kwargs(estimator_kwargs)
    datasets = list(datasets)
    if isinstance(n_components, Iterable):
        ks = list(n_components)
        if len(ks) != len(datasets):
            raise ConfigError(
                f"n_components has {len(ks)} entries for {len(datasets)} datasets; give one "
                "int for all or one per dataset."
            )
    else:
        ks = [n_components] * len(datasets)
    seeds = task_seeds(random_seed, len(datasets))
    tasks = [
        (X, {"index": i, "n_components": k, "covariance_type": covariance_type, "random_seed": s})
        for i, (X, k, s) in enumerate(zip(datasets, ks, seeds, strict=True))
    ]
    return _run(tasks, client, kwargs)


def sweep(
    X,
    k_range: Iterable[int],
    covariance_types: Sequence[str] = ("full",),
    *,
    client=None,
    random_seed: int = 0,
    **estimator_kwargs: Any,
) -> list[FitResult]:
    """Fit every (covariance type, K) pair on one dataset, each fit a Dask task.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    k_range : iterable of int
    covariance_types : sequence of str, default=("full",)
    client, random_seed, **estimator_kwargs
        As in :func:`fit_many`; task ``i`` in the order
        ``itertools.product(covariance_types, k_range)`` gets seed
        ``task_seeds(random_seed, n)[i]``.

    Returns
    -------
    list of FitResult
        One per pair, in that order; compare them with :func:`results_table` or pass the
        estimators to :func:`bayesgmm.loo_compare`.
    """
    kwargs = _check_estimator_kwargs(estimator_kwargs)
    pairs = list(itertools.product(covariance_types, k_range))
    seeds = task_seeds(random_seed, len(pairs))
    if not isinstance(client, str) and client is not None and len(pairs) > 1:
        X = client.scatter(X, broadcast=False, hash=False)  # sent to the workers once
    tasks = [
        (X, {"index": i, "n_components": k, "covariance_type": ct, "random_seed": s})
        for i, ((ct, k), s) in enumerate(zip(pairs, seeds, strict=True))
    ]
    return _run(tasks, client, kwargs)


def results_table(results: Sequence[FitResult]) -> pd.DataFrame:
    """One row per task: its parameters, status, diagnostics verdict and wall time."""
    rows = []
    for r in results:
        est = r.estimator
        rows.append(
            {
                **r.params,
                "status": r.status,
                "verdict": est.diagnostics_.verdict if est is not None else None,
                "elapsed": r.elapsed,
            }
        )
    return pd.DataFrame(rows).set_index("index")


# --------------------------------------------------------------------------- #
# Predictions on dask arrays
# --------------------------------------------------------------------------- #


def _small_posterior(gmm_or_posterior) -> xr.Dataset:
    """The weights/means/covariance draws as a loaded, numpy-backed Dataset."""
    source = getattr(gmm_or_posterior, "idata_", gmm_or_posterior)
    ds = posterior_dataset(source)
    return ds[["weights", "means", "covariance"]].load()


def _as_rows(X, n_features: int):
    import dask.array as da

    X = da.asarray(X)
    if X.dtype.kind not in "biuf":  # checked now, not when the first block is computed
        check_new_data(np.zeros((1, n_features), dtype=X.dtype), n_features, ["?"] * n_features)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise DataError(
            f"X must be a 2-D dask array of shape (n_samples, {n_features}); got shape {X.shape}."
        )
    return X.rechunk({1: -1})  # features in one chunk: each block is whole points


def _checked_block(block, posterior, block_info):
    """The block validated with row numbers of the whole array in any message."""
    start = block_info[0]["array-location"][0][0] if block_info else 0
    names = [str(f) for f in posterior["feature"].to_numpy()]
    return check_new_data(block, len(names), names, row_offset=start)


def _block_proba(block, *, posterior, kwargs, block_info=None):
    return _predict.predict_proba(posterior, _checked_block(block, posterior, block_info), **kwargs)


def _block_predict(block, *, posterior, kwargs, block_info=None):
    return _predict.predict(posterior, _checked_block(block, posterior, block_info), **kwargs)


def _block_score(block, *, posterior, kwargs, block_info=None):
    return _predict.score_samples(posterior, _checked_block(block, posterior, block_info), **kwargs)


def _map_rows(func, gmm_or_posterior, X, kwargs, *, out_cols: int | None, dtype):
    import dask
    import dask.array as da

    post = _small_posterior(gmm_or_posterior)
    X = _as_rows(X, post.sizes["feature"])
    # one graph node holds the draws; every block depends on it (not a copy per block)
    posterior = dask.delayed(post, pure=True, traverse=False)
    common = {"posterior": posterior, "kwargs": kwargs, "dtype": dtype}
    if out_cols is None:
        return da.map_blocks(func, X, drop_axis=1, **common)
    return da.map_blocks(func, X, chunks=(X.chunks[0], (out_cols,)), **common)


def predict_proba_dask(gmm_or_posterior, X, **kwargs: Any):
    """Posterior mean membership probabilities of a dask array, lazily.

    Parameters
    ----------
    gmm_or_posterior : BayesianGMM, xarray.DataTree or xarray.Dataset
        A fitted estimator or its posterior (``weights``, ``means``, ``covariance``).
    X : dask array of shape (n_samples, n_features)
        Chunked over rows; rechunked so that the features are one chunk.
    **kwargs
        ``max_draws``, ``chunk_size`` for :func:`bayesgmm.predict_proba`, applied
        within each block (memory per block: about draws x chunk_size x components).

    Returns
    -------
    dask array of shape (n_samples, n_components)
        Computed block by block with :func:`bayesgmm.predict_proba`.
    """
    if kwargs.get("return_intervals"):
        raise ConfigError("return_intervals is not supported on dask arrays yet.")
    K = _small_posterior(gmm_or_posterior).sizes["component"]
    return _map_rows(_block_proba, gmm_or_posterior, X, kwargs, out_cols=K, dtype=float)


def predict_dask(gmm_or_posterior, X, **kwargs: Any):
    """Most probable component of each row of a dask array, lazily (dask array of int)."""
    return _map_rows(_block_predict, gmm_or_posterior, X, kwargs, out_cols=None, dtype=np.intp)


def score_samples_dask(gmm_or_posterior, X, **kwargs: Any):
    """Log posterior predictive density of each row of a dask array, lazily.

    As :func:`predict_proba_dask`, with :func:`bayesgmm.score_samples` on each
    block; returns a dask array of shape (n_samples,).
    """
    if kwargs.get("return_intervals"):
        raise ConfigError("return_intervals is not supported on dask arrays yet.")
    return _map_rows(_block_score, gmm_or_posterior, X, kwargs, out_cols=None, dtype=float)
