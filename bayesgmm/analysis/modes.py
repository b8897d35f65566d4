"""Chains in different posterior modes: found label-invariantly, described, stacked.

A mixture's posterior often has local modes besides the label permutations (a component
that empties, two clusters merged into one): a chain that moves into one, during or
after tuning, stays there, and pooling it with the others gives a posterior that is
neither. This module

* **finds** the modes (:func:`find_modes`) from label-invariant quantities only -- the
  total log-likelihood of each draw and its component weights sorted by size -- so that
  label switching is never mistaken for a mode. Every chain is cut into blocks of
  consecutive draws (a chain can move mid-run); two blocks *agree* when every such
  quantity's block means differ by at most ``threshold`` within-block sds (the smaller
  of the two blocks'; weights that differ by less than ``MIN_SHARE_CHANGE`` always
  agree: emptied components of an overfitted mixture wander near zero). Blocks, in order
  of log-likelihood, join the first mode whose first block they agree with; then modes
  whose pooled draws are not ``threshold`` sds apart are merged (a chain that drifts
  slowly through one mode splits into overlapping pieces, which this joins again).
  Blocks of one mode differ by ``~1 / sqrt(ESS per block)`` sds;
* **describes** each mode: which chains (and from which draw), the mean log-likelihood,
  and the components' shares of the points (posterior mean weights, relabelled) that
  differ most from the best mode's;
* **stacks** them (Yao, Vehtari & Gelman 2022, "Stacking for non-mixing Bayesian
  computations: the curse and blessing of multimodal posteriors", JMLR 23): each mode's
  draws are a candidate predictive distribution, scored by PSIS-LOO, and the stacking
  weights maximise the leave-one-out log score of their mixture (ArviZ's
  ``compare(method="stacking")``). The stacked posterior (:func:`stack_modes`) is the
  chains that stayed in the one mode that received weight (at least ``MIN_WEIGHT``);
  when several modes do, their draws are pooled into one sequence in proportion to the
  weights. Every sampled chain stays in the group ``posterior_chains``; the group
  ``modes`` records the modes, their weights and what was done.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from bayesgmm.core.relabel import draw_log_likelihood

__all__ = ["Mode", "ModeReport", "find_modes", "mode_posterior", "stack_modes"]

#: Block means further apart than this many pooled within-block sds do not agree.
MODE_THRESHOLD = 4.0
#: Sorted weights closer than this (a share of the points) always agree.
MIN_SHARE_CHANGE = 0.02
#: Blocks per chain (fewer for short chains: at least MIN_BLOCK draws each).
BLOCKS = 10
MIN_BLOCK = 25
#: Modes whose stacking weight is below this get no draws in the stacked posterior.
MIN_WEIGHT = 0.01


@dataclass
class Mode:
    """One posterior mode: its blocks of draws, stacking weight, the components' shares."""

    blocks: list[tuple[int, int, int]]  # (chain, first draw, stop)
    n_draws: dict[int, int]  # chain -> draws in this mode
    mean_loglik: float
    shares: np.ndarray  # (K,) posterior mean weight of each (relabelled) component
    weight: float = float("nan")  # stacking weight (nan: not stacked)

    def whole_chains(self, S: int) -> list[int]:
        """Chains all of whose ``S`` draws are in this mode."""
        return [c for c, n in self.n_draws.items() if n == S]

    def where(self, S: int) -> str:
        """``"chains 0, 2"``, ``"chain 1 from draw 600"``, ``"chains 0, 2 and chain 1's
        draws 0-599"``..."""
        whole = [str(c) for c in sorted(self.n_draws) if self.n_draws[c] == S]
        parts = [f"chain{'s' if len(whole) > 1 else ''} {', '.join(whole)}"] if whole else []
        for c in sorted(c for c in self.n_draws if self.n_draws[c] < S):
            merged: list[tuple[int, int]] = []
            for a, b in sorted((a, b) for cc, a, b in self.blocks if cc == c):
                if merged and merged[-1][1] == a:
                    merged[-1] = (merged[-1][0], b)
                else:
                    merged.append((a, b))
            spans = ", ".join(
                f"from draw {a}" if b == S else f"draws {a}-{b - 1}" for a, b in merged
            )
            parts.append(
                f"chain {c} {spans}" if spans.startswith("from") else f"chain {c}'s {spans}"
            )
        return " and ".join(parts)


