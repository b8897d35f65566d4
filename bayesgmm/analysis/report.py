"""Write a fit report: tables, diagnostics, assignments, figures, one HTML page, the model.

:func:`write_report` fills a directory with

============================  ==========================================================
``summary.csv``/``.txt``      posterior summary (ArviZ, 94% HDIs) of the relabelled
                              parameters
``diagnostics.csv``/``.txt``  :func:`bayesgmm.diagnose` verdicts and advice
``assignments.csv``           per point: ``row``, the data's columns, (the label,) cluster,
                              probabilities with 94% HDIs, uncertainty and entropy
``selection.csv``             (K sweeps only) the PSIS-LOO comparison
``labels.csv``/``.txt``       (with known labels only) clusters x label values, and the
                              adjusted Rand index
``pairs.png`` ...             the figures of :data:`FIGURES`: clusters (pairs plot),
                              assignment uncertainty, co-clustering, posterior
                              predictive check, LOO-PIT, trace plot
``report.html``               all of the above on one self-contained page
``model/``                    the saved estimator (load with ``bayesgmm.load("model")``)
============================  ==========================================================

Everything is computed on the posterior relabelled to the EM solution's labelling
(:meth:`bayesgmm.BayesianGMM.relabelled`), so per-component summaries mean one component
each. Every interval is a 94% highest-density interval, and every column holding one says
so (``hdi94``). An approximate fit (``BayesianGMM(inference="advi")``) is labelled so in
the page's title, its first lines and ``summary.txt``; its diagnostics check the ELBO.

A figure is one :class:`ReportFigure` entry in :data:`FIGURES` (file name, title,
drawing function, caption): adding one to the tuple adds its PNG, its section of the
page and its place in the report's record of files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesgmm.analysis.clusters import plot_pairs
from bayesgmm.analysis.plots import plot_trace
from bayesgmm.analysis.ppc import plot_loo_pit, plot_ppc, posterior_predictive
from bayesgmm.analysis.report_html import html_page
from bayesgmm.analysis.summary import is_pooled, posterior_summary
from bayesgmm.analysis.uncertainty_plots import plot_coclustering, plot_uncertainty
from bayesgmm.core.agreement import adjusted_rand_index, contingency
from bayesgmm.core.approx import describe, is_approximate, label
from bayesgmm.core.draws import training_data
from bayesgmm.core.files import RECORD_FILE, claim_output, record_output
from bayesgmm.core.predict import assignments_table
from bayesgmm.exceptions import DataError

__all__ = [
    "FIGURES",
    "OPTIONAL_FILES",
    "RECORD_FILE",
    "REPORT_FILES",
    "LabelComparison",
    "ReportFigure",
    "check_output_dir",
    "claim_output",
    "compare_labels",
    "record_output",
    "write_report",
    "write_selection",
]


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report.

    Attributes
    ----------
    name : str
        PNG file name in the report directory, e.g. ``"trace.png"``.
    title : str
        Heading of its section of the page (also the progress message).
    draw : callable
        ``draw(gmm, random_seed)`` -> a matplotlib Figure or an arviz-plots
        PlotCollection, given the relabelled estimator and the report's ``random_seed``;
        with ``predictive=True``, ``draw(tree, random_seed)`` instead.
    caption : str
        A sentence shown above the figure (may be empty).
    predictive : bool, default=False
        The figure needs replicated datasets: ``draw`` is given, instead of the
        estimator, a copy of its tree holding a ``posterior_predictive`` group
        (:func:`~bayesgmm.analysis.ppc.posterior_predictive` with the report's seed). The
        copy is made once per report and shared by every such figure; the estimator's
        own tree and the saved model get none.
    """

    name: str
    title: str
    draw: Callable[[Any, int | None], Any]
    caption: str = ""
    predictive: bool = False


