"""Benchmark: bayesgmm's posterior sampling against NumPyro and the documented PyMC model.

Three ways to get the posterior of a full-covariance Gaussian mixture run side by side,
in one process, on the same seeded synthetic data (well-separated clusters):

``bayesgmm``
    ``BayesianGMM(K).fit(X)`` with default settings (EM start, default backend); the
    wall time is the whole ``fit``: EM, model build, compile, sampling, and the pointwise
    log-likelihood. ``--samplers`` adds one row per named NUTS backend.
``numpyro``
    A hand-written NumPyro model with bayesgmm's default priors, in the data's units:
    ``Dirichlet(1)`` weights, ``Normal(col mean, 2 col sd)`` means, ``HalfNormal(col sd)``
    sds, ``LKJCholesky(eta=2)`` correlations, likelihood
    ``MixtureSameFamily(Categorical, MultivariateNormal(scale_tril=...))``. Every chain
    starts at the same EM solution bayesgmm starts from (``init_to_value``, passed as
    unconstrained ``init_params``; bayesgmm adds a 0.05 jitter per chain). Chains run
    with ``--numpyro-chain-method`` on ``--host-devices`` XLA CPU devices. Timed to
    ``jax.block_until_ready`` of the samples (JAX dispatches asynchronously), compile
    included.
``pymc-doc``
    What the PyMC documentation shows: ``pm.Mixture`` over a list of per-component
    ``pm.MvNormal`` with ``pm.LKJCholeskyCov`` (same priors), default ``pm.sample``
    (whatever backend PyMC 6 picks; nutpie when installed) and its default random
    starts. It is very slow, so ``--doc-draws`` / ``--doc-tune`` can shorten it; ESS/s
    is then computed from that shorter run, as measured.

All three posteriors are label-aligned the same way before diagnostics: every draw's
components are permuted to best match the EM solution's means (minimum total squared
distance over all K! permutations). Diagnostics run over weights, means, sds and the
strictly lower correlations: the minimum bulk ESS and the maximum rank R-hat.

Run::

    python bench/bench_sampling.py --workload small --draws 300 --tune 300 \
        --doc-draws 50 --doc-tune 50
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
import warnings


def _parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=("small", "large", "both"), default="small")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--samplers",
        default="",
        help="comma-separated bayesgmm backends to time as extra rows (pymc,nutpie,numpyro)",
    )
    p.add_argument("--skip-default", action="store_true", help="no bayesgmm default row")
    p.add_argument("--skip-numpyro", action="store_true")
    p.add_argument("--skip-doc-model", action="store_true")
    p.add_argument("--doc-draws", type=int, default=None, help="draws for the doc model")
    p.add_argument("--doc-tune", type=int, default=None, help="tuning for the doc model")
    p.add_argument(
        "--numpyro-chain-method",
        choices=("parallel", "sequential", "vectorized"),
        default="sequential",
        help="'parallel' (pmap) fails for this model with numpyro 0.22 / jax 0.12: "
        "LKJCholesky converts a traced value to numpy under shard_map",
    )
    p.add_argument(
        "--host-devices",
        type=int,
        default=1,
        help="XLA CPU devices (numpyro.set_host_device_count); also used by bayesgmm's "
        "numpyro backend (pm.sample pmaps chains when there are enough devices)",
    )
    return p.parse_args(argv)


ARGS = _parse_args() if __name__ in ("__main__", "builtins") else None
if ARGS is not None:  # must happen before JAX is imported anywhere
    import numpyro

    numpyro.set_host_device_count(ARGS.host_devices)
    numpyro.enable_x64()

import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
from bench_em import make_data  # noqa: E402  (same synthetic workloads as the EM benchmark)

WORKLOADS = {"small": (1_000, 3, 2), "large": (10_000, 5, 4)}


# -- label alignment and diagnostics -------------------------------------------------------
def align(draws: dict[str, np.ndarray], ref_means: np.ndarray) -> dict[str, np.ndarray]:
    """Permute components per draw to best match ``ref_means`` (K, D).

    ``draws`` holds ``weights`` (C, S, K), ``means``/``sds`` (C, S, K, D) and
    ``corr`` (C, S, K, D, D); the component axis is axis 2 for all.
    """
    K = ref_means.shape[0]
    perms = np.array(list(itertools.permutations(range(K))))  # (P, K)
    # cost[c, s, i, j] = |means[c, s, i] - ref[j]|^2
    cost = np.sum((draws["means"][:, :, :, None, :] - ref_means[None, None, None]) ** 2, axis=-1)
    # total cost of assigning component perms[p, j] to reference j
    total = cost[:, :, perms, np.arange(K)].sum(axis=-1)  # (C, S, P)
    best = perms[np.argmin(total, axis=-1)]  # (C, S, K)
    out = {}
    for name, arr in draws.items():
        idx = best.reshape(best.shape + (1,) * (arr.ndim - 3))
        out[name] = np.take_along_axis(arr, idx, axis=2)
    return out


def diagnostics(draws: dict[str, np.ndarray]) -> tuple[float, float]:
    """Minimum bulk ESS and maximum R-hat over every aligned scalar parameter."""
    D = draws["means"].shape[-1]
    i, j = np.tril_indices(D, k=-1)
    C, S = draws["weights"].shape[:2]
    cols = [
        draws["weights"].reshape(C, S, -1),
        draws["means"].reshape(C, S, -1),
        draws["sds"].reshape(C, S, -1),
        draws["corr"][..., i, j].reshape(C, S, -1),
    ]
    flat = np.concatenate(cols, axis=-1)  # (C, S, P)
    ess = np.asarray(az.ess(flat, method="bulk", chain_axis=0, draw_axis=1))
    rhat = np.asarray(az.rhat(flat, chain_axis=0, draw_axis=1))
    return float(np.min(ess)), float(np.max(rhat))


# -- the three methods ----------------------------------------------------------------------
def run_bayesgmm(X, K, args, nuts_sampler="auto"):
    from bayesgmm import BayesianGMM

    cfg = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "random_seed": args.seed,
        "progressbar": False,
        "nuts_sampler": nuts_sampler,
    }
    t = time.perf_counter()
    gmm = BayesianGMM(K, sampler=cfg).fit(X)
    wall = time.perf_counter() - t
    post = gmm.idata_["posterior"].to_dataset()
    draws = {
        "weights": post["weights"].values,
        "means": post["means"].values,
        "sds": post["sds"].values,
        "corr": post["correlation"].values,
    }
    stats = gmm.idata_["sample_stats"].to_dataset()
    steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")
    return wall, draws, steps, gmm.idata_.attrs.get("nuts_sampler", nuts_sampler)


def em_reference(X, K, seed):
    """The EM MAP solution bayesgmm starts from (same call as ``BayesianGMM.fit``)."""
    from bayesgmm.core.em import fit_em
    from bayesgmm.core.spec import make_spec

    X, spec = make_spec(X, K, "full")
    return fit_em(
        X,
        K,
        covariance_type="full",
        prior=spec.priors.to_em_prior("full"),
        random_seed=seed,
        n_init=10,
    )


def run_numpyro(X, K, em, args):
    import jax
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.distributions import biject_to, constraints
    from numpyro.infer import MCMC, NUTS, init_to_value

    N, D = X.shape
    loc, sd = X.mean(axis=0), X.std(axis=0)

    def model(x):
        weights = numpyro.sample("weights", dist.Dirichlet(jnp.ones(K)))
        with numpyro.plate("component", K):
            means = numpyro.sample("means", dist.Normal(loc, 2.0 * sd).to_event(1))
            sds = numpyro.sample("sds", dist.HalfNormal(sd).to_event(1))
            chol_corr = numpyro.sample("chol_corr", dist.LKJCholesky(D, concentration=2.0))
        scale_tril = sds[..., :, None] * chol_corr
        mix = dist.MixtureSameFamily(
            dist.Categorical(probs=weights), dist.MultivariateNormal(means, scale_tril=scale_tril)
        )
        with numpyro.plate("obs", N):
            numpyro.sample("x", mix, obs=x)

    cov = np.asarray(em.covariance_matrices())
    em_sds = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    start = {
        "weights": np.asarray(em.weights) / np.sum(em.weights),
        "means": np.asarray(em.means),
        "sds": em_sds,
        "chol_corr": np.linalg.cholesky(cov / (em_sds[:, :, None] * em_sds[:, None, :])),
    }
    # the same start as unconstrained values, one copy per chain (passing init_params
    # rather than relying on init_to_value alone also works under pmap)
    unconstrained = {
        "weights": biject_to(constraints.simplex).inv(jnp.asarray(start["weights"])),
        "means": jnp.asarray(start["means"]),
        "sds": biject_to(constraints.positive).inv(jnp.asarray(start["sds"])),
        "chol_corr": biject_to(constraints.corr_cholesky).inv(jnp.asarray(start["chol_corr"])),
    }
    init_params = {k: jnp.stack([v] * args.chains) for k, v in unconstrained.items()}
    t = time.perf_counter()
    kernel = NUTS(model, target_accept_prob=0.9, init_strategy=init_to_value(values=start))
    mcmc = MCMC(
        kernel,
        num_warmup=args.tune,
        num_samples=args.draws,
        num_chains=args.chains,
        chain_method=args.numpyro_chain_method,
        progress_bar=False,
    )
    mcmc.run(
        jax.random.PRNGKey(args.seed),
        jnp.asarray(X),
        init_params=init_params,
        extra_fields=("num_steps",),
    )
    samples = jax.block_until_ready(mcmc.get_samples(group_by_chain=True))
    steps = jax.block_until_ready(mcmc.get_extra_fields(group_by_chain=True)["num_steps"])
    wall = time.perf_counter() - t
    L = np.asarray(samples["chol_corr"])
    draws = {
        "weights": np.asarray(samples["weights"]),
        "means": np.asarray(samples["means"]),
        "sds": np.asarray(samples["sds"]),
        "corr": L @ np.swapaxes(L, -1, -2),
    }
    return wall, draws, float(np.mean(steps))


def run_doc_model(X, K, args):
    import pymc as pm

    D = X.shape[1]
    loc, sd = X.mean(axis=0), X.std(axis=0)
    draws_n = args.doc_draws or args.draws
    tune_n = args.doc_tune if args.doc_tune is not None else args.tune
    t = time.perf_counter()
    with pm.Model():
        weights = pm.Dirichlet("weights", a=np.ones(K))
        means = pm.Normal("means", mu=loc, sigma=2.0 * sd, shape=(K, D))
        components = []
        for k in range(K):
            chol, _, _ = pm.LKJCholeskyCov(
                f"chol_cov_{k}", n=D, eta=2.0, sd_dist=pm.HalfNormal.dist(sd, shape=D)
            )
            components.append(pm.MvNormal.dist(mu=means[k], chol=chol))
        pm.Mixture("x", w=weights, comp_dists=components, observed=X)
        idata = pm.sample(
            draws=draws_n,
            tune=tune_n,
            chains=args.chains,
            random_seed=args.seed,
            progressbar=False,
            compute_convergence_checks=False,
        )
    wall = time.perf_counter() - t
    post = idata["posterior"].to_dataset()
    draws = {
        "weights": post["weights"].values,
        "means": post["means"].values,
        "sds": np.stack([post[f"chol_cov_{k}_stds"].values for k in range(K)], axis=2),
        "corr": np.stack([post[f"chol_cov_{k}_corr"].values for k in range(K)], axis=2),
    }
    stats = idata["sample_stats"].to_dataset()
    steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")
    backend = "pm.sample default"
    return wall, draws, steps, backend, draws_n, tune_n


# -- driver ---------------------------------------------------------------------------------
def main(args: argparse.Namespace) -> None:
    import logging

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    names = ["small", "large"] if args.workload == "both" else [args.workload]
    extra = [s for s in args.samplers.split(",") if s]
    rows = []
    for name in names:
        n, K, D = WORKLOADS[name]
        X = make_data(n, K, D, args.seed)
        em = em_reference(X, K, args.seed)
        ref = np.asarray(em.means)
        results = []  # (method, wall, draws, mean leapfrog steps, note)
        runs = [] if args.skip_default else [("bayesgmm", "auto")]
        runs += [(f"bayesgmm[{s}]", s) for s in extra]
        for label, sampler in runs:
            wall, draws, steps, backend = run_bayesgmm(X, K, args, sampler)
            results.append((label, wall, draws, steps, f"backend={backend}"))
            _progress(name, results[-1], ref)
        if not args.skip_numpyro:
            wall, draws, steps = run_numpyro(X, K, em, args)
            results.append(("numpyro", wall, draws, steps, args.numpyro_chain_method))
            _progress(name, results[-1], ref)
        if not args.skip_doc_model:
            wall, draws, steps, backend, dn, tn = run_doc_model(X, K, args)
            results.append(("pymc-doc", wall, draws, steps, f"{backend} {tn}+{dn}"))
            _progress(name, results[-1], ref)
        for label, wall, draws, steps, note in results:
            ess, rhat = diagnostics(align(draws, ref))
            rows.append([name, label, wall, ess, rhat, ess / wall, steps, note])
    _print_table(rows)


def _progress(workload, result, ref) -> None:
    label, wall, draws, steps, note = result
    ess, rhat = diagnostics(align(draws, ref))
    print(
        f"# done {workload} {label}: {wall:.1f} s, min ESS {ess:.0f}, max R-hat {rhat:.3f}, "
        f"steps {steps:.1f} ({note})",
        file=sys.stderr,
        flush=True,
    )


def _print_table(rows) -> None:
    base = {}
    for r in rows:
        if r[1] in ("numpyro", "pymc-doc"):
            base[r[0], r[1]] = r[5]
    header = (
        f"{'workload':<9}{'method':<19}{'wall s':>9}{'min ESS':>9}{'max R-hat':>10}"
        f"{'ESS/s':>9}{'x numpyro':>10}{'x doc':>9}{'steps':>7}  note"
    )
    print(header)
    print("-" * len(header))
    for wl, label, wall, ess, rhat, eps, steps, note in rows:
        r_np = eps / base[wl, "numpyro"] if (wl, "numpyro") in base else float("nan")
        r_doc = eps / base[wl, "pymc-doc"] if base.get((wl, "pymc-doc")) else float("nan")
        print(
            f"{wl:<9}{label:<19}{wall:>9.1f}{ess:>9.0f}{rhat:>10.3f}{eps:>9.1f}"
            f"{r_np:>10.2f}{r_doc:>9.0f}{steps:>7.1f}  {note}"
        )
    print(
        f"# draws={ARGS.draws} tune={ARGS.tune} chains={ARGS.chains} seed={ARGS.seed} "
        f"cpus={os.cpu_count()}; steps = mean leapfrog steps per draw"
    )


if __name__ == "__main__":
    main(ARGS)
