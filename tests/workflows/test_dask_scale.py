"""Scoring 10 million points on Dask with bounded memory (issue 10; slow)."""

import time
import tracemalloc

import numpy as np
import pytest

da = pytest.importorskip("dask.array")

from bayesgmm.core import predict as P  # noqa: E402
from bayesgmm.core.draws import example_posterior  # noqa: E402
from bayesgmm.workflows.distributed import predict_dask, score_samples_dask  # noqa: E402

N = 10_000_000
CHUNK = 500_000
HEAD = 100_000


@pytest.mark.slow
def test_ten_million_points_score_in_bounded_memory():
    import dask

    post = example_posterior(n_chain=2, n_draw=10)  # 20 draws, K=2, D=2
    X = da.random.RandomState(0).normal(1.5, 2.0, size=(N, 2), chunks=(CHUNK, 2))
    scores = score_samples_dask(post, X)
    labels = predict_dask(post, X)
    # the full draws x points x components array would need 20 * 1e7 * 2 * 8 B = 3.2 GB;
    # the score vector itself 80 MB; reductions keep only per-block results
    start = time.perf_counter()
    tracemalloc.start()
    with dask.config.set(scheduler="threads", num_workers=2):
        total, lowest, n_first, head = dask.compute(
            scores.sum(), scores.min(), (labels == 0).sum(), scores[:HEAD]
        )
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    seconds = time.perf_counter() - start
    print(f"10M points: {seconds:.1f} s, tracemalloc peak {peak / 2**20:.1f} MiB")
    assert peak < 400 * 2**20, peak / 2**20
    assert np.isfinite(total) and np.isfinite(lowest)
    assert 0 < n_first < N
    expected = P.score_samples(post, X[:HEAD].compute())
    np.testing.assert_allclose(head, expected, rtol=1e-12, atol=0)
    # the total is the sum of per-block in-memory results (checked on two blocks)
    blocks = [X[i * CHUNK : (i + 1) * CHUNK].compute() for i in (0, N // CHUNK - 1)]
    block_scores = [P.score_samples(post, b) for b in blocks]
    np.testing.assert_allclose(scores[:CHUNK].sum().compute(), block_scores[0].sum(), rtol=1e-12)
    np.testing.assert_allclose(scores[-CHUNK:].compute(), block_scores[1], rtol=1e-12)
