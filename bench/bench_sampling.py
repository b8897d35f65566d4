"""Benchmark: bayesgmm's sampler against a hand-written NumPyro model with parallel chains.

The methods run side by side in one run, each in its own fresh process, on the same
seeded synthetic data (well-separated clusters, ``bench_em.make_data``), twice:

``cold``
    Empty caches: a new, empty JAX persistent compilation cache folder and a new PyTensor
    compile folder for each method, so everything is compiled.
``warm``
    A new process again, with the caches the cold run of the same method filled (what a
    user's second script, notebook kernel or CLI call sees).

The methods:

``bayesgmm``
    ``BayesianGMM(K).fit(X)`` with default settings; the wall time is the whole ``fit``
    (EM, model, compiling, sampling, relabelling, pointwise log-likelihood, diagnostics).
    ``--samplers`` adds a row per named backend (``pymc``, ``nutpie``).
``bayesgmm-units1`` (``--units-one``)
    The same fit with the sampler's coordinate units left at one (the model's
    unconstrained coordinates before ``bayesgmm.inference.coordinates``): what the
    standard-error units change, in leapfrog steps per draw and ESS.
``numpyro``
    What a NumPyro user writes: bayesgmm's default priors in the data's units
    (``Dirichlet(1)`` weights, ``Normal(col mean, 2 col sd)`` means, ``HalfNormal(col
    sd)`` sds, ``LKJCholesky(eta=2)``), the likelihood ``MixtureSameFamily(Categorical,
    MultivariateNormal(scale_tril=...))``, every chain started at the EM solution
    bayesgmm starts from (unconstrained ``init_params``), target acceptance 0.9 as
    bayesgmm's, ``numpyro.set_host_device_count(chains)`` and
    ``chain_method="parallel"``, its JAX compilation cache on in the same way (minimum
    compile time 0), timed from the model to ``jax.block_until_ready`` of the draws.
``pymc-doc`` (``--doc-model``)
    The model of the PyMC documentation, ``pm.Mixture`` of ``pm.MvNormal`` with
    ``pm.LKJCholeskyCov``, default ``pm.sample``; very slow, shorten with ``--doc-draws``.

Every posterior is label-aligned the same way before diagnostics (per draw, the best of
the K! permutations to the EM means); the table has the minimum bulk ESS and maximum
rank R-hat over the weights, means, sds and strictly lower correlations, ESS/s (that ESS
over the wall seconds), its ratio to NumPyro's in the same phase, and the mean leapfrog
steps per draw.

Run::

    python bench/bench_sampling.py --workload small
    python bench/bench_sampling.py --workload large --draws 500 --tune 500
    python bench/bench_sampling.py --workload large --draws 300 --tune 300 --phases cold --units-one
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = {"small": (1_000, 3, 2), "large": (10_000, 5, 4)}


def _parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workload", choices=("small", "large", "both"), default="small")
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--phases", default="cold,warm", help="cold, warm or both (comma-separated)")
    p.add_argument("--samplers", default="", help="extra bayesgmm backends, e.g. pymc,nutpie")
    p.add_argument("--settings", default="{}", help="JSON bayesgmm sampler settings to add")
    p.add_argument("--skip-numpyro", action="store_true")
    p.add_argument("--units-one", action="store_true", help="add bayesgmm with units of one")
    p.add_argument("--doc-model", action="store_true", help="add the documented pm.Mixture")
    p.add_argument("--doc-draws", type=int, default=None)
    p.add_argument("--doc-tune", type=int, default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    return p.parse_args(argv)


# -- label alignment and diagnostics -------------------------------------------------------
def align(draws: dict, ref_means):
    """Permute components per draw to best match ``ref_means`` (K, D); ``draws`` holds
    ``weights`` (C, S, K), ``means`` / ``sds`` (C, S, K, D), ``corr`` (C, S, K, D, D)."""
    import numpy as np

    K = ref_means.shape[0]
    perms = np.array(list(itertools.permutations(range(K))))
    cost = np.sum((draws["means"][:, :, :, None, :] - ref_means[None, None, None]) ** 2, axis=-1)
    best = perms[np.argmin(cost[:, :, perms, np.arange(K)].sum(axis=-1), axis=-1)]
    return {
        name: np.take_along_axis(arr, best.reshape(best.shape + (1,) * (arr.ndim - 3)), axis=2)
        for name, arr in draws.items()
    }


def diagnostics(draws: dict) -> tuple[float, float]:
    """Minimum bulk ESS and maximum R-hat over every aligned scalar parameter."""
    import arviz as az
    import numpy as np

    D = draws["means"].shape[-1]
    i, j = np.tril_indices(D, k=-1)
    C, S = draws["weights"].shape[:2]
    cols = [
        draws["weights"].reshape(C, S, -1),
        draws["means"].reshape(C, S, -1),
        draws["sds"].reshape(C, S, -1),
        draws["corr"][..., i, j].reshape(C, S, -1),
    ]
    flat = np.concatenate(cols, axis=-1)
    ess = np.asarray(az.ess(flat, method="bulk", chain_axis=0, draw_axis=1))
    rhat = np.asarray(az.rhat(flat, chain_axis=0, draw_axis=1))
    return float(np.min(ess)), float(np.max(rhat))


def em_reference(X, K, seed):
    """The EM MAP solution bayesgmm starts from (the same call as ``BayesianGMM.fit``)."""
    from bayesgmm.core.em import fit_em
    from bayesgmm.core.spec import make_spec

    X, spec = make_spec(X, K, "full")
    prior = spec.priors.to_em_prior("full")
    return fit_em(X, K, covariance_type="full", prior=prior, random_seed=seed, n_init=10)


# -- the methods (each runs in a worker process) --------------------------------------------
def run_bayesgmm(X, K, args, nuts_sampler="auto"):
    from bayesgmm import BayesianGMM

    cfg = {
        "draws": args.draws,
        "tune": args.tune,
        "chains": args.chains,
        "random_seed": args.seed,
        "progressbar": False,
        "nuts_sampler": nuts_sampler,
        **json.loads(args.settings),
    }
    t = time.perf_counter()
    gmm = BayesianGMM(K, sampler=cfg).fit(X)
    wall = time.perf_counter() - t
    post = gmm.idata_["posterior"]
    draws = {
        "weights": post["weights"].values,
        "means": post["means"].values,
        "sds": post["sds"].values,
        "corr": post["correlation"].values,
    }
    stats = gmm.idata_["sample_stats"]
    steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")
    attrs = post.attrs
    note = f"backend={gmm.idata_.attrs.get('nuts_sampler', nuts_sampler)}"
    if "workers" in attrs:
        note += f" threads={attrs['workers']} dense={attrs['dense_mass']}"
    return wall, draws, steps, note


def numpyro_model(X, K):
    """The hand-written NumPyro model: bayesgmm's default priors in the data's units,
    ``MixtureSameFamily`` of ``MultivariateNormal(scale_tril)``."""
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist

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

    return model


def em_start(em) -> dict:
    """The EM solution as the NumPyro model's (constrained) parameters."""
    import numpy as np

    cov = np.asarray(em.covariance_matrices())
    sds = np.sqrt(np.diagonal(cov, axis1=-2, axis2=-1))
    return {
        "weights": em.weights / em.weights.sum(),
        "means": em.means,
        "sds": sds,
        "chol_corr": np.linalg.cholesky(cov / (sds[:, :, None] * sds[:, None, :])),
    }


