"""Every kind of page the project writes, opened in headless Chromium: no console error, no request
leaving the machine, every circuitsvis view mounted and drawn, every image loaded, nothing wider
than a 1,400 px window, and every table showing its result JSON's numbers.

The pages are drawn fresh by the current code: the LLM pages from the committed results (real
Gemma-3-270m, SmolLM2 and Qwen runs), the toy pages from a toy trained here; the committed pages
themselves are checked too. The docs site and the executed tour are checked where they are built
(`test_notebook.py`). One test shows that each check fails on a page with that fault.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from browser import Browser, served
from page_tables import Numbers, Table, cell_matches, expected_tables, table_mismatches

from lca_interp import report
from lca_interp.cli import main
from lca_interp.demo import toy_attention
from lca_interp.report.compare import compare_page
from lca_interp.report.page import View, write_page
from lca_interp.runs import load_toy

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
CROSS_MODEL = ("gemma-3-270m", "Qwen2.5-Coder-0.5B-Instruct", "SmolLM2-135M-Instruct")
PAGES = {  # page kind → (its path under the fixture's folder, circuitsvis views it must mount, figures it must load)
    "report": ("claims/report.html", 2, 12),
    "compare": ("compare/compare.html", 0, 2),
    "anatomy (LLM)": ("anatomy/anatomy.html", 3, 2),
    "anatomy (toy)": ("toy_anatomy/anatomy.html", 3, 1),
    "recall": ("recall/recall.html", 0, 4),
    "attention": ("attention.html", 3, 0),
}


@pytest.fixture(scope="module")
def browser():
    chromium = Browser()
    yield chromium
    chromium.close()


def _redrawn(source: Path, folder: Path) -> None:
    folder.mkdir(parents=True)
    shutil.copy(source, folder / source.name)
    report.render(folder / source.name)


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> Path:
    """One page of every kind, drawn by the current code into a fresh folder."""
    out = tmp_path_factory.mktemp("pages")
    _redrawn(RESULTS / "paper_a_full" / "claims.json", out / "claims")
    _redrawn(RESULTS / "anatomy_gemma3_270m" / "anatomy.json", out / "anatomy")
    _redrawn(RESULTS / "recall_gemma3_270m" / "recall.json", out / "recall")
    for model in CROSS_MODEL:  # the result JSONs only: the compare page is drawn from them alone
        shutil.copytree(RESULTS / "cross_model" / model, out / "compare" / model,
                        ignore=lambda folder, names: [n for n in names if n.endswith((".html", ".png"))])
    compare_page([out / "compare" / model for model in CROSS_MODEL], out / "compare")

    run = out / "toy"
    assert main(["train", "--m", "5", "--context-len", "16", "--d-model", "32", "--steps", "300", "--lr", "0.01",
                 "--eval-samples", "500", "--out", str(run)]) == 0
    assert main(["hijack", "--model", str(run), "--anatomy", "--out", str(out / "toy_anatomy")]) == 0
    toy, task = load_toy(run)
    contexts, outputs = task.sample(3, seed=1)
    report.save(toy_attention(toy, task, contexts, outputs, "A toy of m = 5, L = 16, d = 32 after 300 steps."),
                out / "attention.json")
    return out


@pytest.mark.parametrize("kind", PAGES)
def test_every_page_kind_shows_whole_in_chromium(browser, pages, kind):
    path, views, figures = PAGES[kind]
    page = pages / path
    with served(pages) as base:
        shown = browser.show(f"{base}/{path}")
    assert shown.problems() == []
    assert len(shown.components) == views and len(shown.images) == figures
    assert table_mismatches(shown.tables, expected_tables(page)) == []


def test_the_committed_results_pages_show_whole(browser):
    committed = sorted(RESULTS.rglob("*.html"))
    assert len(committed) >= 10
    with served(RESULTS) as base:
        for page in committed:
            shown = browser.show(f"{base}/{page.relative_to(RESULTS).as_posix()}")
            problems = shown.problems() + table_mismatches(shown.tables, expected_tables(page))
            assert problems == [], f"{page.relative_to(ROOT)}: {problems}"


def test_each_check_fails_on_a_page_with_that_fault(browser, tmp_path):
    """A page with one of each fault: every check names its own."""
    keys = 64
    uniform = View("bidirectional uniform attention on an absolute scale", "AttentionHeads",
                   {"attention": [[[1 / keys] * keys] * keys], "tokens": [str(i) for i in range(keys)], "maskUpperTri": False})
    write_page(tmp_path / "broken.html", "broken", [
        "<script>undefined_function()</script>",
        '<img src="https://unpkg.com/missing.png">',
        '<img src="missing.png">',
        '<div style="width:2000px">wide</div>',
        uniform,
    ])
    with served(tmp_path) as base:
        problems = browser.show(f"{base}/broken.html").problems()
    assert any("undefined_function is not defined" in p for p in problems)
    assert any(p == "request leaving the machine: https://unpkg.com/missing.png" for p in problems)
    assert sum(p.startswith("image not loaded") for p in problems) == 2
    assert any("wider than a 1400 px window" in p for p in problems)
    assert any(p.startswith("circuitsvis view") and "is blank" in p for p in problems)  # the bug toy attention once had


def test_table_check_against_a_hand_written_case():
    expected = [Table(["head", "score"], [["L1H2", 0.12345], ["L0H0", 12.5]]),
                Table(["finding", "m"], [["a", Numbers((0.25, 200))], ["b", "–"]], key=1)]
    shown = [[["head", "score"], ["L1H2", "0.123"], ["L0H0", "12.5"]],
             [["finding", "m"], ["b", "–"], ["a", "ES 0.250 [n = 200]"]]]
    assert table_mismatches(shown, expected) == []
    shown[0][1][1] = "0.124"  # a rounding the JSON does not give
    shown[1][2][1] = "ES 0.250 [n = 20]"
    assert len(table_mismatches(shown, expected)) == 2
    assert table_mismatches(shown[:1], expected)[0] == "1 tables shown, 2 expected"
    assert cell_matches("1.23e-04", 1.2345e-4) and not cell_matches("1.23e-04", 1.2345e-3)
    assert cell_matches("L12H1, L15H3", "L12H1, L15H3") and not cell_matches("3", 3.4)


def test_expected_tables_read_the_json_the_page_names(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"kind": "anatomy", "ranked_heads": [{"head": "L1H1", "dla": 0.5}]}))
    assert expected_tables(tmp_path / "x.html")[0].rows == [["L1H1", 0.5]]
