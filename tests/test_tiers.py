"""The package's architecture, checked: tiers and their import rule, the covariance-family
table as the only place that names families, module sizes, and a lazy public API."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bayesgmm"
DATA = Path(__file__).parent / "data"

# tier -> the tiers it may import (its own always)
ALLOWED = {
    "core": set(),
    "inference": {"core"},
    "analysis": {"core"},
    "estimator": {"core", "inference", "analysis"},
    "workflows": {"core", "inference", "analysis", "estimator"},
    "cli": {"core", "inference", "analysis", "estimator", "workflows"},
}
SHARED = {"exceptions", "_logging"}  # top-level modules every tier may use
INFERENCE_STACK = {"pymc", "pytensor", "jax", "jaxlib", "numpyro", "nutpie", "blackjax"}
ANALYSIS_STACK = {"arviz", "arviz_base", "arviz_stats", "arviz_plots", "matplotlib"}
# external packages a tier may not import at all, and ones it may import only lazily
FORBIDDEN = {
    "core": INFERENCE_STACK | ANALYSIS_STACK | {"dask", "distributed"},
    "analysis": INFERENCE_STACK,
}
LAZY = {
    "estimator": INFERENCE_STACK | ANALYSIS_STACK | {"bayesgmm.inference", "bayesgmm.analysis"},
    "cli": INFERENCE_STACK | ANALYSIS_STACK | {"bayesgmm.inference", "bayesgmm.analysis"},
}
FAMILY_NAMES = {"full", "tied", "diag", "spherical"}


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _tier(path: Path) -> str | None:
    rel = path.relative_to(PACKAGE).parts
    return rel[0] if len(rel) > 1 else None


def _imports(tree: ast.Module):
    """``(module name, lazy?)`` of every import, ``lazy`` when inside a function."""
    out = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                out.extend((a.name, in_function) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.append((child.module, in_function))
                out.extend((f"{child.module}.{a.name}", in_function) for a in child.names)
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                continue  # annotations only
            visit(child, nested)

    visit(tree, False)
    return out


def _is_type_checking(test) -> bool:
    return isinstance(test, ast.Name) and test.id == "TYPE_CHECKING"


def _bayesgmm_tier(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "bayesgmm" or len(parts) == 1:
        return None
    return parts[1]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_tiers(path):
    tier = _tier(path)
    tree = ast.parse(path.read_text())
    problems = []
    for name, lazy in _imports(tree):
        top = name.split(".")[0]
        target = _bayesgmm_tier(name)
        if tier is None:  # top level: the lazy __init__ and __main__, exceptions, _logging
            if not lazy and target not in (None, *SHARED) and path.name != "__init__.py":
                problems.append(f"{name} (top-level modules import no tier)")
            continue
        if target is not None and target not in SHARED and target in ALLOWED:
            if target != tier and target not in ALLOWED[tier]:
                problems.append(f"{name} (tier {tier} may import {sorted(ALLOWED[tier])})")
        if top in FORBIDDEN.get(tier, ()):
            problems.append(f"{name} (tier {tier} never imports {top})")
        heavy = LAZY.get(tier, set())
        if not lazy and (top in heavy or ".".join(name.split(".")[:2]) in heavy):
            problems.append(f"{name} at module level (tier {tier} imports it only where used)")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_modules_stay_small(path):
    assert len(path.read_text().splitlines()) <= 500


def test_only_the_family_table_names_families():
    """No ``== "tied"`` or ``in ("full", "tied")`` outside bayesgmm/core/families.py: the
    rest of the package asks the family's record."""
    found = []
    for path in _modules():
        if path.relative_to(PACKAGE).as_posix() == "core/families.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Compare):
                continue
            for operand in (node.left, *node.comparators):
                values = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [
                    operand
                ]  # fmt: skip
                names = {v.value for v in values if isinstance(v, ast.Constant)}
                if names & FAMILY_NAMES:
                    found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, found


def _run(code: str) -> str:
    res = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_em_bic_and_a_saved_models_predictions_need_no_inference_stack():
    out = _run(
        f"""
        import sys
        import numpy as np
        import bayesgmm
        from bayesgmm import BayesianGMM
        X = np.load({str(DATA / "saved_v1_X.npy")!r})
        bayesgmm.fit_em(bayesgmm.load_faithful(), 2, random_seed=0)
        bayesgmm.bic_table(bayesgmm.load_faithful(), range(1, 3), ["tied"])
        gmm = BayesianGMM.load({str(DATA / "saved_v1")!r})
        assert gmm.predict_proba(X).shape == (5, 2)
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({sorted(INFERENCE_STACK)!r}))
        print(",".join(heavy) or "none")
        """
    )
    assert out == "none"


def test_command_line_help_needs_no_inference_or_analysis_stack():
    out = _run(
        f"""
        import contextlib, io, sys
        from bayesgmm.cli import main
        with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
            main(["fit", "--help"])
        stack = {sorted(INFERENCE_STACK | ANALYSIS_STACK)!r}
        print(",".join(sorted({{m.split(".")[0] for m in sys.modules}} & set(stack))) or "none")
        """
    )
    assert out == "none"


def test_the_public_api_is_lazy_and_complete():
    out = _run(
        """
        import sys
        import bayesgmm
        before = {m for m in sys.modules if m.startswith("bayesgmm.")}
        missing = [n for n in bayesgmm.__all__ if not hasattr(bayesgmm, n)]
        print(sorted(before), missing)
        """
    )
    assert out == "['bayesgmm.exceptions'] []" or out == "[] []", out


def test_the_readme_layout_table_lists_every_module():
    readme = (PACKAGE.parent / "README.md").read_text()
    start = readme.index("## Layout")
    end = readme.find("\n## ", start + 1)  # up to the next section (or the end)
    layout = readme[start : end if end >= 0 else None]
    missing = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if rel.name in ("__init__.py", "__main__.py") and len(rel.parts) > 1:
            continue  # a tier's docstring-only face
        listed = f"`bayesgmm/{rel.as_posix()}`" in layout or (
            len(rel.parts) == 2 and f"`{rel.parts[0]}/" in layout and rel.stem in layout
        )
        if not listed:
            missing.append(rel.as_posix())
    assert not missing, missing