#: The report's figures, in page order. The posterior predictive check and LOO-PIT draw
#: from one copy of the tree with replicated data (``predictive=True``), not part of the
#: saved model.
FIGURES: tuple[ReportFigure, ...] = (
    ReportFigure(
        "pairs.png",
        "Pairs plot",
        lambda g, seed: plot_pairs(g.idata_, random_seed=seed),
        "Every pair of features (2-D projections of the fit; up to six features, the most "
        "separating ones beyond): points coloured by most probable cluster and faded by "
        "assignment uncertainty, 2-sd ellipses of the posterior mean (bold) and of posterior "
        "draws (faint); on the diagonal, each component's weighted density.",
    ),
    ReportFigure(
        "uncertainty.png",
        "Assignment uncertainty",
        lambda g, seed: plot_uncertainty(g.idata_),
        "Left: the most uncertain points, named by row. Right: every point's uncertainty "
        "(1 - its largest membership probability), most uncertain first, with its 94% HDI "
        "over posterior draws.",
    ),
    ReportFigure(
        "coclustering.png",
        "Co-clustering",
        lambda g, seed: plot_coclustering(g.idata_, random_seed=seed),
        "The posterior probability that two points are in the same cluster, points ordered "
        "by most probable cluster (then by certainty). Pale blocks or off-diagonal strips "
        "are points the posterior cannot place.",
    ),
    ReportFigure(
        "ppc.png",
        "Posterior predictive check",
        lambda tree, seed: plot_ppc(tree, random_seed=seed),
        "Each feature's observed density against datasets replicated from posterior draws: "
        "the observed curve should look like one of the replicated ones.",
        predictive=True,
    ),
    ReportFigure(
        "loo_pit.png",
        "Calibration (LOO-PIT)",
        lambda tree, seed: plot_loo_pit(tree, random_seed=seed),
        "Leave-one-out probability integral transforms per feature, as the difference "
        "between their ECDF and the uniform CDF: a calibrated model stays inside the 94% "
        "simultaneous band.",
        predictive=True,
    ),
    ReportFigure(
        "trace.png",
        "Trace plot",
        lambda g, seed: plot_trace(g.idata_, group=_trace_group(g.idata_)),
        "Relabelled draws per chain: densities (left) and traces (right), one row per "
        "quantity and feature. Chains that disagree point to modes or too few draws; "
        "when the chains found several modes, every sampled chain is shown "
        "(posterior_chains), not the stacked draws.",
    ),
)


def _trace_group(tree) -> str:
    """The sampled chains when the posterior pools several modes into one sequence."""
    return "posterior_chains" if is_pooled(tree) else "posterior"


_TABLE_FILES = (
    "summary.csv",
    "summary.txt",
    "diagnostics.csv",
    "diagnostics.txt",
    "assignments.csv",
)
#: Files every report writes.
REPORT_FILES = (*_TABLE_FILES, *(f.name for f in FIGURES), "report.html")
#: Files only some reports write (a K comparison, known labels); an earlier report's copy
#: is removed when the new report has none.
OPTIONAL_FILES = ("selection.csv", "labels.csv", "labels.txt")
_DPI = 110


@dataclass(frozen=True)
class LabelComparison:
    """Clusters against known labels: the confusion table and the adjusted Rand index."""

    name: str  # the label column's name
    table: pd.DataFrame  # clusters (rows) x label values (columns), counts
    ari: float
    n_points: int  # points with a label (the others are left out)
    n_missing: int

    def text(self) -> str:
        """The first line of ``labels.txt`` (and of the command line's output)."""
        missing = f"; {self.n_missing} without a label left out" if self.n_missing else ""
        return (
            f"adjusted Rand index of the clusters against {self.name!r}: {self.ari:.3f} "
            f"({self.n_points} points{missing})"
        )


def _save_figure(obj, path: Path) -> None:
    """Save a matplotlib Figure or an arviz-plots PlotCollection as PNG, then close it."""
    import matplotlib.pyplot as plt

    if hasattr(obj, "savefig") and hasattr(obj, "viz"):  # PlotCollection
        fig = obj.viz["figure"].item()
    else:
        fig = obj
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)


def _front(g, data: pd.DataFrame | None) -> pd.DataFrame:
    """``row`` and the data's columns: ``data`` (its index as ``row``), else the training
    data the fit holds (``row`` = 0, 1, ...), so every report has the same layout."""
    if data is None:
        X = training_data(g.idata_)
        data = pd.DataFrame(X, columns=[str(f) for f in g.feature_names_in_])
    return data.reset_index(names="row")


