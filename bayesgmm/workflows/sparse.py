"""Sparse finite mixtures: how many components the data use, from one overfitted fit.

One deliberately overfitted mixture with a small Dirichlet concentration (Rousseau &
Mengersen 2011; Malsiner-Walli, Frühwirth-Schnatter & Grün 2016), whose superfluous
components empty out; the posterior of the number of non-empty components is
label-invariant (:func:`bayesgmm.count_nonempty`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from numpy.typing import ArrayLike

from bayesgmm.core.checks import check_mapping, check_seed, real
from bayesgmm.core.data import check_data
from bayesgmm.core.predict import count_nonempty
from bayesgmm.core.priors import Prior
from bayesgmm.estimator.estimator import BayesianGMM
from bayesgmm.exceptions import ConfigError, SamplingWarning

__all__ = ["SPARSE_CONCENTRATION", "SparseMixtureResult", "sparse_mixture"]

#: Default Dirichlet concentration of :func:`sparse_mixture` (Malsiner-Walli et al. 2016).
SPARSE_CONCENTRATION = 0.01


@dataclass
class SparseMixtureResult:
    """Result of :func:`sparse_mixture`.

    Attributes
    ----------
    counts : DataArray of int, dims (chain, draw)
        Non-empty components per draw (:func:`count_nonempty`).
    distribution : Series
        Posterior probability of each number of non-empty components (index: the
        count; values sum to 1).
    mode : int
        Most probable number of non-empty components.
    concentration : float
        The Dirichlet concentration used.
    estimator : BayesianGMM
        The fitted overfitted mixture.
    """

    counts: xr.DataArray = field(repr=False)
    distribution: pd.Series
    mode: int
    concentration: float
    estimator: Any = field(repr=False)


def sparse_mixture(
    X: ArrayLike,
    n_components: int = 8,
    *,
    concentration: float = SPARSE_CONCENTRATION,
    covariance_type: str = "full",
    priors: Mapping[str, Any] | None = None,
    sampler: Mapping[str, Any] | None = None,
    em: Mapping[str, Any] | None = None,
    random_seed: int = 0,
) -> SparseMixtureResult:
    """Fit a deliberately overfitted sparse finite mixture and count its non-empty components.

    The weights get a symmetric ``Dirichlet(concentration)`` prior with a small
    concentration, so superfluous components are emptied rather than used to split
    clusters: Rousseau & Mengersen (2011) show that with a concentration below
    ``d/2`` (``d`` = parameters per component) the extra components' weights go to
    zero; Malsiner-Walli, Frühwirth-Schnatter & Grün (2016, *Statistics and Computing*
    26, 303-324) recommend a very small fixed value such as ``e0 = 0.01`` (or a
    Gamma hyperprior on it) for clustering. The fixed value 0.01 is used here.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    n_components : int, default=8
        The deliberately generous number of components.
    concentration : float, default=0.01
        Dirichlet concentration ``e0 > 0`` of every component's weight.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    priors : dict, optional
        Other prior overrides (a ``weights`` entry here is an error: use
        ``concentration``).
    sampler, em : dict, optional
        As for :class:`~bayesgmm.BayesianGMM`; ``random_seed`` overrides the sampler's.
    random_seed : int, default=0

    Returns
    -------
    SparseMixtureResult
        The posterior distribution of the number of non-empty components, its mode, and
        the fitted overfitted estimator.

    Examples
    --------
    >>> from bayesgmm.core.datasets import load_faithful
    >>> quick = {"draws": 300, "tune": 300, "chains": 2}
    >>> res = sparse_mixture(load_faithful(), 6, sampler=quick, random_seed=1)  # doctest: +SKIP
    >>> res.mode  # doctest: +SKIP
    2
    """
    if not real(0, lo_open=True)(concentration):
        raise ConfigError(f"concentration must be a positive number; got {concentration!r}.")
    if priors is not None and "weights" in priors:
        raise ConfigError(
            "sparse_mixture sets the weights prior itself; pass `concentration` instead of "
            "priors['weights']."
        )
    seed = check_seed(random_seed)
    check_mapping(sampler, "sampler")
    gmm = BayesianGMM(
        n_components,
        covariance_type=covariance_type,
        priors={**dict(priors or {}), "weights": Prior("Dirichlet", a=float(concentration))},
        sampler={"progressbar": False, **dict(sampler or {}), "random_seed": seed},
        em=em,
    )
    with warnings.catch_warnings():
        # per-component R-hat is meaningless for emptied components that wander
        # over their prior; the label-invariant count is what is reported
        warnings.simplefilter("ignore", SamplingWarning)
        gmm.fit(X)
    X_arr, _ = check_data(X)
    counts = count_nonempty(X_arr, gmm.idata_)
    values, freq = np.unique(counts.values, return_counts=True)
    dist = pd.Series(freq / freq.sum(), index=pd.Index(values, name="n_nonempty"), name="prob")
    return SparseMixtureResult(
        counts=counts,
        distribution=dist,
        mode=int(values[np.argmax(freq)]),
        concentration=float(concentration),
        estimator=gmm,
    )
