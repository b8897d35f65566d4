"""Simulation-based calibration (Talts et al. 2018) of bayesgmm's whole fitting pipeline.

Draw parameters from the prior, data from those parameters, fit with
``BayesianGMM`` (EM start, NUTS, relabelling), and record the rank of each true
parameter among thinned posterior draws. If the posterior is right, every rank is
uniform on ``0 .. n_ranks``.

Mixture components have no identity, so the ranked quantities are label-invariant:
components are put in increasing order of their mean on the first feature, in every
posterior draw and in the truth alike. A rank of any function of the parameters is
uniform under a correct posterior, so this ordering is exact (no alignment to the
truth, which would bias the ranks towards the middle).

The priors must be fixed (not ``"auto"``, which reads the data), so :func:`run_sbc`
takes explicit priors; :data:`SBC_PRIORS` are the defaults used by the tests and
``bench/run_sbc.py``.

Any covariance family can be calibrated (``covariance_type``), with or without a
background-noise component of a given volume (``noise``). The true parameters are drawn
in numpy (:func:`~bayesgmm.workflows.sbc_prior.draw_prior`), independently of the PyMC
model, so a calibration also checks the model's prior density (for mclust's families: a
volume, a log shape and a uniformly distributed rotation) against these draws.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from bayesgmm.core.background import check_noise
from bayesgmm.core.checks import child_sequence
from bayesgmm.core.families import family
from bayesgmm.core.priors import Prior
from bayesgmm.estimator.estimator import BayesianGMM
from bayesgmm.exceptions import ConfigError
from bayesgmm.workflows.sbc_prior import SBC_PRIORS, draw_prior, sbc_priors, simulate

__all__ = [
    "SBC_PRIORS",
    "SBCResult",
    "draw_prior",
    "rank_uniformity",
    "run_sbc",
    "simulate",
]


def invariant_quantities(
    weights: np.ndarray,
    means: np.ndarray,
    sds: np.ndarray,
    corr: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Label-invariant quantities: components ordered by the mean of feature 0.

    Arrays have a leading batch of draws: weights (S, K), means/sds (S, K, D),
    corr (S, K, D, D). Returns name -> (S,) arrays, e.g. ``means[1,0]`` is the first
    feature's mean of the component with the second-smallest first-feature mean.
    ``corr=None`` (a family without correlations) leaves the correlations out.
    """
    order = np.argsort(means[:, :, 0], axis=1)
    take = np.take_along_axis
    w = take(weights, order, axis=1)
    mu = take(means, order[:, :, None], axis=1)
    sd = take(sds, order[:, :, None], axis=1)
    K, D = mu.shape[1:]
    out = {f"weights[{k}]": w[:, k] for k in range(K)}
    out.update({f"means[{k},{d}]": mu[:, k, d] for k in range(K) for d in range(D)})
    out.update({f"sds[{k},{d}]": sd[:, k, d] for k in range(K) for d in range(D)})
    if D > 1 and corr is not None:
        r = take(corr, order[:, :, None, None], axis=1)
        i, j = np.tril_indices(D, k=-1)
        out.update(
            {
                f"corr[{k},{a}{b}]": r[:, k, a, b]
                for k in range(K)
                for a, b in zip(i, j, strict=True)
            }
        )
    return out


@dataclass
class SBCResult:
    """Ranks of the true parameters among thinned posterior draws.

    Attributes
    ----------
    ranks : DataFrame
        One row per successful simulation, one column per quantity; values in
        ``0 .. n_ranks``.
    n_ranks : int
        Thinned posterior draws per simulation (ranks take ``n_ranks + 1`` values).
    fits : DataFrame
        Per simulation: seed, status, divergences, max R-hat, min bulk ESS, seconds.
    settings : dict
    """

    ranks: pd.DataFrame
    n_ranks: int
    fits: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def uniformity(self, bins: int = 10) -> pd.DataFrame:
        """χ² test of uniform ranks per quantity; see :func:`rank_uniformity`."""
        return rank_uniformity(self.ranks, self.n_ranks, bins=bins)

    def plot(self, bins: int = 10):
        """Rank histograms with a 99% band for each bin's count; returns the figure."""
        import matplotlib.pyplot as plt

        names = list(self.ranks.columns)
        ncol = min(4, len(names))
        nrow = -(-len(names) // ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 2.2 * nrow), squeeze=False)
        n = len(self.ranks)
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1.0 / bins)
        pvals = self.uniformity(bins)["p_value"]
        for ax, name in zip(axes.flat, names, strict=False):
            counts = _binned(self.ranks[name].to_numpy(), self.n_ranks, bins)
            ax.bar(np.arange(bins), counts, width=0.9, color="C0")
            ax.axhspan(lo, hi, color="0.85", zorder=0)
            ax.set_title(f"{name}  p={pvals[name]:.2f}", fontsize=9)
            ax.set_xticks([])
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.suptitle(f"SBC rank histograms ({n} simulations, {self.n_ranks} draws each)")
        fig.tight_layout()
        return fig


