"""Access to posterior draws: the posterior Dataset, its arrays, the training data.

Every consumer of posterior draws -- predictions, relabelling, the pointwise
log-likelihood, the posterior predictive, counts of non-empty components -- reads them
here, in the data's units: ``weights`` (chain, draw, component), ``means`` (chain, draw,
component, feature) and ``covariance`` (chain, draw, component, feature, feature_bis),
present for every covariance family, given as an ``xarray.DataTree`` (its ``posterior``
group is used) or as the posterior ``xarray.Dataset`` itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import xarray as xr

from bayesgmm.core.checks import integer, optional
from bayesgmm.core.families import FAMILIES
from bayesgmm.exceptions import ConfigError, DataError, DegenerateFitError

__all__ = [
    "Draws",
    "draw_arrays",
    "example_posterior",
    "missing_of",
    "posterior_dataset",
    "thin",
    "training_data",
    "training_index",
    "training_labels",
    "training_noise",
    "training_weights",
    "with_row_index",
]

_REQUIRED = {
    "weights": ("component",),
    "means": ("component", "feature"),
    "covariance": ("component", "feature", "feature_bis"),
}
_MAX_DRAWS = optional(integer(1))


def posterior_dataset(posterior) -> xr.Dataset:
    """The posterior Dataset of a DataTree (or the Dataset itself), checked for the
    variables and dims every consumer needs."""
    if posterior is None:
        raise DataError("no posterior given; fit the model first (BayesianGMM.fit).")
    if isinstance(posterior, xr.DataTree):
        if "posterior" not in posterior.children:
            raise DataError(
                "the DataTree has no 'posterior' group; pass the result of fit/sample_posterior."
            )
        posterior = posterior["posterior"].to_dataset()
    if not isinstance(posterior, xr.Dataset):
        raise DataError(
            f"posterior must be an xarray DataTree or Dataset; got {type(posterior).__name__}."
        )
    missing = [v for v in _REQUIRED if v not in posterior]
    if missing:
        raise DataError(
            f"the posterior lacks variable(s) {missing}; it needs 'weights', 'means' and "
            "'covariance' in the data's units (as bayesgmm.build_model records them)."
        )
    for name, core in _REQUIRED.items():
        dims = set(posterior[name].dims)
        if dims != {"chain", "draw", *core}:
            raise DataError(
                f"posterior[{name!r}] has dims {posterior[name].dims}; expected "
                f"('chain', 'draw', {', '.join(repr(d) for d in core)})."
            )
    return posterior


def draw_arrays(post: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-draw ``weights`` (C, S, K), ``means`` (C, S, K, D), ``covariance`` (C, S, K, D, D)."""
    missing = [v for v in _REQUIRED if v not in post]
    if missing:
        raise DataError(
            f"the posterior lacks {missing}; it must come from bayesgmm.build_model "
            "(variables weights, means and covariance in the data's units)."
        )
    w = post["weights"].transpose("chain", "draw", "component").to_numpy()
    mu = post["means"].transpose("chain", "draw", "component", "feature").to_numpy()
    cov = (
        post["covariance"]
        .transpose("chain", "draw", "component", "feature", "feature_bis")
        .to_numpy()
    )
    return w, mu, cov


def with_row_index(tree: xr.DataTree, X) -> xr.DataTree:
    """``tree`` with the training DataFrame's row index as the ``obs`` coordinate of its
    groups (as PyMC users name the observations), when ``X`` is a DataFrame whose index
    is unique, not ``0..n-1``, and of numbers, strings or dates; else ``tree`` itself.

    Examples
    --------
    >>> import pandas as pd
    >>> tree = xr.DataTree.from_dict({"observed_data": xr.Dataset(
    ...     {"x": (("obs", "feature"), np.zeros((2, 1)))})})
    >>> df = pd.DataFrame({"a": [1.0, 2.0]}, index=[10, 4])
    >>> training_index(with_row_index(tree, df)).tolist()
    [10, 4]
    """
    import pandas as pd

    if not isinstance(X, pd.DataFrame) or not X.index.is_unique:
        return tree
    if X.index.equals(pd.RangeIndex(len(X))):
        return tree
    values = X.index.to_numpy()
    if values.dtype == object and all(isinstance(v, str) for v in values):
        values = values.astype(str)
    if values.dtype.kind not in "iufUM":
        return tree
    out = tree.copy()
    for name, child in tree.children.items():
        if "obs" in child.dims and child.sizes["obs"] == len(values):
            out[name] = child.to_dataset().assign_coords(obs=values)
    return out


