"""Shared, session-scoped fixtures: a small well-separated dataset and one cached fit.

Also turns on JAX's persistent compilation cache in bayesgmm's own per-user folder
(``~/.cache/bayesgmm/jax``; ``BAYESGMM_JAX_CACHE`` moves it or turns it off), as PyTensor
keeps its compiled code in ``~/.pytensor``. The processes a test run starts (notebook
kernels, CLI runs, Dask workers) use the same folder, and so does a new clone: one compiled
program per model structure serves them all, since bayesgmm's NumPyro sampler takes data
and priors as arguments. A machine's first run starts with empty caches.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

try:  # the tests' own jitted functions too, not only bayesgmm's samplers
    from bayesgmm.inference.jaxgraph import enable_compilation_cache
except ImportError:  # without JAX
    pass
else:
    enable_compilation_cache()

#: PyTensor's mode for tests that evaluate a model's graphs at a few points (exactness
#: checks): no optimisation and no Numba, so compiling takes a fraction of the default's
#: time; the values are the same graph's.
COMPILE_FAST = {"mode": "FAST_COMPILE"}

SEPARATED_CENTERS = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, 0.0]])


@pytest.fixture(scope="session")
def separated_X() -> np.ndarray:
    """Three well-separated 2-D Gaussian clusters (unit covariance), 50 points each."""
    rng = np.random.default_rng(20261123)
    return np.vstack([rng.normal(c, 1.0, size=(50, 2)) for c in SEPARATED_CENTERS])


@pytest.fixture(scope="session")
def separated_fit(separated_X):
    """``BayesianGMM(3)`` fitted on ``separated_X``: 4 chains x 1000 draws (NumPyro).

    Compiling the model dominates the cost (tens of seconds on a loaded machine).

    Shared by several test files; treat it as read-only.
    """
    from bayesgmm import BayesianGMM

    gmm = BayesianGMM(
        3,
        sampler={"draws": 1000, "tune": 500, "chains": 4, "random_seed": 1, "progressbar": False},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gmm.fit(separated_X)


def _small_fit(X, k, seed):
    from bayesgmm import BayesianGMM

    gmm = BayesianGMM(
        k,
        sampler={"draws": 200, "tune": 300, "chains": 2, "random_seed": seed, "progressbar": False},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gmm.fit(X)


@pytest.fixture(scope="session")
def faithful_fit():
    """``BayesianGMM(2)`` on Old Faithful (D=2): 2 chains x 200 draws, for figure and report
    structure tests (not for statistics). Treat it as read-only."""
    from bayesgmm import load_faithful

    return _small_fit(load_faithful(), 2, seed=3)


@pytest.fixture(scope="session")
def iris_fit():
    """``BayesianGMM(3)`` on iris (D=4, scikit-learn's copy, feature names without units):
    2 chains x 200 draws, for figure and report structure tests. Treat it as read-only."""
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True).frame
    X = iris.iloc[:, :4].rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return _small_fit(X, 3, seed=5)


def two_blobs(n_features: int, seed: int, n: int = 60) -> np.ndarray:
    """``n`` standard normal points, the first half shifted by 5 in every feature."""
    X = np.random.default_rng(seed).normal(size=(n, n_features))
    X[: n // 2] += 5.0
    return X


def check_objective_trace(fit) -> bool:
    """Assert that an EM run's objective never decreased (to 1e-9 relative); False, and
    nothing checked, for a run that reseeded a component (its trace restarts)."""
    if fit.n_reseeds:
        return False
    trace = fit.objective_trace
    assert len(trace) == fit.n_iter
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    return True


def sample_from_starts(model, starts, *, draws, tune, random_seed):
    """NumPyro NUTS with 4 chains started exactly at ``starts`` (no jitter), plus the
    pointwise log-likelihood: for tests that put chains in chosen modes or labellings."""
    import pymc as pm

    from bayesgmm.inference.sampling import pointwise_log_likelihood

    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = pm.sample(
            draws=draws,
            tune=tune,
            chains=len(starts),
            nuts_sampler="numpyro",
            initvals=starts,
            nuts={"jitter": False, "chain_method": "sequential"},
            random_seed=random_seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
    if "log_likelihood" not in idata.children:
        idata["log_likelihood"] = pointwise_log_likelihood(model, idata["posterior"].to_dataset())
    return idata


def model_values(model, point, names=("weights", "means", "covariance")) -> list:
    """The values of the model's variables ``names`` at ``point`` (a dict of value
    variables), compiled with :data:`COMPILE_FAST`."""
    outs = model.replace_rvs_by_values([model[n] for n in names])
    fn = model.compile_fn(outs, inputs=model.value_vars, on_unused_input="ignore", **COMPILE_FAST)
    return fn(point)


def random_point(model, rng, scale):
    """The model's initial point with every value variable moved by N(0, scale**2)."""
    start = model.initial_point()
    return {k: v + rng.normal(scale=scale, size=np.shape(v)) for k, v in start.items()}


