"""Write a fit report: tables, diagnostics, assignments, figures, one HTML page, the model.

:func:`write_report` fills a directory with

============================  ==========================================================
``summary.csv``/``.txt``      posterior summary (ArviZ) of the relabelled parameters
``diagnostics.csv``/``.txt``  :func:`bayesgmm.diagnose` verdicts and advice
``assignments.csv``           per point: data, cluster, probabilities with intervals,
                              uncertainty and entropy
``selection.csv``             (K sweeps only) the PSIS-LOO comparison
``trace.png``                 trace plot (:func:`bayesgmm.plot_trace`)
``clusters.png``              clusters with assignment uncertainty and ellipses
``ppc.png``                   posterior predictive density overlays
``report.html``               all of the above on one self-contained page
``model/``                    the saved estimator (:meth:`bayesgmm.BayesianGMM.save`)
============================  ==========================================================

Everything is computed on the posterior relabelled to the EM solution's labelling
(:meth:`bayesgmm.BayesianGMM.relabelled`), so per-component summaries mean one component
each.
An approximate fit (``BayesianGMM(inference="advi")``) is labelled so in the page's
title, its first lines and ``summary.txt``; its diagnostics check the ELBO.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from bayesgmm.analysis.clusters import plot_clusters
from bayesgmm.analysis.plots import plot_trace
from bayesgmm.analysis.ppc import plot_ppc
from bayesgmm.analysis.summary import posterior_summary
from bayesgmm.core.approx import describe, is_approximate, label
from bayesgmm.core.config import RHAT_OK
from bayesgmm.core.files import check_save_path, parent_is_file, sha256
from bayesgmm.core.predict import assignments_table
from bayesgmm.exceptions import ReportPathError

__all__ = [
    "RECORD_FILE",
    "REPORT_FILES",
    "check_output_dir",
    "write_report",
]

REPORT_FILES = (
    "summary.csv",
    "summary.txt",
    "diagnostics.csv",
    "diagnostics.txt",
    "assignments.csv",
    "trace.png",
    "clusters.png",
    "ppc.png",
    "report.html",
)
_DPI = 110
#: Written last into a report directory: the files the report wrote, with their SHA-256.
RECORD_FILE = ".bayesgmm-report.json"


def _save_figure(obj, path: Path) -> None:
    """Save a matplotlib Figure or an arviz-plots PlotCollection as PNG, then close it."""
    import matplotlib.pyplot as plt

    if hasattr(obj, "savefig") and hasattr(obj, "viz"):  # PlotCollection
        fig = obj.viz["figure"].item()
    else:
        fig = obj
    fig.savefig(path, dpi=_DPI, bbox_inches="tight")
    plt.close(fig)


def _table_html(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A table inside a container that scrolls sideways, so the page keeps its width."""
    table = df.to_html(
        float_format=lambda v: float_format.format(v), border=0, classes="tbl", na_rep="-"
    )
    return f'<div class="scroll">{table}</div>'


