"""Benchmark: where a W1 fit's time goes -- sampling against each post-processing stage.

W1 is ``bench_sampling.py``'s small workload (N=1,000, K=3, D=2, well-separated clusters
from ``bench_em.make_data``), fitted with ``BayesianGMM(3).fit(X)`` and default settings
(NumPyro backend, 4 chains x 1,000 tuning + 1,000 draws). One process runs a first fit
(what a script or a new notebook kernel does after ``from bayesgmm import BayesianGMM``:
JAX, PyMC and ArviZ imported by the fit, the sampler loaded from JAX's persistent cache
when it has it, else compiled), as ``bench_sampling.py`` times a fit, and then ``--warm``
more fits (the compiled sampler reused). Each stage is timed by wrapping the function
that does it, once the fit has imported its module:

``before sampling``
    EM, the model, the starts, finding the compiled sampler: from the start of ``fit`` to
    the chains' first step.
``sampling``
    The NUTS chains (``_Chains.advance``); the chains' initialisation counts before.
``post_fn``
    The constrained draws and the pointwise log-likelihood, in JAX, chunk by chunk
    (``_Chains.outputs``; with code that has no such method, inside the next row).
``DataTree``
    ``_posterior_tree`` less ``post_fn``: gathering the sample stats, ArviZ's
    ``from_dict`` and the ``log_likelihood`` group.
``relabel``, ``modes``, ``stacking``, ``diagnostics``
    ``finish_posterior``'s relabelling (Stephens, the default), ``find_modes``,
    ``stack_modes`` (only when chains settled in different modes), and the diagnostics
    ``fit`` makes at its end.
``other post``
    Whatever else runs between the chains' last step and the end of ``fit`` (in a first
    fit: importing ArviZ's statistics for the diagnostics).
``imports before`` / ``imports in post``
    The fit's module imports (every import the process makes during the fit, timed
    where it is loaded), before the chains' last step and after it: parts of the rows
    above, not added to them.

The table gives the first fit and the median of the later ones, in seconds and as a
share of the fit; the post-processing total is everything after the chains' last step.
``summary()`` (not part of ``fit``) is timed after it. ``--profile`` prints cProfile's top
functions of one more later fit, ``--profile-first`` those of the first fit.
``--without-dask`` runs as an install without the ``dask`` extra: when dask is installed,
xarray imports it on the process's first DataArray, which is the first fit's ``DataTree``
stage.

Run::

    python bench/bench_postprocess.py
    python bench/bench_postprocess.py --warm 5 --profile
    python bench/bench_postprocess.py --without-dask --profile-first
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
POST_STAGES = ("post_fn", "DataTree", "relabel", "modes", "stacking", "diagnostics")
IMPORTS = ("imports before", "imports in post")  # parts of the rows above, not extra


class Timers:
    """Wraps functions so that each call adds its wall time to a stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.first_step: float | None = None
        self.last_step: float | None = None

    def reset(self) -> None:
        self.seconds.clear()
        self.first_step = self.last_step = None

    def wrap(self, owner, name: str, stage: str, *, chains: bool = False) -> None:
        original = getattr(owner, name, None)
        if original is None:  # code without this function: its time shows elsewhere
            return

        def timed(*args, **kwargs):
            t = time.perf_counter()
            if chains and self.first_step is None:
                self.first_step = t
            try:
                return original(*args, **kwargs)
            finally:
                end = time.perf_counter()
                self.seconds[stage] += end - t
                if chains:
                    self.last_step = end

        setattr(owner, name, timed)


class _AfterImport:
    """A finder that runs ``hooks[name](module)`` once module ``name`` is imported, and
    times every import (the outermost ones: ``spans``), so that the first fit imports
    what a user's first fit imports, when it would, and the table can say how long."""

    def __init__(self, hooks: dict) -> None:
        self.hooks, self.spans, self.depth = hooks, [], 0

    def find_spec(self, name, path, target=None):
        from importlib.abc import FileLoader

        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        if isinstance(spec.loader, FileLoader):  # one loader per module
            run, hook = spec.loader.exec_module, self.hooks.pop(name, None)

            def exec_module(module):
                self.depth += 1
                t = time.perf_counter()
                try:
                    run(module)
                finally:
                    self.depth -= 1
                    if self.depth == 0:
                        self.spans.append((t, time.perf_counter()))
                if hook is not None:
                    hook(module)

            spec.loader.exec_module = exec_module
        return spec


