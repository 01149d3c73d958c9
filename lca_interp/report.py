"""Figures and self-contained HTML pages: what a researcher looks at after a run.

Pages open offline. circuitsvis's `str(html)` imports its script from a CDN, and its `local_src`
repeats the 1.3 MB bundle once per view; here the bundle (shipped inside the circuitsvis wheel,
found with importlib.resources) is inlined once per page as a classic script, which defines the
global `CircuitsVis`, and each view is a small `CircuitsVis.render(...)` call after it. Figures
are embedded as base64 PNG, so one HTML file carries everything.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from collections.abc import Sequence
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


def figure_html(figure, alt: str = "") -> str:
    """A matplotlib figure as an inline <img> (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def png_html(path: str | os.PathLike, alt: str = "") -> str:
    data = base64.b64encode(open(path, "rb").read()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_page(title: str, parts: Sequence[Part]) -> str:
    """One self-contained page: HTML fragments and circuitsvis views, the bundle inlined once."""
    body = [part if isinstance(part, str) else _view_html(part) for part in parts]
    script = (
        f"<script>{_circuitsvis_bundle()}</script>\n"
        if any(isinstance(part, View) for part in parts)
        else ""
    )
    return (
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title>\n<style>body{{font-family:sans-serif;max-width:"
        "1100px;margin:2em auto;padding:0 1em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}img{max-width:100%}</style>\n"
        f"</head><body>\n<h1>{html.escape(title)}</h1>\n{script}" + "\n".join(body) + "\n</body></html>\n"
    )


def write_page(path: str | os.PathLike, title: str, parts: Sequence[Part]) -> None:
    artifacts.write_text(path, render_page(title, parts))


def table_html(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """A plain HTML table from a list of dicts (floats shown with 4 significant digits)."""
    columns = list(columns or (rows[0].keys() if rows else []))

    def cell(value) -> str:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f"<td>{html.escape(text)}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(row.get(c, "")) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def training_figure(history: Sequence[dict], bayes_accuracy: float, title: str):
    """Held-out accuracy and loss against step, with the Bayes ceiling as a dashed line."""
    from lca_interp.artifacts import pyplot

    plt = pyplot()

    steps = [h["step"] for h in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_acc.plot(steps, [h["accuracy"] for h in history], marker="o", label="toy")
    ax_acc.axhline(bayes_accuracy, color="k", linestyle="--", label=f"Bayes ceiling {bayes_accuracy:.3f}")
    ax_acc.set(xlabel="step", ylabel="held-out accuracy", ylim=(0, 1.02), title=title)
    ax_acc.legend(loc="lower right")
    ax_loss.plot(steps, [h["loss"] for h in history], marker="o", label="held-out")
    ax_loss.plot(steps, [h["train_loss"] for h in history], alpha=0.6, label="train batch")
    ax_loss.set(xlabel="step", ylabel="cross-entropy (nats)", yscale="log")
    ax_loss.legend()
    fig.tight_layout()
    return fig


def toy_attention_views(model, task, x, y) -> list[View]:
    """One circuitsvis view per LCA context: the toy's full bidirectional pattern, tokens shown as
    id:bits, headed by the true output and the toy's prediction."""
    from lca_interp.task import token_label

    _, cache = model.run_with_cache(x, names_filter="blocks.0.attn.hook_pattern")
    predictions = model(x, last_position_only=True).argmax(-1)
    return [
        View(
            heading=(
                f"context {i}: z* = {token_label(int(y[i]), task.m)}, "
                f"toy predicts {token_label(int(predictions[i]), task.m)}"
            ),
            element="AttentionHeads",
            props={
                "attention": cache["blocks.0.attn.hook_pattern"][i],
                "tokens": [token_label(int(t), task.m) for t in x[i]],
                "attentionHeadNames": ["L0H0"],
                "maskUpperTri": False,
            },
        )
        for i in range(len(y))
    ]
