"""mkdocs hooks: the tour executed, the command line page from the parser itself, and the
committed results pages in the site, so none can drift from what the package and `results/` hold.

`make docs` (= `mkdocs build`, strict) executes `examples/tour.ipynb` into `docs/tour.ipynb`
(ignored by git) when that is missing or older than the notebook; mkdocs-jupyter renders it with
its outputs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI_MARKER = "<!-- lca-interp help -->"
TOUR = ROOT / "examples" / "tour.ipynb"


def execute_tour(destination: Path, timeout: int = 900):
    """Run the tour top to bottom (as a reader's kernel runs it) and write it with its outputs."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(TOUR, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(destination.parent)}}).execute()
    nbformat.write(notebook, destination)
    return notebook


def on_pre_build(config) -> None:
    executed = Path(config["docs_dir"]) / "tour.ipynb"
    if not executed.exists() or executed.stat().st_mtime < TOUR.stat().st_mtime:
        execute_tour(executed)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if CLI_MARKER not in markdown:
        return markdown
    from lca_interp.cli import build_parser

    parser = build_parser()
    sections = [f"```text\n{parser.format_help()}```"]
    commands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, sub in commands.choices.items():
        sections.append(f"## `lca-interp {name}`\n\n```text\n{sub.format_help()}```")
    return markdown.replace(CLI_MARKER, "\n\n".join(sections))


def on_files(files, config):
    """results/**/*.html as files of the site (under results/), so the results page links them and
    the build checks those links; each page carries its figures, so nothing else is copied."""
    from mkdocs.structure.files import File

    for page in sorted((ROOT / "results").rglob("*.html")):
        files.append(File(page.relative_to(ROOT).as_posix(), str(ROOT), config["site_dir"], config["use_directory_urls"]))
    return files