@dataclass
class ModeReport:
    """What :func:`find_modes` (and :func:`stack_modes`) found and did."""

    modes: list[Mode]
    n_chains: int
    n_draws: int
    separation: float  # smallest z between two modes' pooled draws (the gap)
    action: str = "none"  # "none", "stacked", "reported"
    notes: list[str] = field(default_factory=list)

    @property
    def multimodal(self) -> bool:
        return len(self.modes) > 1

    def describe(self) -> str:
        """Plain-language account: the modes, their chains, shares and what was done."""
        C, S = self.n_chains, self.n_draws
        if not self.multimodal:
            return f"all {C} chains in one mode"
        parts = []
        first = self.modes[0]
        for i, m in enumerate(self.modes, 1):
            share = sum(m.n_draws.values()) / (C * S)
            text = (
                f"mode {i}: {m.where(S)} ({100 * share:.0f}% of the draws), mean "
                f"log-likelihood {m.mean_loglik:.1f}"
            )
            if i > 1:
                text += "; " + _share_changes(m.shares, first.shares)
            if np.isfinite(m.weight):
                text += f"; stacking weight {m.weight:.3f}"
            parts.append(text)
        return "; ".join(parts) + "."


def _share_changes(shares: np.ndarray, ref: np.ndarray) -> str:
    """The components whose share of the points differs most from mode 1's, emptiest
    first (at most two)."""
    diff = np.abs(shares - ref)
    changed = [int(k) for k in np.argsort(shares) if diff[k] >= 0.05][:2] or [int(np.argmax(diff))]
    parts = [f"{100 * shares[k]:.0f}% (mode 1: {100 * ref[k]:.0f}%)" for k in changed]
    first = f"component {changed[0]} holds {parts[0].replace(' (', ' of the points (', 1)}"
    rest = [f"component {k} {p}" for k, p in zip(changed[1:], parts[1:], strict=True)]
    return ", ".join([first, *rest])


def _signatures(idata: xr.DataTree) -> np.ndarray:
    """Label-invariant per-draw quantities, (C, S, Q): total log-likelihood, sorted weights."""
    post = idata["posterior"]
    cols = []
    total = draw_log_likelihood(idata)
    if total is not None:
        cols.append(total[..., None])
    if "weights" in post:
        w = post["weights"].transpose("chain", "draw", "component").to_numpy()
        cols.append(-np.sort(-w, axis=-1))
    return np.concatenate(cols, axis=-1)