def training_index(tree):
    """The training rows' index (a pandas Index: :func:`with_row_index`'s), or None when
    the training data had the default one (``0..n-1``) or ``tree`` has none."""
    import pandas as pd

    if not isinstance(tree, xr.DataTree) or "observed_data" not in tree.children:
        return None
    obs = tree["observed_data"].to_dataset()
    if "obs" not in obs.coords:
        return None
    index = pd.Index(obs["obs"].to_numpy())
    return None if index.equals(pd.RangeIndex(len(index))) else index


def training_data(tree) -> np.ndarray | None:
    """The training data of a DataTree (``observed_data`` variable ``x``) as (obs, feature),
    with NaN where a fit with ``missing="marginalize"`` had missing values.

    ``None`` when ``tree`` is not a DataTree or holds no training data.
    """
    if not isinstance(tree, xr.DataTree) or "observed_data" not in tree.children:
        return None
    obs = tree["observed_data"].to_dataset()
    if "x" not in obs:
        return None
    X = obs["x"].transpose("obs", "feature").to_numpy()
    if "constant_data" in tree.children and "missing_mask" in tree["constant_data"].data_vars:
        # a fit with missing values: their entries were stored as placeholders
        mask = tree["constant_data"]["missing_mask"].transpose("obs", "feature").to_numpy()
        X = np.where(mask.astype(bool), np.nan, X)
    return X


def training_weights(tree) -> np.ndarray | None:
    """The frequency weights of the training rows (``constant_data`` variable
    ``sample_weight``, (obs,)), or ``None`` when the fit was unweighted (or ``tree`` is
    not a DataTree)."""
    if not isinstance(tree, xr.DataTree) or "constant_data" not in tree.children:
        return None
    data = tree["constant_data"].to_dataset()
    return data["sample_weight"].to_numpy() if "sample_weight" in data else None


def training_noise(tree) -> np.ndarray | None:
    """The training rows' measurement-error covariances (``constant_data`` variable
    ``noise_cov``, (obs, D, D)), or ``None`` for a fit without them."""
    if not isinstance(tree, xr.DataTree) or "constant_data" not in tree.children:
        return None
    data = tree["constant_data"].to_dataset()
    return data["noise_cov"].to_numpy() if "noise_cov" in data else None


def training_labels(tree) -> np.ndarray | None:
    """The training rows' known labels (``constant_data`` variable ``labels``, (obs,), -1
    for unknown), or ``None`` for a fit without them (:mod:`bayesgmm.core.labels`)."""
    if not isinstance(tree, xr.DataTree) or "constant_data" not in tree.children:
        return None
    data = tree["constant_data"].to_dataset()
    return data["labels"].to_numpy().astype(np.int64) if "labels" in data else None


def missing_of(posterior) -> str:
    """How the fit treated NaN: ``"marginalize"`` when its posterior says so (attribute
    ``missing``) or its training data has missing values, else ``"error"``. Predictions
    accept partially observed points from such fits."""
    if isinstance(posterior, xr.DataTree) and "posterior" in posterior.children:
        attrs = posterior["posterior"].attrs
    else:
        attrs = getattr(posterior, "attrs", {})
    if attrs.get("missing") == "marginalize":
        return "marginalize"
    X = training_data(posterior)
    return "marginalize" if X is not None and np.isnan(X).any() else "error"


