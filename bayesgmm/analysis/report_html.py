"""The report's HTML page (:func:`html_page`): one self-contained file, figures inlined.

Every table sits in a ``<div class="scroll">`` that scrolls sideways, so the page keeps
the window's width; every interval is named as what it is (94% HDI). The page states the
seed that reproduces the fit (:func:`seed_text`) and how to load the saved model.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from bayesgmm.analysis.summary import POOLED_NOTE, interval_text, is_pooled
from bayesgmm.core.approx import describe, is_approximate
from bayesgmm.core.config import RHAT_OK
from bayesgmm.core.draws import training_labels, training_noise

__all__ = ["html_page", "seed_text"]

_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em} h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
.tbl{border-collapse:collapse;font-size:.85em} .tbl td,.tbl th{padding:2px 8px;text-align:right}
.tbl tr:nth-child(even){background:#f6f8fa} img{max-width:100%;border:1px solid #eee}
.ok{color:#1a7f37} .warn{color:#9a6700} .fail{color:#cf222e} pre{background:#f6f8fa;padding:.6em}
.scroll{max-width:100%;overflow-x:auto} .tbl td,.tbl th{white-space:nowrap}
"""


_DECONVOLVED = (
    "This fit has known measurement errors: the ellipses and component densities are "
    "those of the true values (deconvolved), narrower than the measured points and the "
    "histograms, which include the errors."
)


def _known(labels) -> list[str]:
    """The report's line on known labels (a semi-supervised fit), if any."""
    if labels is None:
        return []
    counts = np.bincount(labels[labels >= 0])
    per = ", ".join(f"{n} in component {k}" for k, n in enumerate(counts) if n)
    return [
        f"Known components: {int((labels >= 0).sum())} of {labels.size} points were "
        f"labelled ({per}); they keep their components, whose numbers are the labels', and "
        "the others are inferred."
    ]


def _background(post, assign: pd.DataFrame) -> list[str]:
    """The report's line on a background-noise component, if any."""
    if "noise_weight" not in post:
        return []
    import arviz_stats as azs

    w0 = post["noise_weight"]
    lo, hi = (float(v) for v in azs.hdi(w0.to_dataset(name="w"), prob=0.94)["w"].values)
    n = int((assign["cluster"] == -1).sum())
    return [
        f"Background noise: a uniform component of density 1/V, V = "
        f"{np.exp(-float(post.attrs['background'])):.4g} (data units); its weight "
        f"noise_weight is {float(w0.mean()):.3f} (94% HDI {lo:.3f} to {hi:.3f}). {n} of "
        f"{assign.shape[0]} points are most probably noise (cluster -1, column prob_noise "
        "in assignments.csv); the components' weights are their shares of the other points."
    ]


def _table_html(df: pd.DataFrame, float_format: str = "{:.4g}") -> str:
    """A table inside a container that scrolls sideways, so the page keeps its width."""
    table = df.to_html(
        float_format=lambda v: float_format.format(v), border=0, classes="tbl", na_rep="-"
    )
    return f'<div class="scroll">{table}</div>'


def _img(out: Path, name: str, alt: str) -> str:
    data = base64.b64encode((out / name).read_bytes()).decode("ascii")
    return f'<p><a href="{name}"><img src="data:image/png;base64,{data}" alt="{alt}"></a></p>'


