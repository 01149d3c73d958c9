"""The tour and the docs site: examples/tour.ipynb is committed without outputs, runs top to bottom
as a reader runs it, and the site builds from the docstrings and the executed tour with warnings
as errors; then every page of the site, the executed tour among them, opens whole in headless
Chromium (the checks of `test_browser.py`)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest
from browser import Browser, served
from page_tables import expected_tables, table_mismatches

ROOT = Path(__file__).resolve().parents[1]
TOUR = ROOT / "examples" / "tour.ipynb"


def _docs_hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", ROOT / "docs" / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_tour_is_committed_without_outputs():
    notebook = nbformat.read(TOUR, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(cell.outputs == [] and cell.execution_count is None for cell in code)


@pytest.mark.slow
def test_the_tour_runs_and_the_docs_site_builds_with_it(tmp_path):
    from mkdocs.commands.build import build
    from mkdocs.config import load_config

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "docs", docs, ignore=shutil.ignore_patterns("tour.ipynb"))
    notebook = _docs_hooks().execute_tour(docs / "tour.ipynb")

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    html = [o.data["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    # Inline circuitsvis carries its own bundle: nothing is fetched from a CDN.
    assert len(html) >= 2 and all("CircuitsVis.render" in h and "var CircuitsVis=" in h for h in html)
    assert not any("unpkg.com" in h or "cdn.jsdelivr" in h for h in html)
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) >= 4  # W_V, ES(k), anatomy, attribution
    printed = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Bayes ceiling" in printed and "top heads:" in printed and "final layer masked" in printed

    site = tmp_path / "site"
    build(load_config(str(ROOT / "mkdocs.yml"), docs_dir=str(docs), site_dir=str(site)))  # strict: a warning fails
    for page in ("index.html", "concepts/index.html", "tour/index.html", "cli/index.html", "scaling/index.html",
                 "api/index.html", "results/index.html", "results/paper_a_full/report.html"):
        assert (site / page).is_file(), page
    tour = (site / "tour" / "index.html").read_text()
    assert "CircuitsVis.render" in tour and "Bayes ceiling" in tour
    cli = (site / "cli" / "index.html").read_text()
    assert all(f"lca-interp {command}" in cli for command in ("train", "reproduce", "hijack", "recall", "compare", "demo"))
    api = (site / "api" / "index.html").read_text()
    assert all(name in api for name in ("LCATask", "run_hijack", "hijack_anatomy", "load_model"))
    assert "N(z*)" in api  # not read as Markdown emphasis

    chromium = Browser()
    try:
        with served(site) as base:
            for page in sorted(site.rglob("*.html")):
                path = page.relative_to(site).as_posix()
                shown = chromium.show(f"{base}/{path}")
                problems = shown.problems()
                if path.startswith("results/") and path != "results/index.html":  # a committed results page
                    problems += table_mismatches(shown.tables, expected_tables(ROOT / path))
                assert problems == [], f"{path}: {problems}"
                if path == "tour/index.html":  # the executed tour: toy and LLM attention, four figures
                    assert len(shown.components) >= 2 and len(shown.images) >= 4
    finally:
        chromium.close()
