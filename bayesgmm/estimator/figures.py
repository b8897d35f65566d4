"""``BayesianGMM``'s figures: the analysis tier's plots of the fitted posterior.

A mixin, so that the estimator's module keeps to fitting, predictions and persistence;
each method imports its plotting module when called (matplotlib is not needed to fit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["FigureMethods"]


class FigureMethods:
    """Plot methods of :class:`~bayesgmm.BayesianGMM` (they read ``idata_`` and the
    training data through the estimator's ``_data_or_train``)."""

    def plot_clusters(self, X=None, **kwargs: Any):
        """Data coloured by most probable cluster, with ellipses; :func:`bayesgmm.plot_clusters`."""
        from bayesgmm.analysis.clusters import plot_clusters

        return plot_clusters(self.idata_, self._data_or_train(X), **kwargs)

    def plot_pairs(self, X=None, **kwargs: Any):
        """Every pair of features with clusters and ellipses; :func:`bayesgmm.plot_pairs`."""
        from bayesgmm.analysis.clusters import plot_pairs

        return plot_pairs(self.idata_, self._data_or_train(X), **kwargs)

    def plot_uncertainty(self, X=None, **kwargs: Any):
        """Most uncertain points named, sorted with HDIs; :func:`bayesgmm.plot_uncertainty`."""
        from bayesgmm.analysis.uncertainty_plots import plot_uncertainty

        return plot_uncertainty(self.idata_, X, **kwargs)  # X as given: its index names points

    def plot_coclustering(self, X=None, **kwargs: Any):
        """Co-clustering heat map ordered by cluster; :func:`bayesgmm.plot_coclustering`."""
        from bayesgmm.analysis.uncertainty_plots import plot_coclustering

        return plot_coclustering(self.idata_, self._data_or_train(X), **kwargs)

    def plot_ppc(self, **kwargs: Any):
        """Posterior predictive density overlays per feature; see :func:`bayesgmm.plot_ppc`."""
        from bayesgmm.analysis.ppc import plot_ppc

        return plot_ppc(self.idata_, **kwargs)

    def plot_trace(self, var_names: Sequence[str] | None = None, **kwargs: Any):
        """Trace plots of the relabelled posterior (weights, means, sds by default)."""
        from bayesgmm.analysis.plots import plot_trace

        return plot_trace(self.idata_, var_names, **kwargs)

    def plot_rank(self, var_names: Sequence[str] | None = None, **kwargs: Any):
        """Rank plots for spotting chains that disagree."""
        from bayesgmm.analysis.plots import plot_rank

        return plot_rank(self.idata_, var_names, **kwargs)