def check_fast_log_density(model, spec, points) -> None:
    """Assert that the NumPyro backend's log density and gradient equal ``model.logp()``
    and ``model.dlogp()`` (1e-8), and its pointwise log-likelihood the model's (1e-9), at
    each of ``points`` (dicts of value variables); skipped without NumPyro."""
    pytest.importorskip("numpyro")
    import jax
    import pymc.sampling.jax  # noqa: F401  (64-bit floats, as the sampler uses)

    from bayesgmm.inference.jaxgraph import model_functions

    functions, shared = model_functions(model, spec)
    args = functions.prepare(tuple(np.asarray(s.get_value()) for s in shared))
    logp, dlogp = model.compile_logp(**COMPILE_FAST), model.compile_dlogp(**COMPILE_FAST)
    grad = jax.jit(jax.value_and_grad(functions.logp))
    pointwise = model.compile_logp(vars=[model["x"]], sum=False, **COMPILE_FAST)
    for point in points:
        value, g = grad(point, args)
        np.testing.assert_allclose(float(value), logp(point), rtol=1e-8, atol=1e-8)
        flat = np.concatenate([np.ravel(g[v.name]) for v in model.value_vars])
        np.testing.assert_allclose(flat, dlogp(point), rtol=1e-8, atol=1e-8)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            outs = jax.jit(functions.outputs)(point, args)
        np.testing.assert_allclose(outs[-1], pointwise(point)[0], rtol=1e-9, atol=1e-9)


def faithful_with_outliers(n_out: int = 30, seed: int = 0):
    """Old Faithful, ``n_out`` scattered outliers and the clean data's EM fit.

    The outliers are uniform on the box of the data's ranges widened by half a range on
    each side, redrawn until they are at least 3 sds (Mahalanobis, clean EM fit) from both
    means: a point inside a cluster is that cluster's, with or without a background.
    """
    from bayesgmm import fit_em, load_faithful

    X = load_faithful().to_numpy()
    clean = fit_em(X, 2, random_seed=0)
    chol_cov = np.linalg.cholesky(clean.covariance_matrices())  # (2, D, D)
    lo, hi = X.min(axis=0), X.max(axis=0)
    lo, hi = lo - 0.5 * (hi - lo), hi + 0.5 * (hi - lo)
    rng = np.random.default_rng(seed)
    out = np.empty((0, X.shape[1]))
    while len(out) < n_out:
        x = lo + (hi - lo) * rng.random((n_out, X.shape[1]))
        white = np.linalg.solve(chol_cov[None], (x[:, None, :] - clean.means)[..., None])
        far = (np.linalg.norm(white[..., 0], axis=-1) > 3).all(axis=1)  # L^-1 (x - mu)
        out = np.concatenate([out, x[far]])[:n_out]
    return X, out, clean