def _labels(labels, n: int) -> pd.Series | None:
    if labels is None:
        return None
    s = labels if isinstance(labels, pd.Series) else pd.Series(np.asarray(labels))
    if s.shape != (n,):
        raise DataError(f"labels must hold one value per fitted point ({n}); got {s.shape}.")
    return s.rename(s.name if s.name is not None else "label").reset_index(drop=True)


def compare_labels(cluster: np.ndarray, labels: pd.Series, n_components: int) -> LabelComparison:
    """Confusion table (every component a row, empty ones too) and adjusted Rand index of
    the clusters against the points' known labels; points without a label left out.

    Examples
    --------
    >>> c = compare_labels(np.array([0, 0, 1]), pd.Series(["a", "a", "b"], name="kind"), 3)
    >>> c.table.to_numpy().tolist(), c.ari
    ([[2, 0], [0, 1], [0, 0]], 1.0)
    >>> c.text()
    "adjusted Rand index of the clusters against 'kind': 1.000 (3 points)"
    """
    known = labels.notna().to_numpy()
    lab = labels[known].astype(str).to_numpy()
    counts, rows, cols = contingency(cluster[known], lab)
    table = pd.DataFrame(counts, index=rows, columns=cols).reindex(
        range(n_components), fill_value=0
    )
    table.index.name, table.columns.name = "cluster", str(labels.name)
    ari = adjusted_rand_index(cluster[known], lab) if known.any() else float("nan")
    return LabelComparison(str(labels.name), table, ari, int(known.sum()), int((~known).sum()))


def write_report(
    gmm,
    out_dir: str | Path,
    *,
    title: str = "bayesgmm fit report",
    notes: Sequence[str] = (),
    data: pd.DataFrame | None = None,
    labels: pd.Series | Sequence | None = None,
    selection: pd.DataFrame | None = None,
    progress: Callable[[str], None] | None = None,
    random_seed: int | None = 0,
) -> Path:
    """Write the report of a fitted estimator to ``out_dir``; returns ``report.html``'s path.

    Parameters
    ----------
    gmm : BayesianGMM
        A fitted estimator (not modified: the report relabels a shallow copy).
    out_dir : str or Path
        Created if needed. Files of an earlier report there are replaced, but no other
        file: a directory holding a file of the same name that bayesgmm did not write
        (or that changed since) is refused with :class:`ReportPathError`.
    title : str
        For an approximate (ADVI) fit, e.g. " (approximate: minibatch ADVI)" is appended
        unless the title already says "approximate".
    notes : sequence of str
        Lines shown at the top of the page (data source, dropped rows, ...).
    data : DataFrame, optional
        The fitted data with its original row labels; its index (as ``row``) and columns
        are put in front of ``assignments.csv``. Default: the training data the fit holds,
        with the feature names, rows numbered from 0.
    labels : Series or array-like of shape (n_samples,), optional
        Known groups of the fitted points (e.g. species), in the order of the data; not
        fitted. The report adds them to ``assignments.csv`` and compares the clusters with
        them: a confusion table (``labels.csv``) and the adjusted Rand index
        (``labels.txt``, the page). A Series' name names them. Missing values are left out
        of the comparison.
    selection : DataFrame, optional
        A K comparison table (e.g. :class:`bayesgmm.LOOComparison` ``.table``),
        written to ``selection.csv`` and shown.
    progress : callable, optional
        Called with a short message before each step.
    random_seed : int, optional
        Seed of the figures' random draws (e.g. the posterior predictive draws behind
        ``ppc.png``).
    """
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    written = _claim(out)
    t0 = time.perf_counter()
    optional: set[str] = set()

    try:
        say("relabelling the posterior")
        g = gmm.relabelled()
        tree = g.idata_
        approximate = is_approximate(tree)
        if approximate and "approximate" not in title.lower():
            title = f"{title} (approximate: {label(tree)})"

        say("posterior summary")
        summary = posterior_summary(tree)  # rounded for reading
        exact = posterior_summary(tree, round_to="none")
        exact.to_csv(out / "summary.csv", index_label="parameter")
        head = f"{describe(tree)}; no MCMC diagnostics\n\n" if approximate else ""
        with pd.option_context("display.width", 160, "display.max_columns", 30):
            (out / "summary.txt").write_text(head + summary.to_string() + "\n")

        say("diagnostics")
        diag = g.diagnostics_  # fit() diagnosed the relabelled posterior (a fresh copy: here)
        diag.table.to_csv(out / "diagnostics.csv", index_label="check")
        (out / "diagnostics.txt").write_text(str(diag) + "\n")

        say("assignments")
        assign = assignments_table(tree)
        front = _front(g, data)
        known = _labels(labels, assign.shape[0])
        parts = [front, known.rename(_free(known.name, front))] if known is not None else [front]
        for part in parts:
            part.index = assign.index
        assign = pd.concat([*parts, assign], axis=1)
        assign.to_csv(out / "assignments.csv", index_label="obs")

        compared = None
        if known is not None:
            say("clusters against the labels")
            compared = compare_labels(assign["cluster"].to_numpy(), known, g.spec_.n_components)
            compared.table.to_csv(out / "labels.csv")
            (out / "labels.txt").write_text(
                compared.text() + "\n\n" + compared.table.to_string() + "\n"
            )
            optional |= {"labels.csv", "labels.txt"}
        if selection is not None:
            selection.to_csv(out / "selection.csv")
            optional.add("selection.csv")
        for name in OPTIONAL_FILES:
            if name not in optional and name in written:  # an earlier report's (unchanged)
                (out / name).unlink()

        say("saving the model")
        g.save(out / "model", overwrite=True)

        not_drawn = {}  # figure file -> why it could not be drawn
        replicated = None  # the tree with posterior predictive draws, made once if needed
        for figure in FIGURES:
            say(figure.title.lower())
            try:
                if figure.predictive and replicated is None:
                    replicated = posterior_predictive(g.idata_.copy(), random_seed=random_seed)
                drawn = figure.draw(replicated if figure.predictive else g, random_seed)
            except Exception as exc:  # one figure must not cost the report
                not_drawn[figure.name] = _why_not_drawn(exc)
                say(f"{figure.title.lower()} not drawn: {not_drawn[figure.name]}")
                _close_figures()
                if (out / figure.name).is_file():  # an earlier report's (see _claim)
                    (out / figure.name).unlink()
                continue
            _save_figure(drawn, out / figure.name)

        say("report.html")
        page = html_page(
            g,
            title=title,
            notes=list(notes),
            summary=summary,
            diag=diag,
            assign=assign,
            selection=selection,
            compared=compared,
            figures=FIGURES,
            not_drawn=not_drawn,
            out=out,
            seconds=time.perf_counter() - t0,
        )
        (out / "report.html").write_text(page, encoding="utf-8")
    finally:
        _record(out)  # what was written, also when a step failed: a rerun may replace it
    return out / "report.html"


