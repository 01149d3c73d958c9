"""Self-contained HTML pages: text, tables, figures and circuitsvis views in one offline file.

Pages open offline. circuitsvis's `str(html)` imports its script from a CDN, and its `local_src`
repeats the 1.3 MB bundle once per view; here the bundle (shipped inside the circuitsvis wheel,
found with importlib.resources) is inlined once per page as a classic script, which defines the
global `CircuitsVis`, and each view is a small `CircuitsVis.render(...)` call after it. Figures
are embedded as base64 PNG, so one HTML file carries everything.
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Union
from uuid import uuid4

from lca_interp import artifacts


@dataclass
class View:
    """One circuitsvis component: its React element name (e.g. "AttentionHeads") and props."""

    heading: str
    element: str
    props: dict = field(default_factory=dict)


Part = Union[str, View]


def _circuitsvis_bundle() -> str:
    bundle = resources.files("circuitsvis").joinpath("dist", "cdn", "iife.js").read_text("utf-8")
    return bundle.replace("</script>", "<\\/script>")


def _to_json(value) -> object:
    """Tensors and arrays to nested lists, recursively."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    return value


def _view_html(view: View) -> str:
    element_id = f"cv-{uuid4().hex[:12]}"
    # "</" inside a script body would end it early; JSON allows the escaped form.
    props = json.dumps(_to_json(view.props)).replace("</", "<\\/")
    return (
        f"<h3>{html.escape(view.heading)}</h3>\n<div id=\"{element_id}\"></div>\n"
        f"<script>CircuitsVis.render({json.dumps(element_id)}, CircuitsVis.{view.element}, "
        f"{props});</script>"
    )


@dataclass
class Inline:
    """Parts shown inline in a notebook, offline: Jupyter renders `_repr_html_`, which carries the
    circuitsvis bundle itself (circuitsvis's own notebook output imports it from a CDN)."""

    parts: Sequence[Part]

    def _repr_html_(self) -> str:
        body = [part if isinstance(part, str) else _view_html(part) for part in self.parts]
        script = f"<script>{_circuitsvis_bundle()}</script>\n" if any(isinstance(p, View) for p in self.parts) else ""
        return script + "\n".join(body)


def render_page(title: str, parts: Sequence[Part]) -> str:
    """One self-contained page: HTML fragments and circuitsvis views, the bundle inlined once."""
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>\n<style>body{{font-family:sans-serif;max-width:"
        "1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}td.num{text-align:right;"
        "font-variant-numeric:tabular-nums}.wide{overflow-x:auto}img{max-width:100%}"
        ".caption{color:#444;font-size:0.92em;max-width:75ch}</style>\n"
        f"</head><body>\n<h1>{html.escape(title)}</h1>\n{Inline(parts)._repr_html_()}\n</body></html>\n"
    )


def write_page(path: str | os.PathLike, title: str, parts: Sequence[Part]) -> None:
    artifacts.write_text(path, render_page(title, parts))


def number(value: object, digits: int = 3) -> str:
    """A number as a reader wants it: floats to `digits` significant digits, no exponent below
    1e-3 unless needed; anything else as its str."""
    if isinstance(value, bool) or not isinstance(value, float):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}".rstrip("0").rstrip(".") or "0"


def table_html(rows: Sequence[dict], columns: Sequence[str] | None = None, digits: int = 3) -> str:
    """An HTML table from a list of dicts; numbers right-aligned and rounded, lists joined, and
    the table scrolls sideways inside the page instead of overflowing it."""
    columns = list(columns or (rows[0].keys() if rows else []))

    def cell(value) -> str:
        if isinstance(value, (list, tuple)):
            return f"<td>{html.escape(', '.join(number(v, digits) for v in value))}</td>"
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        opening = '<td class="num">' if numeric else "<td>"
        return f"{opening}{html.escape(number(value, digits))}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f'<div class="wide"><table><tr>{head}</tr>{body}</table></div>'


def attention_views(examples: Sequence[dict], relative_to_uniform: bool = False) -> list[View]:
    """circuitsvis AttentionHeads views of `hooks.attention.AttentionExample`s (as dicts).

    With `relative_to_uniform` (for bidirectional attention over L keys, like the toy's), each
    entry is shown as its excess over uniform attention 1/L, coloured on a symmetric scale set by
    the largest excess: near-uniform attention would otherwise render as blank squares."""
    views = []
    for e in examples:
        props = {"attention": e["pattern"], "tokens": e["tokens"], "attentionHeadNames": e["heads"], "maskUpperTri": False}
        if relative_to_uniform:
            keys = len(e["tokens"])
            excess = [[[value - 1.0 / keys for value in row] for row in head] for head in e["pattern"]]
            largest = max(abs(v) for head in excess for row in head for v in row) or 1.0
            props |= {"attention": excess, "maxValue": largest, "minValue": -largest,
                      "positiveColor": "blue", "negativeColor": "red"}
        views.append(View(heading=e["heading"], element="AttentionHeads", props=props))
    return views
