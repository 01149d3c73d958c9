"""The package layout is the architecture: task → model → hooks → evals → report → cli.

Read from the source with `ast`, so a forbidden import fails here before anyone has to notice it
in review: hooks know models, not the LCA task; the LCA core knows no probes; evals draw nothing
and their families share pieces only through lower layers; the report draws from JSON without
the evals or a model. Modules stay small enough to read in one sitting.
"""

from __future__ import annotations

import ast
import statistics
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lca_interp"
LCA_CORE = {"task", "toy", "toy_stack", "training", "runs", "theory"}
DRAWING = {"matplotlib", "circuitsvis"}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path) -> set[str]:
    """Every module an import statement in `path` names (anywhere in the file, lazy ones too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def internal(names: set[str]) -> set[str]:
    """lca_interp.x.y → the part after lca_interp, as dotted names (`from lca_interp import x` too)."""
    return {name.removeprefix("lca_interp.") for name in names if name.startswith("lca_interp.")}


def top(name: str) -> str:
    return name.split(".")[0]


MODULES = modules()


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("lca_interp.hooks")])
def test_hooks_import_nothing_from_the_lca_world_the_evals_or_the_report(module):
    forbidden = {n for n in internal(imports_of(MODULES[module])) if top(n) in LCA_CORE | {"evals", "report", "cli", "demo"}}
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


@pytest.mark.parametrize("module", [f"lca_interp.{m}" for m in sorted(LCA_CORE)])
def test_the_lca_core_imports_no_probe_eval_or_report(module):
    forbidden = {n for n in internal(imports_of(MODULES[module])) if top(n) in {"hooks", "evals", "report", "cli", "demo"}}
    assert not forbidden, f"{module} imports {sorted(forbidden)}"


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("lca_interp.evals.")])
def test_evals_draw_nothing_and_import_no_other_family(module):
    family = module.split(".")[2]
    names = imports_of(MODULES[module])
    assert not {n for n in names if top(n) in DRAWING}, f"{module} draws"
    inside = internal(names)
    assert not {n for n in inside if top(n) in {"report", "cli", "demo"}}, module
    sideways = {n for n in inside if n.startswith("evals.") and n.split(".")[1] != family}
    assert not sideways, f"{module} imports another family: {sorted(sideways)}"


@pytest.mark.parametrize("module", [m for m in MODULES if not m.startswith(("lca_interp.report", "lca_interp.cli"))])
def test_only_the_report_draws(module):
    assert not {n for n in imports_of(MODULES[module]) if top(n) in DRAWING}, module


@pytest.mark.parametrize("module", [m for m in MODULES if m.startswith("lca_interp.report")])
def test_the_report_needs_no_model_and_no_eval(module):
    inside = internal(imports_of(MODULES[module]))
    assert not {n for n in inside if top(n) in {"evals", "hooks", "pretrained", "training", "toy", "scoring"}}, module
    assert not {n for n in imports_of(MODULES[module]) if top(n) in {"torch", "transformer_lens"}}, module


def test_modules_are_small():
    sizes = {module: len(path.read_text().splitlines()) for module, path in MODULES.items()}
    assert max(sizes.values()) <= 400, max(sizes, key=sizes.get)
    assert statistics.median(sizes.values()) <= 150


def test_the_command_line_lists_its_choices_without_heavy_imports():
    """`options` is where every choice list lives; it must stay importable without torch."""
    assert not {top(n) for n in imports_of(MODULES["lca_interp.options"])} - {"__future__"}
    assert "torch" not in {top(n) for n in imports_of(MODULES["lca_interp.cli"]) if not n.startswith("lca_interp")}