def _blocks(S: int) -> list[tuple[int, int]]:
    n = max(1, min(BLOCKS, S // MIN_BLOCK))
    edges = np.linspace(0, S, n + 1).round().astype(int)
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def find_modes(idata: xr.DataTree, threshold: float = MODE_THRESHOLD) -> ModeReport:
    """Group the chains' draws by posterior mode, label-invariantly (see the module
    docstring).

    Parameters
    ----------
    idata : xarray.DataTree
        A fit's tree: ``posterior`` (with ``weights``) and ``log_likelihood``; the
        components' shares are read from the (relabelled) ``posterior``.
    threshold : float
        In within-block sds.

    Returns
    -------
    ModeReport
        Modes ordered by mean log-likelihood, highest first.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> rng = np.random.default_rng(0)
    >>> w = np.tile([0.5, 0.3, 0.2], (4, 200, 1)) + rng.normal(0, 0.01, (4, 200, 3))
    >>> w[3, 100:] = [0.6, 0.38, 0.02]  # chain 3 from draw 100: the third component empty
    >>> ll = rng.normal(-500, 2, (4, 200, 1)); ll[3, 100:] -= 40
    >>> tree = xr.DataTree.from_dict({
    ...     "posterior": xr.Dataset({"weights": (("chain", "draw", "component"), w)}),
    ...     "log_likelihood": xr.Dataset({"x": (("chain", "draw", "obs"), ll)})})
    >>> report = find_modes(tree)
    >>> [m.where(200) for m in report.modes]
    ["chains 0, 1, 2 and chain 3's draws 0-99", 'chain 3 from draw 100']
    """
    sig = _signatures(idata)
    C, S, _ = sig.shape
    spans = _blocks(S)
    blocks = [(c, a, b) for c in range(C) for a, b in spans]
    means = np.array([sig[c, a:b].mean(axis=0) for c, a, b in blocks])
    sds = np.array([sig[c, a:b].std(axis=0, ddof=1) for c, a, b in blocks])
    floor = np.zeros(sig.shape[-1])
    floor[sig.shape[-1] - _n_weights(idata) :] = MIN_SHARE_CHANGE
    z = _pairwise_z(means, sds, floor)
    # greedy: blocks in order of log-likelihood join the first mode whose first block
    # they agree with
    label = np.empty(len(blocks), dtype=int)
    seeds: list[int] = []
    for i in np.argsort(-means[:, 0]):
        for m, j in enumerate(seeds):
            if z[i, j] <= threshold:
                label[i] = m
                break
        else:
            label[i] = len(seeds)
            seeds.append(i)
    label, separation = _merge_overlapping(sig, blocks, label, floor, threshold)
    n_modes = int(label.max()) + 1
    weights = idata["posterior"]["weights"].transpose("chain", "draw", "component").to_numpy()
    modes = []
    for m in range(n_modes):
        mine = [blocks[i] for i in range(len(blocks)) if label[i] == m]
        n_draws: dict[int, int] = {}
        for c, a, b in mine:
            n_draws[c] = n_draws.get(c, 0) + (b - a)
        draws = np.concatenate([sig[c, a:b, 0] for c, a, b in mine])
        shares = np.concatenate([weights[c, a:b] for c, a, b in mine]).mean(axis=0)
        modes.append(Mode(mine, n_draws, float(draws.mean()), shares))
    modes.sort(key=lambda mode: -mode.mean_loglik)
    return ModeReport(modes, C, S, float(separation))


def _merge_overlapping(sig, blocks, label, floor, threshold) -> tuple[np.ndarray, float]:
    """Merge modes whose pooled draws are not ``threshold`` sds apart (the smaller of the
    two modes' sds): a chain that drifts slowly through one mode splits into greedy
    modes that overlap as a whole. Closest pair first, until none is left. Returns the
    labels and the smallest z left between two modes (0 for one mode)."""
    label = label.copy()
    while label.max() > 0:
        pooled = [
            np.concatenate(
                [sig[c, a:b] for (c, a, b), m in zip(blocks, label, strict=True) if m == k]
            )
            for k in range(label.max() + 1)
        ]
        means = np.array([p.mean(axis=0) for p in pooled])
        sds = np.array([p.std(axis=0, ddof=1) for p in pooled])
        z = _pairwise_z(means, sds, floor)
        np.fill_diagonal(z, np.inf)
        i, j = np.unravel_index(np.argmin(z), z.shape)
        if z[i, j] > threshold:
            return label, float(z[i, j])
        keep, gone = min(i, j), max(i, j)
        label[label == gone] = keep
        label[label > gone] -= 1
    return label, 0.0


def _n_weights(idata: xr.DataTree) -> int:
    post = idata["posterior"]
    return int(post["weights"].sizes["component"]) if "weights" in post else 0


def _pairwise_z(means: np.ndarray, sds: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """(B, B): the largest |block mean difference| over the quantities, in the smaller
    of the two blocks' sds; differences below ``floor`` count as none."""
    diff = np.abs(means[:, None] - means[None, :])
    # the smaller sd: a block in which a chain moves between modes has a wide sd and
    # must not bridge the two
    scale = np.minimum(sds[:, None], sds[None, :])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(scale > 0, diff / scale, np.where(diff > 0, np.inf, 0.0))
    z = np.where(diff < floor, 0.0, z)
    return z.max(axis=-1)


def _mode_draws(ds: xr.Dataset, mode: Mode) -> xr.Dataset:
    """The draws of one mode, pooled into one chain."""
    pieces = [ds.isel(chain=[c], draw=slice(a, b)) for c, a, b in mode.blocks]
    pooled = xr.concat(
        [p.drop_vars(["chain", "draw"], errors="ignore") for p in pieces], dim="draw"
    )
    return pooled.assign_coords(chain=[0], draw=np.arange(pooled.sizes["draw"]))


def mode_posterior(chains: xr.Dataset, modes: xr.Dataset, index: int) -> xr.Dataset:
    """Mode ``index``'s draws as (chain, draw), from the sampled chains and the ``modes``
    group: the chains that stayed in it, else its longest run of blocks as one chain."""
    block_mode = modes["block_mode"].values
    starts = [*modes["block_start"].values.tolist(), chains.sizes["draw"]]
    whole = [c for c in range(block_mode.shape[0]) if np.all(block_mode[c] == index)]
    if whole:
        return chains.isel(chain=whole)
    best = (0, 0, 0)  # (length, chain, first block)
    for c in range(block_mode.shape[0]):
        run = 0
        for b in range(block_mode.shape[1]):
            run = run + 1 if block_mode[c, b] == index else 0
            if run and starts[b + 1] - starts[b - run + 1] > best[0]:
                best = (starts[b + 1] - starts[b - run + 1], c, b - run + 1)
    length, c, first = best
    return chains.isel(chain=[c], draw=slice(starts[first], starts[first] + length))


def stacking_weights(idata: xr.DataTree, report: ModeReport) -> np.ndarray:
    """Stacking weights of the modes (PSIS-LOO of each mode's draws)."""
    import warnings

    import arviz_stats as azs

    candidates = {}
    for i, mode in enumerate(report.modes):
        groups = {
            name: _mode_draws(idata[name].to_dataset(), mode)
            for name in ("posterior", "log_likelihood")
        }
        candidates[f"mode {i}"] = xr.DataTree.from_dict(groups)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pareto-k warnings are reported by the PPC/LOO step
        table = azs.compare(candidates, method="stacking")
    return np.array([float(table.loc[name, "weight"]) for name in candidates])


def stack_modes(idata: xr.DataTree, report: ModeReport) -> xr.DataTree:
    """The stacked posterior (see the module docstring); ``report`` gets the weights.

    The returned tree's ``posterior`` and ``log_likelihood`` hold the stacked draws;
    ``posterior_chains`` and ``log_likelihood_chains`` every sampled chain; ``modes``
    each chain's mode per block (``block_mode``, 0 for none) and each mode's stacking
    weight (``weight``).
    """
    weights = stacking_weights(idata, report)
    for mode, w in zip(report.modes, weights, strict=True):
        mode.weight = float(w)
    report.action = "stacked"
    S = report.n_draws
    kept = [i for i, w in enumerate(weights) if w >= MIN_WEIGHT]
    whole = report.modes[kept[0]].whole_chains(S) if len(kept) == 1 else []
    pick: list[tuple[int, int]] = []  # (chain, draw) of the pooled draws
    if len(whole) >= 2:
        left_out = report.n_chains - len(whole)
        what = f"The stacked posterior is mode {kept[0] + 1}'s {len(whole)} whole chains" + (
            f"; {left_out} chain(s) that left it are kept in posterior_chains" if left_out else ""
        )
    else:
        # each kept mode's draws, evenly thinned, in proportion to its weight: the mode
        # with the most weight per draw keeps all of its draws
        per_draw = {i: float(weights[i]) / sum(report.modes[i].n_draws.values()) for i in kept}
        top = max(per_draw.values())
        for i in kept:
            flat = [(c, d) for c, a, b in report.modes[i].blocks for d in range(a, b)]
            n = round(per_draw[i] / top * len(flat))
            pick += [flat[f] for f in np.linspace(0, len(flat) - 1, n).round().astype(int)]
        what = f"The stacked posterior pools {len(pick)} draws of mode(s) " + ", ".join(
            str(i + 1) for i in kept
        )
    report.notes.append(what)
    out = idata.copy()
    for name in ("posterior", "log_likelihood"):
        ds = idata[name].to_dataset()
        out[f"{name}_chains"] = ds
        if not pick:
            out[name] = ds.isel(chain=whole).assign_coords(chain=np.arange(len(whole)))
        else:
            c_idx = xr.DataArray([c for c, _ in pick], dims="pick")
            d_idx = xr.DataArray([d for _, d in pick], dims="pick")
            pooled = ds.isel(chain=c_idx, draw=d_idx).drop_vars(["chain", "draw"], errors="ignore")
            pooled = pooled.rename({"pick": "draw"}).expand_dims(chain=[0])
            out[name] = pooled.assign_coords(draw=np.arange(pooled.sizes["draw"]))
    out["modes"] = mode_group(report, weights, what)
    return out


def mode_group(report: ModeReport, weights, what: str) -> xr.Dataset:
    """The ``modes`` group: each block's mode, each mode's weight, the description."""
    spans = _blocks(report.n_draws)
    block_mode = np.zeros((report.n_chains, len(spans)), dtype=int)
    for i, mode in enumerate(report.modes):
        for c, a, _ in mode.blocks:
            block_mode[c, [s[0] for s in spans].index(a)] = i + 1
    return xr.Dataset(
        {
            "block_mode": (("chain", "block"), block_mode),
            "block_start": ("block", [a for a, _ in spans]),
            "weight": ("mode_index", np.asarray(weights, dtype=float)),
        },
        coords={"mode_index": np.arange(1, len(report.modes) + 1)},
        attrs={"action": report.action, "description": f"{report.describe()} {what}."},
    )