def seed_text(g) -> str:
    """The seed that reproduces a fit, as the report states it.

    The fit records its seed in ``sampler_config_`` (``advi_config_`` for ADVI): the
    user's, or the one drawn when none was given (:func:`bayesgmm.core.config.resolve_seed`);
    the estimator's own ``sampler`` (``advi``) parameter tells which.
    """
    advi = is_approximate(g.idata_)
    cfg = g.advi_config_ if advi else g.sampler_config_
    seed = cfg.random_seed if cfg is not None else None
    key = "advi" if advi else "sampler"
    if seed is None:  # a model saved before fits recorded their seed
        return "random_seed not recorded (this fit cannot be rerun exactly)"
    given = g.get_params().get(key)
    given = (
        given.get("random_seed")
        if isinstance(given, Mapping)
        else getattr(given, "random_seed", None)
    )
    how = f"{key}={{'random_seed': {seed}}} reruns this fit"
    if given is None:
        return f"random_seed {seed} (none was given: drawn at random and recorded; {how})"
    return f"random_seed {seed} ({how})"


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
        facts.append(target_text(attrs, cfg.draws, cfg.target_ess))
    if "modes" in idata.children:
        facts.append("Posterior modes: " + str(idata["modes"].attrs.get("description", "")))
    return facts


def target_text(attrs, draws: int, target_ess: int) -> str:
    """One sentence on the rounds of draws and whether the ESS/R-hat target was met.

    Examples
    --------
    >>> text = target_text({"rounds": 2, "target_met": False, "projected_rounds": 160}, 1000, 400)
    >>> text[:48], "about 160 rounds" in text
    ('Drawn in 2 rounds of 1000 until min ESS >= 400 a', True)
    """
    rounds = int(attrs.get("rounds", 1))
    head = (
        f"Drawn in {rounds} round{'s' * (rounds != 1)} of {draws} until min ESS >= "
        f"{target_ess} and R-hat <= {RHAT_OK}: "
    )
    if attrs.get("target_met"):
        return head + "met."
    projected = attrs.get("projected_rounds")
    if projected is None:
        return head + "NOT met (time or rounds ran out)."
    rate = (
        f"the target would take about {projected} rounds"
        if projected > 0
        else "the draws had no effective samples to speak of"
    )
    return (
        f"{head}NOT met; stopped early, as at the rate of these rounds {rate}: more draws "
        "would not help; see the diagnostics (more tuning, another parameterisation or "
        "fewer components)."
    )


def _how(g, n_chain: int, n_draw: int) -> list[str]:
    cfg = g.sampler_config_
    if is_approximate(g.idata_):
        text = describe(g.idata_)
        return [
            f"{text[0].upper()}{text[1:]}, started at the EM solution; {seed_text(g)}.",
            "This is a variational approximation, not MCMC: mean-field ADVI typically "
            "underestimates posterior variances (intervals are too narrow), and the "
            "diagnostics check the ELBO's convergence (R-hat and ESS do not apply).",
        ]
    if is_pooled(g.idata_):
        n_chain = g.idata_["posterior_chains"].sizes["chain"]
        n_draw = g.idata_["posterior_chains"].sizes["draw"]
    return [
        f"NUTS ({g.idata_.attrs.get('nuts_sampler', cfg.nuts_sampler)}): {n_chain} chains "
        f"x {n_draw} draws after {cfg.tune} tuning steps, started at the EM solution; "
        f"{seed_text(g)}.",
        *_sampling_facts(g.idata_, cfg),
    ]


def _labels_section(compared) -> list[str]:
    if compared is None:
        return []
    esc = html.escape
    return [
        f"<h2>Clusters against {esc(compared.name)}</h2>",
        f"<p>{esc(compared.text()[0].upper() + compared.text()[1:])}. The adjusted Rand "
        "index is 1 for the same grouping (whatever the cluster numbers), about 0 for "
        "chance agreement. Points per cluster (rows) and label (columns): "
        "<a href='labels.csv'>labels.csv</a>.</p>",
        _table_html(compared.table),
    ]