def _binned(ranks: np.ndarray, n_ranks: int, bins: int) -> np.ndarray:
    # ranks 0..n_ranks are n_ranks + 1 equally likely values; bins of (nearly) equal mass
    edges = np.linspace(0, n_ranks + 1, bins + 1)
    return np.histogram(ranks + 0.5, bins=edges)[0]


def rank_uniformity(ranks: pd.DataFrame, n_ranks: int, bins: int = 10) -> pd.DataFrame:
    """χ² goodness-of-fit of binned ranks to the uniform distribution, per quantity.

    ``(n_ranks + 1)`` must be divisible by ``bins`` for exactly equal bin
    probabilities; otherwise bins are as equal as the rank values allow and the
    expected counts are computed exactly.

    Returns
    -------
    DataFrame indexed by quantity with ``chi2``, ``p_value`` and ``p_adjusted``
    (Bonferroni over the quantities).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> r = pd.DataFrame({"a": rng.integers(0, 100, 500)})
    >>> float(rank_uniformity(r, 99)["p_value"].iloc[0]) > 0.01
    True
    """
    edges = np.linspace(0, n_ranks + 1, bins + 1)
    values = np.arange(n_ranks + 1) + 0.5
    expected_p = np.histogram(values, bins=edges)[0] / (n_ranks + 1)
    rows = {}
    for name in ranks.columns:
        counts = _binned(ranks[name].to_numpy(), n_ranks, bins)
        chi2, p = stats.chisquare(counts, expected_p * counts.sum())
        rows[name] = {"chi2": chi2, "p_value": p}
    out = pd.DataFrame.from_dict(rows, orient="index")
    out["p_adjusted"] = np.minimum(out["p_value"] * len(out), 1.0)
    return out


def _posterior_invariants(gmm) -> dict[str, np.ndarray]:
    post = gmm.idata_["posterior"]
    _K, _D = gmm.spec_.n_components, gmm.spec_.n_features
    stacked = {}
    for name in ("weights", "means", "sds"):
        arr = post[name].values
        stacked[name] = arr.reshape(-1, *arr.shape[2:])
    corr = None
    if "correlation" in post:
        arr = post["correlation"].values
        corr = arr.reshape(-1, *arr.shape[2:])
    out = invariant_quantities(stacked["weights"], stacked["means"], stacked["sds"], corr)
    if "noise_weight" in post:
        out["noise_weight"] = post["noise_weight"].values.reshape(-1)
    return out


