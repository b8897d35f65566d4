"""Label switching: relabel posterior draws, and label-invariant summaries.

A mixture's posterior is symmetric under permutations of the component labels, so
chains may settle in different labellings (or switch mid-run) and then per-component
R-hat, ESS and trace plots mean nothing. :func:`relabel` finds, for every draw of
every chain, the permutation that puts it in one common labelling and applies it to
every variable with a ``component`` dimension.

Conventions
-----------
* A permutation is stored as ``perm[chain, draw, k] = j``: the relabelled component
  ``k`` is the sampler's (raw) component ``j`` of that draw, i.e.
  ``relabelled[..., k] = raw[..., perm[k]]``.
* The relabelled tree keeps the sampler's raw draws: ``posterior`` holds the relabelled
  draws (what users and ArviZ see by default), ``posterior_raw`` the raw ones, and the
  group ``relabel`` holds ``permutation`` (chain, draw, component) and ``n_permuted``
  (chain). Relabelling a tree that already has ``posterior_raw`` starts again from the
  raw draws.
* Components that known labels name (a semi-supervised fit, :mod:`bayesgmm.core.labels`)
  keep their numbers; only the others are permuted.
* Variables without a ``component`` dimension (the tied family's ``sds`` and
  ``chol_corr``, for example) are left as they are.

Label-invariant summaries need no relabelling: the co-clustering probability
(:func:`bayesgmm.co_clustering`) and the posterior predictive density
(:func:`bayesgmm.score_samples`).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from scipy.optimize import linear_sum_assignment

from bayesgmm.core.checks import integer
from bayesgmm.core.data import check_new_data
from bayesgmm.core.draws import (
    draw_arrays,
    missing_of,
    training_data,
    training_labels,
    training_weights,
)
from bayesgmm.core.families import family
from bayesgmm.core.predict import draw_log_densities, membership_blocks
from bayesgmm.exceptions import ConfigError, DataError

__all__ = [
    "RELABEL_METHODS",
    "RelabelInfo",
    "relabel",
]

RELABEL_METHODS = ("pivot", "stephens")


@dataclass
class RelabelInfo:
    """What :func:`relabel` did.

    Attributes
    ----------
    method : {"pivot", "stephens"}
    permutations : ndarray of shape (n_chains, n_draws, n_components)
        ``permutations[c, d, k]`` is the raw component that became component ``k``.
    n_permuted : ndarray of shape (n_chains,)
        Number of draws per chain whose labels were changed.
    n_iter : int
        Stephens iterations (0 for pivot).
    converged : bool
        Whether Stephens' iteration stopped because no permutation changed
        (always True for pivot).
    n_points : int
        Points used for Stephens' membership probabilities (0 for pivot).
    reference : dict
        The pivot: ``weights`` (K,), ``means`` (K, D), ``covariances`` (K, D, D), and
        ``source`` ("given" or "max-likelihood draw").
    """

    method: str
    permutations: np.ndarray
    n_permuted: np.ndarray
    n_iter: int = 0
    converged: bool = True
    n_points: int = 0
    reference: dict[str, Any] = field(default_factory=dict)

    @property
    def n_draws(self) -> int:
        """Draws per chain."""
        return int(self.permutations.shape[1])

    def __str__(self) -> str:
        per_chain = ", ".join(
            f"chain {c}: {n}/{self.n_draws}" for c, n in enumerate(self.n_permuted.tolist())
        )
        extra = ""
        if self.method == "stephens":
            state = "converged" if self.converged else "NOT converged (raise max_iter)"
            iters = f"{self.n_iter} iteration{'s' * (self.n_iter != 1)}"
            extra = f"; {iters}, {state}, {self.n_points} points"
        return f"relabel({self.method}{extra}) draws permuted: {per_chain}"


# --------------------------------------------------------------------------- #
# helpers
# --------------------------------------------------------------------------- #


def _posterior_raw(idata: xr.DataTree) -> xr.Dataset:
    groups = set(idata.children)
    if "posterior_raw" in groups:
        return idata["posterior_raw"].to_dataset()
    if "posterior" not in groups:
        raise DataError(
            "the DataTree has no 'posterior' group; pass the result of sampling "
            "(e.g. BayesianGMM(...).fit(X).idata_ or sample_posterior(...))."
        )
    return idata["posterior"].to_dataset()


def _reference_from(reference, K: int, D: int) -> dict[str, np.ndarray]:
    if hasattr(reference, "covariance_matrices"):  # EMResult
        ref = {
            "weights": reference.weights,
            "means": reference.means,
            "covariances": reference.covariance_matrices(),
        }
    elif isinstance(reference, Mapping):
        missing = [k for k in ("weights", "means", "covariances") if k not in reference]
        if missing:
            raise ConfigError(
                f"reference dict lacks {missing}; give weights (K,), means (K, D) and "
                "covariances (K, D, D), or an EMResult."
            )
        ref = {k: reference[k] for k in ("weights", "means", "covariances")}
    else:
        raise ConfigError(
            f"reference must be an EMResult or a dict with weights, means and covariances; "
            f"got {type(reference).__name__}."
        )
    out = {k: np.asarray(v, dtype=float) for k, v in ref.items()}
    shapes = {"weights": (K,), "means": (K, D), "covariances": (K, D, D)}
    bad = [f"{k} {out[k].shape} (expected {s})" for k, s in shapes.items() if out[k].shape != s]
    if bad:
        raise ConfigError(
            f"reference shapes do not match the posterior's K={K}, D={D}: {', '.join(bad)}."
        )
    return out


def draw_log_likelihood(idata: xr.DataTree) -> np.ndarray | None:
    """Each draw's total log-likelihood, (chain, draw): the ``log_likelihood`` group's
    ``x`` summed over its points (NaN terms skipped, as xarray's ``sum``; weighted by the
    fit's frequency weights, :func:`~bayesgmm.core.draws.training_weights`, when it has
    them), or None when the tree has none. One pass of numpy's ``sum`` (xarray's
    NaN-skipping sum makes two more passes over the (chain, draw, point) array)."""
    if "log_likelihood" not in idata.children or "x" not in idata["log_likelihood"]:
        return None
    ll = idata["log_likelihood"]["x"]
    w = training_weights(idata)
    if w is not None:
        ll = ll * xr.DataArray(w, dims=("obs",))
    values = ll.to_numpy()  # as laid out: summed as xarray sums it
    other = tuple(i for i, d in enumerate(ll.dims) if d not in ("chain", "draw"))
    total = values.sum(axis=other)
    if np.isnan(total).any():
        total = np.nansum(values, axis=other)
    return total if ll.dims.index("chain") < ll.dims.index("draw") else total.T


def _total_loglik(idata: xr.DataTree, post: xr.Dataset, X: np.ndarray | None) -> np.ndarray:
    """Total log-likelihood of every draw, (C, S)."""
    total = draw_log_likelihood(idata)
    if total is not None:
        return total
    if X is None:
        raise DataError("no log_likelihood group; pass X to choose the pivot draw.")
    return draw_log_densities(post, X).sum(axis=-1)


def _observed_X(idata: xr.DataTree, X, post: xr.Dataset) -> np.ndarray:
    names = [str(f) for f in post["feature"].to_numpy()]
    if X is None:
        X = training_data(idata)
        if X is None:
            raise DataError("no observed_data group in the DataTree; pass X explicitly.")
    return check_new_data(X, len(names), names, missing=missing_of(idata))


def _kl_cost(means: np.ndarray, covs: np.ndarray, ref: Mapping[str, np.ndarray]) -> np.ndarray:
    """``KL(N(draw component j) || N(reference component k))`` for every draw, (S, K, K).

    ``cost[s, j, k]``: j the draw's raw component, k the reference's.
    """
    D = means.shape[-1]
    ref_chol = np.linalg.cholesky(ref["covariances"])  # (K, D, D)
    ref_chol_inv = np.swapaxes(family("full").prec_chol(ref_chol), -1, -2)  # L_k^{-1} = U_k^T
    ref_logdet = 2.0 * np.log(np.diagonal(ref_chol, axis1=-2, axis2=-1)).sum(-1)  # (K,)
    sign, draw_logdet = np.linalg.slogdet(covs)  # (S, K)
    # a draw's covariance can be numerically singular (D = 50 from 60 points): its log
    # determinant is the same for every k, so it cannot change the assignment; 0 there
    draw_logdet = np.where((sign > 0) & np.isfinite(draw_logdet), draw_logdet, 0.0)
    # tr(Sigma_k^{-1} Sigma_j) = tr(L_k^{-1} Sigma_j L_k^{-T}) (no factor of the draw's)
    trace = np.einsum("kab,sjbc,kac->sjk", ref_chol_inv, covs, ref_chol_inv, optimize=True)
    diff = means[:, :, None, :] - ref["means"][None, None, :, :]  # (S, j, k, D)
    maha = np.sum(np.einsum("kab,sjkb->sjka", ref_chol_inv, diff) ** 2, axis=-1)
    return 0.5 * (trace + maha - D + ref_logdet[None, None, :] - draw_logdet[:, :, None])


def _assign(cost: np.ndarray, fixed: np.ndarray | None = None) -> np.ndarray:
    """Optimal permutation per draw from ``cost[s, raw j, new k]``: ``perm[s, k] = j``.

    Up to ``_ENUMERATE_K`` components every permutation is scored at once (K! columns);
    above, one ``linear_sum_assignment`` per draw. Components in ``fixed`` (those known
    labels name) keep their labels; the others are permuted among themselves.
    """
    S, K, _ = cost.shape
    free = np.arange(K) if fixed is None else np.setdiff1d(np.arange(K), fixed)
    perm = np.tile(np.arange(K), (S, 1))
    if free.size < 2:
        return perm
    if free.size < K:
        sub = _assign(cost[:, free][:, :, free])  # (S, free): indices into free
        perm[:, free] = free[sub]
        return perm
    if K <= _ENUMERATE_K:
        perms = np.array(list(itertools.permutations(range(K))))  # (P, K): perms[p, k] = j
        total = cost[:, perms, np.arange(K)].sum(axis=-1)  # (S, P)
        return perms[np.argmin(total, axis=1)]
    for s in range(S):
        raw, new = linear_sum_assignment(cost[s])
        perm[s, new] = raw
    return perm


_ENUMERATE_K = 6


def _permute(arr: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """``out[s, k] = arr[s, perm[s, k]]`` for ``arr`` (S, K, ...) and ``perm`` (S, K).

    One gather of whole rows ``arr[s, j]`` (what ``np.take_along_axis`` over axis 1 gives,
    without its element-by-element index arrays); ``arr`` itself when no draw is permuted.
    """
    S, K = perm.shape
    if (perm == np.arange(K)).all():
        return arr
    rows = (np.arange(S)[:, None] * K + perm).ravel()
    return np.ascontiguousarray(arr).reshape(S * K, -1)[rows].reshape(arr.shape)


def _stephens(
    P: list[np.ndarray], perm: np.ndarray, max_iter: int, fixed=None
) -> tuple[np.ndarray, int, bool]:
    """Stephens (2000): minimise sum_s KL(P_s permuted || Q) over per-draw permutations.

    ``P`` the membership probabilities (S, K, N) as consecutive blocks of draws
    (:func:`~bayesgmm.core.predict.membership_blocks`), ``perm`` (S, K) the starting
    permutations. The entropy of ``P_s`` does not depend on the permutation, so the cost
    of sending raw component j to label k is ``-sum_i P_s[j, i] log Q[k, i]``.
    """
    tiny = np.finfo(float).tiny
    edges = np.cumsum([0, *(len(p) for p in P)])
    for it in range(1, max_iter + 1):
        pieces = zip(P, edges[:-1], edges[1:], strict=True)
        Q = sum(_permute(p, perm[a:b]).sum(axis=0) for p, a, b in pieces)
        log_q = np.log(np.maximum(Q / edges[-1], tiny))  # (K, N)
        cost = np.concatenate([-np.matmul(p, log_q.T) for p in P])  # (S, j, k)
        new = _assign(cost, fixed)
        if np.array_equal(new, perm):
            return perm, it, True
        perm = new
    return perm, max_iter, False


def _apply(post: xr.Dataset, perm: np.ndarray) -> xr.Dataset:
    """Permute the ``component`` axis of every variable that has one."""
    out = post.copy()
    C, S, K = perm.shape
    flat = perm.reshape(C * S, K)
    for name, da in post.data_vars.items():
        if "component" not in da.dims:
            continue
        axes = [da.dims.index(d) for d in ("chain", "draw", "component")]
        arr = np.moveaxis(da.to_numpy(), axes, [0, 1, 2])  # (chain, draw, component, ...)
        rows = arr.reshape(C * S, *arr.shape[2:])
        new = _permute(rows, flat)
        new = (new.copy() if new is rows else new).reshape(arr.shape)  # never the raw data
        out[name] = da.copy(data=np.moveaxis(new, [0, 1, 2], axes))
    return out


# --------------------------------------------------------------------------- #
# public API
# --------------------------------------------------------------------------- #


def relabel(
    idata: xr.DataTree,
    reference=None,
    method: str = "pivot",
    X=None,
    *,
    max_points: int = 500,
    max_iter: int = 100,
    random_seed: int | None = 0,
) -> tuple[xr.DataTree, RelabelInfo]:
    """Put every draw of every chain in one labelling of the components.

    Parameters
    ----------
    idata : xarray.DataTree
        Sampler output with a ``posterior`` group holding ``weights`` (component),
        ``means`` (component, feature) and ``covariance`` (component, feature,
        feature_bis), as produced by :func:`bayesgmm.sample_posterior`.
    reference : EMResult or dict, optional
        The pivot solution: an :class:`~bayesgmm.EMResult` or a dict with ``weights``
        (K,), ``means`` (K, D) and ``covariances`` (K, D, D) in the data's units. By
        default the posterior draw with the highest log-likelihood (the "pivotal
        reordering" of Marin, Mengersen & Robert 2005). :class:`~bayesgmm.BayesianGMM`
        passes its EM solution.
    method : {"pivot", "stephens"}, default="pivot"
        ``"pivot"``: per draw, the assignment (``scipy.optimize.linear_sum_assignment``)
        of the draw's components to the reference's that minimises the summed
        Kullback-Leibler divergence ``KL(N(mu_j, Sigma_j) || N(mu_ref_k, Sigma_ref_k))``.
        ``"stephens"``: Stephens' (2000) algorithm, started from the pivot labelling:
        average the relabelled membership probabilities ``p(z_i = k | x_i, theta)``
        over draws to ``Q``, then per draw choose the permutation minimising
        ``KL(P_draw || Q)``; repeat until no permutation changes.
    X : array-like of shape (n_samples, n_features), optional
        Data for Stephens' membership probabilities; by default the ``observed_data``.
    max_points : int, default=500
        Stephens uses a random subsample of this many points when there are more
        (the memberships of a few hundred points pin the labels down; the cost grows as
        draws x points).
    max_iter : int, default=100
        Cap on Stephens' iterations; ``RelabelInfo.converged`` says whether it was hit.
    random_seed : int, optional
        Seed of the point subsample.

    Returns
    -------
    relabelled : xarray.DataTree
        A new tree (the input is not modified): ``posterior`` relabelled,
        ``posterior_raw`` the sampler's draws, ``relabel`` with ``permutation``
        (chain, draw, component) and ``n_permuted`` (chain); other groups shared.
    info : RelabelInfo

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> w = np.array([[[0.3, 0.7], [0.7, 0.3]]])           # 1 chain, 2 draws, K=2
    >>> mu = np.array([[[[0.0], [5.0]], [[5.0], [0.0]]]])  # second draw swapped
    >>> post = xr.Dataset({
    ...     "weights": (("chain", "draw", "component"), w),
    ...     "means": (("chain", "draw", "component", "feature"), mu),
    ...     "covariance": (("chain", "draw", "component", "feature", "feature_bis"),
    ...                    np.ones((1, 2, 2, 1, 1))),
    ... }, coords={"feature": ["x"], "feature_bis": ["x"]})
    >>> ref = {"weights": [0.3, 0.7], "means": [[0.0], [5.0]], "covariances": np.ones((2, 1, 1))}
    >>> tree, info = relabel(xr.DataTree.from_dict({"posterior": post}), reference=ref)
    >>> tree["posterior"]["means"].values[0, :, :, 0]
    array([[0., 5.],
           [0., 5.]])
    >>> info.n_permuted
    array([1])
    """
    if method not in RELABEL_METHODS:
        raise ConfigError(f"unknown relabel method {method!r}; valid: {list(RELABEL_METHODS)}.")
    for name, value, lo in (("max_points", max_points, 2), ("max_iter", max_iter, 1)):
        if not integer(lo)(value):
            raise ConfigError(f"{name} must be an integer >= {lo}; got {value!r}.")
    post = _posterior_raw(idata)
    w, mu, cov = draw_arrays(post)
    C, S, K = w.shape
    D = mu.shape[-1]
    flat_mu, flat_cov = mu.reshape(C * S, K, D), cov.reshape(C * S, K, D, D)
    if reference is None:
        Xobs = _observed_X(idata, X, post) if "log_likelihood" not in idata.children else None
        c, s = np.unravel_index(np.argmax(_total_loglik(idata, post, Xobs)), (C, S))
        ref = {"weights": w[c, s], "means": mu[c, s], "covariances": cov[c, s]}
        source = f"max-likelihood draw (chain {int(c)}, draw {int(s)})"
    else:
        ref = _reference_from(reference, K, D)
        source = "given"
    labels = training_labels(idata)  # known labels: their components keep their numbers
    fixed = None if labels is None else np.unique(labels[labels >= 0])
    perm = _assign(_kl_cost(flat_mu, flat_cov, ref), fixed)
    n_iter, converged, n_points = 0, True, 0
    if method == "stephens":
        Xs = _observed_X(idata, X, post)
        if Xs.shape[0] > max_points:
            rng = np.random.default_rng(random_seed)
            Xs = Xs[np.sort(rng.choice(Xs.shape[0], max_points, replace=False))]
        n_points = Xs.shape[0]
        P = membership_blocks(post, Xs, 1 << 21)  # blocks of 2 MB
        perm, n_iter, converged = _stephens(P, perm, max_iter, fixed)
    perm = perm.reshape(C, S, K)
    n_permuted = (perm != np.arange(K)).any(axis=-1).sum(axis=1)
    relabelled = _apply(post, perm)
    out = idata.copy()
    out["posterior"] = relabelled
    out["posterior_raw"] = post
    coords = {"chain": post["chain"], "draw": post["draw"]}
    if "component" in post.coords:
        coords["component"] = post["component"]
    out["relabel"] = xr.Dataset(
        {
            "permutation": (("chain", "draw", "component"), perm),
            "n_permuted": (("chain",), n_permuted),
        },
        coords=coords,
        attrs={
            "method": method,
            "n_iter": n_iter,
            "converged": int(converged),
            "reference": source,
        },
    )
    info = RelabelInfo(
        method=method,
        permutations=perm,
        n_permuted=n_permuted,
        n_iter=n_iter,
        converged=converged,
        n_points=n_points,
        reference={**ref, "source": source},
    )
    return out, info
