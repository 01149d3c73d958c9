"""matplotlib on the file-only Agg backend, and the few helpers every figure here shares."""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from pathlib import Path

from lca_interp import artifacts


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed), imported on first use; a
    notebook's inline backend is kept, so figures drawn there show in the notebook."""
    import matplotlib

    if "inline" not in matplotlib.get_backend():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(path: str | os.PathLike, figure) -> Path:
    """Save a figure atomically (format from the suffix) and close it."""
    with artifacts.atomic_path(path) as tmp:
        figure.savefig(tmp, format=Path(path).suffix.lstrip("."), dpi=120, bbox_inches="tight")
    pyplot().close(figure)
    return Path(path)


def figure_html(figure, alt: str = "") -> str:
    """A figure as an inline base64 <img> (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(figure)
    return _img(buffer.getvalue(), alt)


def png_html(path: str | os.PathLike, alt: str = "") -> str:
    """A PNG file inline (the one just drawn, even before its transaction ends)."""
    return _img(artifacts.current(path).read_bytes(), alt)


def _img(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def log_x(ax, values: Sequence[int], label: str) -> None:
    """A log x axis ticked at exactly the measured values."""
    ax.set(xscale="log", xlabel=label)
    ax.set_xticks(list(values), [str(v) for v in values])
    ax.minorticks_off()


def errorbars(ax, xs, rows: Sequence[dict], label: str, **style) -> None:
    """Means ± sd of `mean_sd` rows against xs."""
    ax.errorbar(xs, [r["mean"] for r in rows], yerr=[r["sd"] for r in rows], marker="o", capsize=3, label=label, **style)