def install(timers: Timers) -> _AfterImport:
    """Wrap the stages' functions, each when its module is imported (by the first fit, as
    in a user's process: ``from bayesgmm import BayesianGMM`` imports none of them)."""

    def jaxnuts(m):
        timers.wrap(m._Chains, "advance", "sampling", chains=True)
        timers.wrap(m._Chains, "outputs", "post_fn")
        timers.wrap(m, "_posterior_tree", "_posterior_tree")

    def modes(m):
        timers.wrap(m, "find_modes", "modes")
        timers.wrap(m, "stack_modes", "stacking")

    hooks = {
        "bayesgmm.inference.jaxnuts": jaxnuts,
        "bayesgmm.estimator.posterior": lambda m: timers.wrap(m, "relabel", "relabel"),
        "bayesgmm.analysis.modes": modes,
        "bayesgmm.analysis.diagnostics": lambda m: timers.wrap(m, "diagnose", "diagnostics"),
    }
    for name in [n for n in hooks if n in sys.modules]:
        hooks.pop(name)(sys.modules[name])
    clock = _AfterImport(hooks)
    sys.meta_path.insert(0, clock)
    return clock


def timed_fit(X, K: int, seed: int, timers: Timers, clock: _AfterImport):
    from bayesgmm import BayesianGMM

    timers.reset()
    clock.spans.clear()
    t0 = time.perf_counter()
    gmm = BayesianGMM(K, sampler={"random_seed": seed, "progressbar": False}).fit(X)
    end = time.perf_counter()
    s = dict(timers.seconds)
    s["DataTree"] = s.pop("_posterior_tree", 0.0) - s.get("post_fn", 0.0)
    row = {"fit": end - t0, "before sampling": timers.first_step - t0}
    row["sampling"] = s.get("sampling", 0.0)
    row.update({stage: s.get(stage, 0.0) for stage in POST_STAGES})
    row["post-processing"] = end - timers.last_step
    row["other post"] = row["post-processing"] - sum(row[stage] for stage in POST_STAGES)
    last = timers.last_step
    row[IMPORTS[0]] = sum(min(b, last) - a for a, b in clock.spans if a < last)
    row[IMPORTS[1]] = sum(b - max(a, last) for a, b in clock.spans if b > last)
    return gmm, row


def _table(columns: dict[str, list[dict[str, float]]]) -> str:
    """Each column: the median of its fits' stages, in seconds and as a share of the fit."""
    import numpy as np

    med = {
        name: {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
        for name, rows in columns.items()
    }
    order = ["before sampling", "sampling", *POST_STAGES, "other post", "post-processing", "fit"]

    def line(k: str) -> str:
        return f"{k:<18}" + "".join(
            f"{m[k]:>16.3f}{100 * m[k] / m['fit']:>6.1f}%" for m in med.values()
        )

    head = "".join(f"{name + ' s':>16}{'%':>7}" for name in med)
    lines = [f"{'stage':<18}{head}"]
    for k in order:
        if k in ("post-processing", "fit"):
            lines.append("-" * len(lines[0]))
        lines.append(line(k))
    lines.append("of which module imports (the fit's first imports of jax, pymc, arviz...):")
    lines.extend(line(k) for k in IMPORTS)
    return "\n".join(lines)


def _maybe_profiled(profile: bool, lines: int, fn, *args):
    """``fn(*args)``; with ``profile``, under cProfile, printing its top ``lines``
    functions by cumulative time."""
    if not profile:
        return fn(*args)
    import cProfile
    import pstats

    prof = cProfile.Profile()
    result = prof.runcall(fn, *args)
    pstats.Stats(prof).sort_stats("cumulative").print_stats(lines)
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=0, help="data seed (as bench_sampling.py)")
    p.add_argument("--fit-seed", type=int, default=1)
    p.add_argument("--warm", type=int, default=3, help="fits after the first one")
    p.add_argument("--profile", action="store_true", help="cProfile one more later fit")
    p.add_argument("--profile-first", action="store_true", help="cProfile the first fit")
    p.add_argument(
        "--without-dask", action="store_true",
        help="as an install without the dask extra: xarray's first object of a process "
        "imports dask when it is installed, inside the first fit's post-processing",
    )  # fmt: skip
    args = p.parse_args(argv)
    if args.without_dask:
        sys.modules["dask"] = None  # import dask raises ImportError, as when not installed
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(HERE))
    from bench_em import make_data

    X = make_data(1_000, 3, 2, args.seed)
    timers = Timers()
    clock = install(timers)
    run = (X, 3, args.fit_seed, timers, clock)
    _, cold = _maybe_profiled(args.profile_first, 60, timed_fit, *run)
    warm = [timed_fit(*run)[1] for _ in range(args.warm)]
    print(f"W1 (N=1,000, K=3, D=2), BayesianGMM(3).fit(X), defaults; fit seed {args.fit_seed}")
    print(
        f"first fit of the process: {cold['fit']:.2f} s; then {len(warm)} fits: "
        f"{', '.join(f'{r["fit"]:.2f}' for r in warm)} s (their median per stage)"
    )
    print(_table({"first fit": [cold], "later fits": warm} if warm else {"first fit": [cold]}))
    gmm, _ = timed_fit(*run)
    t = time.perf_counter()
    gmm.summary()
    print(f"summary() after the fit: {time.perf_counter() - t:.3f} s")
    if args.profile:
        _maybe_profiled(True, 40, timed_fit, *run)


if __name__ == "__main__":
    main()
