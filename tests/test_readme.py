"""The README's Python session and every script in examples/ run as written, with their outputs."""

from __future__ import annotations

import doctest
import re
import runpy
import sys
from pathlib import Path

import pytest
from conftest import needs_gemma

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_session_gives_the_outputs_it_shows():
    blocks = python_blocks((ROOT / "README.md").read_text())
    assert blocks and all(">>>" in block for block in blocks)
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    globs: dict = {}
    for i, block in enumerate(blocks):
        runner.run(parser.get_doctest(block, globs, f"README block {i}", "README.md", 0))
    assert runner.failures == 0 and runner.tries >= 10


def test_inspect_a_trained_toy_runs(capsys):
    runpy.run_path(str(ROOT / "examples" / "inspect_a_trained_toy.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "Bayes ceiling" in printed and "principal angle" in printed and "Eq 5.2 fit" in printed


@needs_gemma
def test_write_a_probe_runs_on_the_offline_gemma(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["write_a_probe.py", "--limit", "16"])
    runpy.run_path(str(ROOT / "examples" / "write_a_probe.py"), run_name="__main__")
    rows = [line for line in capsys.readouterr().out.splitlines() if re.match(r"L\d+H\d+: r = ", line)]
    assert len(rows) == 5


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "examples").glob("*.py")))
def test_every_example_is_tested_here(script):
    assert script in Path(__file__).read_text(), f"examples/{script} has no test in tests/test_readme.py"


def test_readme_claims_table_is_the_one_generated_from_results():
    """README's table of paper A's claims is `report.claims.markdown_table` of the committed
    results/paper_a_full/claims.json, so the numbers a reader sees are the ones measured."""
    import json

    from lca_interp.report.claims import markdown_table

    data = json.loads((ROOT / "results" / "paper_a_full" / "claims.json").read_text())
    text = (ROOT / "README.md").read_text()
    table = re.search(r"<!-- claims table.*?-->\n(.*?)\n<!-- end claims table -->", text, flags=re.S)
    assert table is not None, "README has no claims table between its markers"
    assert table.group(1).strip() == markdown_table(data).strip()


@pytest.mark.parametrize("marker, folder", [("two-model table", "cross_model"), ("counterfact_full table", "counterfact_full")])
def test_readme_model_tables_are_the_ones_generated_from_results(marker, folder):
    """README's "what holds on two models" and "all of CounterFact" are
    `report.compare.markdown_findings` of the committed JSONs under results/FOLDER (one folder per
    model), the table `lca-interp compare` also writes to FOLDER/findings.md."""
    from lca_interp.report.compare import load_results, markdown_findings

    models = [path for path in sorted((ROOT / "results" / folder).iterdir(), key=lambda p: p.name.lower())  # as run.sh lists them
              if path.is_dir() and any(path.rglob("hijack.json"))]
    generated = markdown_findings(load_results(models)).strip()
    text = (ROOT / "README.md").read_text()
    table = re.search(rf"<!-- {marker}.*?-->\n(.*?)\n<!-- end {marker} -->", text, flags=re.S)
    assert table is not None, f"README has no {marker} between its markers"
    assert table.group(1).strip() == generated
    assert (ROOT / "results" / folder / "findings.md").read_text().strip() == generated