def _thin_per_chain(n_chains: int, n_draws: int, n_ranks: int) -> np.ndarray:
    """Indices into chain-major flattened draws: ``n_ranks`` spread evenly over chains."""
    per_chain = -(-n_ranks // n_chains)
    idx = np.concatenate(
        [
            c * n_draws + np.linspace(0, n_draws - 1, per_chain).round().astype(int)
            for c in range(n_chains)
        ]
    )
    return idx[:n_ranks]


def run_sbc(
    n_sims: int,
    *,
    n_obs: int = 100,
    n_components: int = 2,
    n_features: int = 1,
    covariance_type: str = "full",
    priors: Mapping[str, Any] | None = None,
    draws: int = 500,
    tune: int = 500,
    chains: int = 2,
    n_ranks: int = 99,
    random_seed: int = 0,
    em: Mapping[str, Any] | None = None,
    progress: bool = False,
    noise: float | None = None,
) -> SBCResult:
    """Run simulation-based calibration of ``BayesianGMM(n_components, covariance_type)``.

    Parameters
    ----------
    n_sims : int
        Simulations (prior draw -> data -> fit -> ranks).
    n_obs, n_components, n_features : int
    covariance_type : str, default="full"
        Any family (scikit-learn's or mclust's names); see :func:`draw_prior` for where
        the true parameters come from.
    priors : dict, optional
        Fixed priors merged over :data:`SBC_PRIORS` (no ``"auto"`` parameters).
    draws, tune, chains : int
        Sampler settings of each fit (NumPyro when installed: one compiled sampler
        serves every simulation, see :mod:`bayesgmm.inference.jaxnuts`). Chains in
        different posterior modes are recorded (``multimodal="report"``), not stacked:
        the ranks are those of the posterior itself.
    n_ranks : int
        Thinned posterior draws the truth is ranked among (evenly spaced in each
        chain); ``draws * chains`` should be several times larger so that they are
        nearly independent.
    random_seed : int
        Simulation ``i`` uses ``SeedSequence(random_seed).spawn(n_sims)[i]``
        (:func:`bayesgmm.core.checks.child_sequence`) for its
        parameters, data and sampler.
    em : dict, optional
        EM settings for the start (default ``{"n_init": 3}``).
    noise : float, optional
        Calibrate ``BayesianGMM(..., noise=noise)``, a background-noise component of this
        volume: the data have a share ``noise_weight`` (drawn from its prior) of points
        uniform on a box of that volume centred on the means' prior mean, and
        ``noise_weight`` is ranked too. A volume, not True: the bounding box of each
        simulated data set would make the background depend on the data.

    Returns
    -------
    SBCResult
    """
    priors, _ = sbc_priors(priors, n_components, n_features, covariance_type)
    if noise is not None:
        if isinstance(noise, bool):
            raise ConfigError(f"noise must be None or a positive volume for SBC; got {noise!r}.")
        check_noise(noise, np.empty((0, n_features)))  # a volume: no data are read
    if draws * chains < n_ranks:
        raise ConfigError(f"draws * chains = {draws * chains} < n_ranks = {n_ranks}.")
    fam = family(covariance_type)
    rank_rows, fit_rows = [], []
    for i in range(n_sims):
        rng = np.random.default_rng(child_sequence(random_seed, i))
        theta = draw_prior(n_components, n_features, priors, rng, covariance_type, noise)
        X = simulate(theta, n_obs, rng)
        seed = int(rng.integers(2**31 - 1))
        start = time.perf_counter()
        gmm = BayesianGMM(
            n_components,
            covariance_type,
            priors=priors,
            sampler={
                "draws": draws,
                "tune": tune,
                "chains": chains,
                "random_seed": seed,
                "progressbar": False,
                # ranks need the posterior itself: modes are recorded, never stacked
                "multimodal": "report",
            },
            em=dict(em or {"n_init": 3}),
            noise=False if noise is None else noise,
        )
        row: dict[str, Any] = {"sim": i, "seed": seed}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                gmm.fit(X)
        except Exception as exc:  # recorded; a failed simulation is reported, not hidden
            row.update(status=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - start)
            fit_rows.append(row)
            continue
        truth = invariant_quantities(
            theta["weights"][None],
            theta["means"][None],
            theta["sds"][None],
            theta["correlation"][None] if fam.correlated else None,
        )
        if noise is not None:
            truth["noise_weight"] = np.atleast_1d(theta["noise_weight"])
        draws_q = _posterior_invariants(gmm)
        post = gmm.idata_["posterior"]
        keep = _thin_per_chain(post.sizes["chain"], post.sizes["draw"], n_ranks)
        ranks = {name: int(np.sum(draws_q[name][keep] < truth[name][0])) for name in truth}
        rank_rows.append({"sim": i, **ranks})
        report = gmm.diagnostics_
        tree = gmm.idata_
        row.update(
            status="ok",
            verdict=report.verdict,
            modes=int(tree["modes"].sizes["mode_index"]) if "modes" in tree.children else 1,
            divergences=int(gmm.idata_["sample_stats"]["diverging"].sum()),
            max_rhat=float(report.parameters["r_hat"].max()),
            min_ess_bulk=float(report.parameters["ess_bulk"].min()),
            seconds=time.perf_counter() - start,
        )
        fit_rows.append(row)
        if progress:
            print(f"sbc {i + 1}/{n_sims}: {row['seconds']:.1f} s {report.verdict}", flush=True)
    ranks = pd.DataFrame(rank_rows).set_index("sim") if rank_rows else pd.DataFrame()
    settings = {
        "n_sims": n_sims,
        "n_obs": n_obs,
        "n_components": n_components,
        "n_features": n_features,
        "covariance_type": covariance_type,
        "priors": {
            k: (v.to_dict() if isinstance(v, Prior) else dict(v)) for k, v in priors.items()
        },
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "random_seed": random_seed,
        "noise": noise,
    }
    return SBCResult(ranks, n_ranks, pd.DataFrame(fit_rows).set_index("sim"), settings)