def thin(ds: xr.Dataset, max_draws: int | None) -> xr.Dataset:
    """Keep at most about ``max_draws`` draws in total, evenly spaced within each chain."""
    if not _MAX_DRAWS(max_draws):
        raise ConfigError(f"max_draws must be a positive integer or None; got {max_draws!r}.")
    if max_draws is None:
        return ds
    n_chain, n_draw = ds.sizes["chain"], ds.sizes["draw"]
    per_chain = max(1, int(max_draws) // n_chain)
    if per_chain >= n_draw:
        return ds
    step = math.ceil(n_draw / per_chain)
    return ds.isel(draw=slice(None, None, step))


@dataclass
class Draws:
    """Posterior draws flattened over (chain, draw): what :class:`bayesgmm.core.engine.Stream`
    and the generative functions read."""

    log_weights: np.ndarray  # (S, K)
    means: np.ndarray  # (S, K, D)
    covariance: np.ndarray  # (S, K, D, D)
    center: np.ndarray  # (D,): subtracted from points and means (less cancellation)
    n_chain: int
    n_draw: int
    coords: dict
    feature_names: list[str]
    #: With a background-noise component (:mod:`bayesgmm.core.background`): its weight's
    #: log ``log w_0`` per draw (S,); ``log_weights`` are then the Gaussians'
    #: ``log((1 - w_0) w_k)``.
    log_noise_weight: np.ndarray | None = None
    #: That component's log density ``log(1 / V)`` (in the data's units), or None.
    background: float | None = None

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> Draws:
        w, mu, cov = draw_arrays(ds)
        C, R, K, D = mu.shape
        if not (np.isfinite(w).all() and np.isfinite(mu).all() and np.isfinite(cov).all()):
            raise DataError("the posterior draws contain NaN or infinite values.")
        with np.errstate(divide="ignore"):
            log_w = np.log(np.asarray(w, dtype=np.float64).reshape(C * R, K))
        log_w0 = background = None
        if "noise_weight" in ds:  # weights: the Gaussians' shares of the clustered points
            w0 = ds["noise_weight"].transpose("chain", "draw").to_numpy().reshape(C * R)
            if "background" not in ds.attrs:
                raise DataError(
                    "the posterior has a noise_weight but no 'background' attribute (the "
                    "background's log density log(1 / V)); it must come from bayesgmm."
                )
            background = float(ds.attrs["background"])
            with np.errstate(divide="ignore"):
                log_w, log_w0 = log_w + np.log1p(-w0)[:, None], np.log(w0)
        mu = np.asarray(mu, dtype=np.float64).reshape(C * R, K, D)
        coords = {
            "chain": ds["chain"].to_numpy(),
            "draw": ds["draw"].to_numpy(),
            "component": ds["component"].to_numpy() if "component" in ds.coords else np.arange(K),
        }
        names = (
            [str(f) for f in ds["feature"].to_numpy()]
            if "feature" in ds.coords
            else [f"feature_{j}" for j in range(D)]
        )
        return cls(
            log_weights=log_w,
            means=mu,
            covariance=np.asarray(cov, dtype=np.float64).reshape(C * R, K, D, D),
            center=mu.mean(axis=(0, 1)),
            n_chain=C,
            n_draw=R,
            coords=coords,
            feature_names=names,
            log_noise_weight=log_w0,
            background=background,
        )

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_draws_total, n_components, n_features)``."""
        return self.means.shape

    @property
    def log_background(self) -> np.ndarray | None:
        """The background's weighted log density ``log w_0 + log(1 / V)`` per draw (S,),
        the last of K + 1 rows of memberships; None without a background."""
        if self.log_noise_weight is None:
            return None
        return self.log_noise_weight + self.background

    @property
    def n_rows(self) -> int:
        """Rows of memberships: the K components, and the background's when there is one."""
        return self.shape[1] + (self.log_noise_weight is not None)

    @property
    def row_coords(self) -> list:
        """The memberships' ``component`` coordinates: the components', then ``"noise"``
        for the background (when there is one)."""
        comps = list(np.asarray(self.coords["component"]).tolist())
        return comps if self.log_noise_weight is None else [*comps, "noise"]

    def marginal(self, obs: np.ndarray) -> Draws:
        """The draws' marginal mixture of the coordinates ``obs`` (an index array): the
        means' entries and the covariances' block (for partially observed points)."""
        cov = self.covariance[:, :, obs][:, :, :, obs]
        names = [self.feature_names[j] for j in obs]
        return replace(
            self, means=self.means[:, :, obs], covariance=cov, center=self.center[obs],
            feature_names=names,
        )  # fmt: skip

    def chol(self, lo: int, hi: int) -> np.ndarray:
        """Lower Cholesky factors of the covariances of draws ``lo:hi``, (s, K, D, D)."""
        try:
            return np.linalg.cholesky(self.covariance[lo:hi])
        except np.linalg.LinAlgError:
            for s in range(lo, hi):
                for k in range(self.shape[1]):
                    try:
                        np.linalg.cholesky(self.covariance[s, k])
                    except np.linalg.LinAlgError:
                        raise self._corrupt(s, k) from None
            raise

    def prec_chol(self, lo: int, hi: int) -> np.ndarray:
        """Upper precision factors ``U = L^{-T}`` of draws ``lo:hi``, (s, K, D, D)."""
        L = self.chol(lo, hi)
        s, K, D, _ = L.shape
        flat = L.reshape(s * K, D, D)
        try:
            U = FAMILIES["full"].prec_chol(flat)
        except DegenerateFitError:  # a factor with a zero or infinite diagonal
            with np.errstate(divide="ignore"):
                ok = np.isfinite(1.0 / np.diagonal(flat, axis1=1, axis2=2)).all(axis=1)
            bad = int(np.flatnonzero(~ok)[0])
            raise self._corrupt(lo + bad // K, bad % K) from None
        return U.reshape(s, K, D, D)

    def _corrupt(self, s: int, k: int) -> DegenerateFitError:
        chain, draw = divmod(s, self.n_draw)
        return DegenerateFitError(
            f"the covariance of component {k} at chain {chain}, draw {draw} is not positive "
            "definite; the posterior draws are corrupt or the sampler diverged. Re-run the "
            "sampler or drop those draws."
        )


def example_posterior(n_chain: int = 2, n_draw: int = 10, seed: int = 0) -> xr.Dataset:
    """A small synthetic 2-component, 2-feature posterior (for examples and tests).

    Examples
    --------
    >>> example_posterior()["means"].dims
    ('chain', 'draw', 'component', 'feature')
    """
    rng = np.random.default_rng(seed)
    shape = (n_chain, n_draw)
    w = np.stack([np.full(shape, 0.5), np.full(shape, 0.5)], axis=-1)
    w += rng.normal(scale=0.02, size=shape)[..., None] * np.array([1.0, -1.0])
    mu = np.array([[0.0, 0.0], [3.0, 3.0]]) + rng.normal(scale=0.05, size=(*shape, 2, 2))
    cov = np.broadcast_to(0.5 * np.eye(2), (*shape, 2, 2, 2)).copy()
    cov *= np.exp(rng.normal(scale=0.05, size=(*shape, 2, 1, 1)))
    return xr.Dataset(
        {
            "weights": (("chain", "draw", "component"), w),
            "means": (("chain", "draw", "component", "feature"), mu),
            "covariance": (("chain", "draw", "component", "feature", "feature_bis"), cov),
        },
        coords={
            "chain": np.arange(n_chain),
            "draw": np.arange(n_draw),
            "component": [0, 1],
            "feature": ["a", "b"],
            "feature_bis": ["a", "b"],
        },
    )