def write_report(
    gmm,
    out_dir: str | Path,
    *,
    title: str = "bayesgmm fit report",
    notes: Sequence[str] = (),
    data: pd.DataFrame | None = None,
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
        The fitted data with its original row labels; its columns and index are put in
        front of ``assignments.csv`` (``row`` = original row number).
    selection : DataFrame, optional
        A K comparison table (e.g. :class:`bayesgmm.LOOComparison` ``.table``),
        written to ``selection.csv`` and shown.
    progress : callable, optional
        Called with a short message before each step.
    random_seed : int, optional
        Seed of the posterior predictive draws behind ``ppc.png``.
    """
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    say = progress or (lambda msg: None)
    out = Path(out_dir)
    written = _claim(out)
    t0 = time.perf_counter()

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
        if data is not None:
            front = data.reset_index(names="row")
            front.index = assign.index
            assign = pd.concat([front, assign], axis=1)
        assign.to_csv(out / "assignments.csv", index_label="obs")

        if selection is not None:
            selection.to_csv(out / "selection.csv")
        elif "selection.csv" in written:  # an earlier report's (unchanged, see _claim)
            (out / "selection.csv").unlink()

        say("saving the model")
        g.save(out / "model", overwrite=True)

        say("trace plot")
        _save_figure(plot_trace(tree), out / "trace.png")
        say("cluster plot")
        _save_figure(plot_clusters(tree), out / "clusters.png")
        say("posterior predictive check")
        # on a copy of the tree: the posterior predictive draws are not part of the saved model
        _save_figure(plot_ppc(tree.copy(), random_seed=random_seed), out / "ppc.png")

        say("report.html")
        page = _html_page(
            g,
            title=title,
            notes=list(notes),
            summary=summary,
            diag=diag,
            assign=assign,
            selection=selection,
            out=out,
            seconds=time.perf_counter() - t0,
        )
        (out / "report.html").write_text(page, encoding="utf-8")
    finally:
        _record(out)  # what was written, also when a step failed: a rerun may replace it
    return out / "report.html"


def check_output_dir(out_dir: str | Path) -> None:
    """Raise :class:`ReportPathError` if a report may not be written to ``out_dir``.

    Nothing is created or written (the command line checks this before fitting).
    """
    _claim(Path(out_dir), create=False)


def _claim(out: Path, create: bool = True) -> dict[str, str]:
    """Make sure every file the report will write may be written; return the earlier
    report's record (file name -> SHA-256).

    A report only ever replaces files that an earlier bayesgmm report wrote and that are
    unchanged since (the record, ``.bayesgmm-report.json``, holds their checksums); any
    other file of the same name is the user's and is left alone.
    """
    if out.exists() and not out.is_dir():
        raise ReportPathError(
            f"cannot write a report to {out}: it is a file, not a directory. Choose a "
            "directory (it is created if needed)."
        )
    parent = parent_is_file(out)
    if parent is not None:
        raise ReportPathError(f"cannot write a report to {out}: {parent} is a file.")
    record = out / RECORD_FILE
    earlier: dict[str, str] = {}
    if record.is_file():
        try:
            loaded = json.loads(record.read_text())
            earlier = {str(k): str(v) for k, v in loaded.get("files", {}).items()}
        except (ValueError, AttributeError, UnicodeDecodeError):
            earlier = {}
    ours = [*REPORT_FILES, "selection.csv"]
    foreign = [
        name
        for name in ours
        if (out / name).exists()
        and (not (out / name).is_file() or earlier.get(name) != sha256(out / name))
    ]
    if foreign:
        raise ReportPathError(
            f"refusing to write the report to {out}: it already holds {foreign}, which no "
            "earlier bayesgmm report wrote there (or which were changed since). Reports only "
            "replace their own files; choose another output directory or move those files."
        )
    check_save_path(out / "model", overwrite=True)  # the saved model's own rule
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return {k: v for k, v in earlier.items() if (out / k).is_file()}


def _record(out: Path) -> None:
    names = [*REPORT_FILES, "selection.csv"]
    files = {name: sha256(out / name) for name in names if (out / name).is_file()}
    (out / RECORD_FILE).write_text(json.dumps({"files": files}, indent=1) + "\n")


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
.tbl{border-collapse:collapse;font-size:.85em} .tbl td,.tbl th{padding:2px 8px;text-align:right}
.tbl tr:nth-child(even){background:#f6f8fa} img{max-width:100%;border:1px solid #eee}
.ok{color:#1a7f37} .warn{color:#9a6700} .fail{color:#cf222e} pre{background:#f6f8fa;padding:.6em}
.scroll{max-width:100%;overflow-x:auto} .tbl td,.tbl th{white-space:nowrap}
"""


def _img(out: Path, name: str, alt: str) -> str:
    data = base64.b64encode((out / name).read_bytes()).decode("ascii")
    return f'<p><a href="{name}"><img src="data:image/png;base64,{data}" alt="{alt}"></a></p>'


def _sampling_facts(idata, cfg) -> list[str]:
    """How the draws came about: threads, mass matrix, rounds and targets, modes."""
    attrs = idata["posterior"].attrs
    facts = []
    if "workers" in attrs:
        mass = "dense" if attrs.get("dense_mass") else "diagonal"
        facts.append(
            f"Chains run {attrs['workers']} at a time; {mass} mass matrix; sampling took "
            f"{attrs.get('sampling_seconds', float('nan')):.1f} s."
        )
    if "target_met" in attrs:
        met = "met" if attrs["target_met"] else "NOT met (time or rounds ran out)"
        facts.append(
            f"Drawn in {attrs.get('rounds', 1)} round(s) of {cfg.draws} until min ESS >= "
            f"{cfg.target_ess} and R-hat <= {RHAT_OK}: {met}."
        )
    if "modes" in idata.children:
        facts.append("Posterior modes: " + str(idata["modes"].attrs.get("description", "")))
    return facts


def _html_page(g, *, title, notes, summary, diag, assign, selection, out, seconds) -> str:
    esc = html.escape
    cfg = g.sampler_config_
    post = g.idata_["posterior"]
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    if is_approximate(g.idata_):
        seed = g.idata_["variational"].attrs.get("random_seed")
        how = [
            f"{describe(g.idata_)[0].upper()}{describe(g.idata_)[1:]}, started at the EM "
            f"solution; random_seed {seed}.",
            "This is a variational approximation, not MCMC: mean-field ADVI typically "
            "underestimates posterior variances (intervals are too narrow), and the "
            "diagnostics check the ELBO's convergence (R-hat and ESS do not apply).",
        ]
    else:
        how = [
            f"NUTS ({g.idata_.attrs.get('nuts_sampler', cfg.nuts_sampler)}): {n_chain} chains "
            f"x {n_draw} draws after {cfg.tune} tuning steps, started at the EM solution; "
            f"random_seed {cfg.random_seed}.",
            *_sampling_facts(g.idata_, cfg),
        ]
    facts = [
        f"K = {g.spec_.n_components} components, covariance '{g.spec_.covariance_type}', "
        f"features {g.feature_names_in_}, {assign.shape[0]} points.",
        *how,
        "Component labels: relabelled to the EM solution's labelling (posterior_raw holds "
        "the raw draws).",
        *notes,
    ]
    n_uncertain = int((assign["uncertainty"] > 0.2).sum())
    cls = diag.verdict
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<ul>" + "".join(f"<li>{esc(f)}</li>" for f in facts) + "</ul>",
        f"<p>Diagnostics verdict: <b class='{cls}'>{cls.upper()}</b> "
        "(<a href='diagnostics.txt'>diagnostics.txt</a>)</p>",
    ]
    if selection is not None:
        parts += [
            "<h2>Choice of K (PSIS-LOO)</h2>",
            _table_html(selection),
            "<p><a href='selection.csv'>selection.csv</a></p>",
        ]
    parts += [
        "<h2>Posterior summary</h2>",
        "<p>Data units; <a href='summary.csv'>summary.csv</a></p>",
        _table_html(summary),
        "<h2>Diagnostics</h2>",
        f'<div class="scroll">{diag._repr_html_()}</div>',
        "<h2>Clusters</h2>",
        f"<p>{n_uncertain} of {assign.shape[0]} points have assignment uncertainty "
        "(1 - max probability) above 0.2. Per-point probabilities with intervals: "
        "<a href='assignments.csv'>assignments.csv</a>.</p>",
        _img(out, "clusters.png", "clusters"),
        "<h2>Posterior predictive check</h2>",
        _img(out, "ppc.png", "posterior predictive check"),
        "<h2>Trace plot</h2>",
        _img(out, "trace.png", "trace plot"),
        "<h2>Most uncertain assignments</h2>",
        _table_html(assign.sort_values("uncertainty", ascending=False).head(15)),
        "<h2>Saved model</h2>",
        "<p><code>model/</code>: load with <code>bayesgmm.BayesianGMM.load('model')</code>.</p>",
        f"<p><small>Report written in {seconds:.1f} s.</small></p>",
        "</body></html>",
    ]
    return "\n".join(parts)