def run_numpyro(X, K, em, args):
    import jax
    import jax.numpy as jnp
    import numpy as np
    from numpyro.distributions import biject_to, constraints
    from numpyro.infer import MCMC, NUTS

    t = time.perf_counter()
    model = numpyro_model(X, K)
    em_point = em_start(em)
    # the EM start on the unconstrained scale, one copy per chain (init_to_value fails
    # under pmap for LKJCholesky with numpyro 0.22; init_params starts the chains there)
    start = {
        "weights": biject_to(constraints.simplex).inv(jnp.asarray(em_point["weights"])),
        "means": jnp.asarray(em_point["means"]),
        "sds": biject_to(constraints.positive).inv(jnp.asarray(em_point["sds"])),
        "chol_corr": biject_to(constraints.corr_cholesky).inv(jnp.asarray(em_point["chol_corr"])),
    }
    init_params = {k: jnp.stack([v] * args.chains) for k, v in start.items()}
    mcmc = MCMC(
        NUTS(model, target_accept_prob=0.9),
        num_warmup=args.tune,
        num_samples=args.draws,
        num_chains=args.chains,
        chain_method="parallel",
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
    return wall, draws, float(np.mean(steps)), f"parallel on {jax.device_count()} devices"


def run_doc_model(X, K, args):
    import numpy as np
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
    post = idata["posterior"]
    draws = {
        "weights": post["weights"].values,
        "means": post["means"].values,
        "sds": np.stack([post[f"chol_cov_{k}_stds"].values for k in range(K)], axis=2),
        "corr": np.stack([post[f"chol_cov_{k}_corr"].values for k in range(K)], axis=2),
    }
    steps = float(idata["sample_stats"]["n_steps"].mean())
    return wall, draws, steps, f"pm.sample default, {tune_n}+{draws_n}"


def worker(args: argparse.Namespace) -> None:
    """One method on one workload in this (fresh) process; prints a JSON row."""
    method, workload = args.worker.split(":")
    if method == "numpyro":  # before JAX is imported anywhere
        import numpyro

        numpyro.set_host_device_count(args.chains)
        numpyro.enable_x64()
        import jax

        jax.config.update("jax_compilation_cache_dir", os.environ["BENCH_JAX_CACHE"])
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    import logging

    warnings.filterwarnings("ignore")
    logging.getLogger("pymc").setLevel(logging.ERROR)
    sys.path.insert(0, str(HERE))
    from bench_em import make_data

    n, K, D = WORKLOADS[workload]
    X = make_data(n, K, D, args.seed)
    em = em_reference(X, K, args.seed)
    if method == "numpyro":
        wall, draws, steps, note = run_numpyro(X, K, em, args)
    elif method == "pymc-doc":
        wall, draws, steps, note = run_doc_model(X, K, args)
    else:
        if method == "bayesgmm-units1":  # the coordinates' units stay ones (the bench only)
            import bayesgmm.inference.sampling as sampling

            sampling.set_coordinate_units = lambda *_: {}
        sampler = method.split("[")[1].rstrip("]") if "[" in method else "auto"
        wall, draws, steps, note = run_bayesgmm(X, K, args, sampler)
    ess, rhat = diagnostics(align(draws, em.means))
    row = {"wall": wall, "ess": ess, "rhat": rhat, "steps": steps, "note": note}
    print("ROW " + json.dumps(row), flush=True)


# -- driver ---------------------------------------------------------------------------------
def _spawn(method: str, workload: str, caches: Path, argv: list[str]) -> dict:
    env = dict(os.environ)
    caches.mkdir(parents=True, exist_ok=True)
    env["BAYESGMM_JAX_CACHE"] = str(caches / "jax")
    env["BENCH_JAX_CACHE"] = str(caches / "jax")
    env["PYTENSOR_FLAGS"] = f"compiledir={caches / 'pytensor'}"
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", f"{method}:{workload}"]
    t = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    rows = [line[4:] for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    if proc.returncode != 0 or not rows:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"{method} on {workload} failed (exit {proc.returncode})")
    row = json.loads(rows[-1])
    row["process"] = time.perf_counter() - t
    return row


def main(args: argparse.Namespace, argv: list[str]) -> None:
    names = ["small", "large"] if args.workload == "both" else [args.workload]
    phases = [p for p in args.phases.split(",") if p]
    methods = ["bayesgmm", *(f"bayesgmm[{s}]" for s in args.samplers.split(",") if s)]
    methods += ["bayesgmm-units1"] if args.units_one else []
    methods += [] if args.skip_numpyro else ["numpyro"]
    methods += ["pymc-doc"] if args.doc_model else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-caches-") as tmp:
        for workload in names:
            for phase in phases:
                for method in methods:
                    caches = Path(tmp) / workload / method
                    if phase == "cold" and caches.exists():
                        raise SystemExit("cold must come before warm")
                    row = _spawn(method, workload, caches, argv)
                    row.update(workload=workload, phase=phase, method=method)
                    rows.append(row)
                    print(
                        f"# {workload} {phase} {method}: {row['wall']:.1f} s, min ESS "
                        f"{row['ess']:.0f}, R-hat {row['rhat']:.3f}, steps {row['steps']:.1f}",
                        file=sys.stderr,
                        flush=True,
                    )
    _print_tables(rows, args)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


def _print_tables(rows, args) -> None:
    for phase in dict.fromkeys(r["phase"] for r in rows):
        print(f"\n{phase} caches")
        header = (
            f"{'workload':<9}{'method':<18}{'wall s':>8}{'min ESS':>9}{'max R-hat':>10}"
            f"{'ESS/s':>9}{'x numpyro':>10}{'steps':>7}  note"
        )
        print(header)
        print("-" * len(header))
        for r in (r for r in rows if r["phase"] == phase):
            base = [b for b in rows if b["phase"] == phase and b["workload"] == r["workload"]]
            peer = [b["ess"] / b["wall"] for b in base if b["method"] == "numpyro"]
            eps = r["ess"] / r["wall"]
            ratio = eps / peer[0] if peer else float("nan")
            print(
                f"{r['workload']:<9}{r['method']:<18}{r['wall']:>8.1f}{r['ess']:>9.0f}"
                f"{r['rhat']:>10.3f}{eps:>9.2f}{ratio:>10.2f}{r['steps']:>7.1f}  {r['note']}"
            )
    print(
        f"\n# draws={args.draws} tune={args.tune} chains={args.chains} seed={args.seed} "
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}; steps = mean leapfrog steps "
        "per draw; wall = fit (bayesgmm) or model-to-draws (numpyro), compile included"
    )


if __name__ == "__main__":
    ARGV = sys.argv[1:]
    ARGS = _parse_args(ARGV)
    if ARGS.worker:
        worker(ARGS)
    else:
        main(ARGS, ARGV)