def html_page(
    g,
    *,
    title: str,
    notes: Sequence[str],
    summary: pd.DataFrame,
    diag,
    assign: pd.DataFrame,
    selection: pd.DataFrame | None,
    compared,
    figures: Sequence,
    out: Path,
    seconds: float,
    not_drawn: Mapping[str, str] | None = None,
) -> str:
    """The report page of the relabelled estimator ``g``; figures are read from ``out``
    (those in ``not_drawn``, file name -> reason, are named with the reason instead)."""
    not_drawn = not_drawn or {}
    esc = html.escape
    post = g.idata_["posterior"]
    deconvolved = training_noise(g.idata_) is not None
    fam = g.spec_.family
    facts = [
        f"K = {g.spec_.n_components} components, covariance '{g.spec_.covariance_type}' "
        f"(mclust {fam.mclust}: {fam.description}), features {g.feature_names_in_}, "
        f"{assign.shape[0]} points.",
        *_how(g, post.sizes["chain"], post.sizes["draw"]),
        "Component labels: relabelled to the EM solution's labelling (posterior_raw holds "
        "the raw draws).",
        f"Intervals: {interval_text()}s (highest-density intervals) throughout; columns "
        "holding them say hdi94.",
        *_known(training_labels(g.idata_)),
        *_background(post, assign),
        *notes,
    ]
    n_uncertain = int((assign["uncertainty"] > 0.2).sum())
    cls = diag.verdict
    ci = interval_text()
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<ul>" + "".join(f"<li>{esc(f)}</li>" for f in facts) + "</ul>",
        f"<p>Diagnostics verdict: <b class='{cls}'>{cls.upper()}</b> "
        "(<a href='diagnostics.txt'>diagnostics.txt</a>)</p>",
    ]
    if selection is not None:
        background = (
            "<p>Every K with the same background-noise component: K Gaussians plus the "
            "background.</p>"
        )
        parts += [
            "<h2>Choice of K (PSIS-LOO)</h2>",
            *([background] if selection.attrs.get("noise") else []),
            _table_html(selection),
            "<p><a href='selection.csv'>selection.csv</a></p>",
        ]
    parts += [
        "<h2>Posterior summary</h2>",
        f"<p>Data units; intervals are {ci}s (columns hdi94_lb, hdi94_ub); "
        + (f"{esc(POOLED_NOTE)}; " if is_pooled(g.idata_) else "")
        + "<a href='summary.csv'>summary.csv</a></p>",
        _table_html(summary),
        "<h2>Diagnostics</h2>",
        f'<div class="scroll">{diag._repr_html_()}</div>',
        "<h2>Clusters</h2>",
        f"<p>{n_uncertain} of {assign.shape[0]} points have assignment uncertainty "
        f"(1 - max probability) above 0.2. Per-point probabilities with {ci}s: "
        "<a href='assignments.csv'>assignments.csv</a>.</p>",
        *_labels_section(compared),
    ]
    for figure in figures:
        parts += [f"<h2>{esc(figure.title)}</h2>"]
        if figure.name in not_drawn:
            reason = not_drawn[figure.name].rstrip(".")
            # a DataError says itself what to do; other failures are mostly too few draws
            hint = "" if reason.startswith("DataError") else (
                " Usually too few draws for this figure; more draws give it."
            )  # fmt: skip
            parts += [f"<p class='warn'>Not drawn: {esc(reason)}.{hint}</p>"]
            continue
        if figure.caption:
            parts += [f"<p>{esc(figure.caption)}</p>"]
        if deconvolved and figure.name in ("pairs.png", "clusters.png"):
            parts += [f"<p>{esc(_DECONVOLVED)}</p>"]
        parts += [_img(out, figure.name, figure.title.lower())]
    parts += [
        "<h2>Most uncertain assignments</h2>",
        f"<p>The 15 points with the highest uncertainty. prob_k is the posterior mean "
        f"probability of cluster k; prob_k_hdi94_lower and prob_k_hdi94_upper its {ci} "
        "over the posterior draws.</p>",
        _table_html(assign.sort_values("uncertainty", ascending=False).head(15)),
        "<h2>Saved model</h2>",
        '<p><code>model/</code>: load with <code>bayesgmm.load("model")</code>.</p>',
        f"<p><small>Report written in {seconds:.1f} s.</small></p>",
        "</body></html>",
    ]
    return "\n".join(parts)