def write_selection(out_dir: str | Path, selection: pd.DataFrame) -> bool:
    """Write only ``selection.csv`` (a K comparison none of whose fits can be reported),
    recorded as a report's files are (under :func:`write_report`'s rules), unless
    ``out_dir`` holds an earlier report, of another run: that is left as it was, nothing
    is written and the result is False."""
    out = Path(out_dir)
    if "report.html" in _claim(out):
        return False
    try:
        selection.to_csv(out / "selection.csv")
    finally:
        _record(out)
    return True


def _why_not_drawn(exc: BaseException) -> str:
    """One line saying why a figure failed, e.g. LOO-PIT from a handful of draws."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _close_figures() -> None:
    import matplotlib.pyplot as plt

    plt.close("all")


def _free(name: str, front: pd.DataFrame) -> str:
    """``name``, or ``name (label)`` when the data already have a column of that name."""
    return name if name not in front.columns else f"{name} (label)"


def check_output_dir(out_dir: str | Path) -> None:
    """Raise :class:`ReportPathError` if a report may not be written to ``out_dir``.

    Nothing is created or written (the command line checks this before fitting).
    """
    _claim(Path(out_dir), create=False)


def _record(out: Path) -> None:
    record_output(out, (*REPORT_FILES, *OPTIONAL_FILES))


def _claim(out: Path, create: bool = True) -> dict[str, str]:
    """:func:`claim_output` for a report's files and its saved model."""
    return claim_output(out, (*REPORT_FILES, *OPTIONAL_FILES), "model", create)
