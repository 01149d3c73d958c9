"""Figures and offline pages, drawn from result data alone: the last layer before the CLI.

Every result the library measures is a dataclass whose `to_dict()` carries a `kind`. `save`
writes it as JSON (atomically, stamped with its `provenance`) and draws it; `redraw` finds every result JSON under a folder and
draws it again, with no model loaded. A new kind of result registers its drawing in `RENDERERS`.

- `claims`: paper A's claims → one PNG per claim and `report.html`;
- `hijack`: ES(k) → `<name>.png`;
- `anatomy`, `toy_anatomy`: the anatomy of a hijack → `<name>.png` and `<name>.html`;
- `recall`: paper B → `<name>.png` and `<name>.html`;
- `training`: a toy's `metrics.json` → `training.png`; `toy_attention` → `<name>.html`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

from lca_interp import artifacts
from lca_interp.provenance import provenance
from lca_interp.report import anatomy, claims, hijack, recall, training

RENDERERS: dict[str, Callable[[dict, Path], list[Path]]] = {
    "claims": claims.render,
    "hijack": hijack.render,
    "anatomy": anatomy.render_llm,
    "toy_anatomy": anatomy.render_toy,
    "recall": recall.render,
    "training": training.render_training,
    "toy_attention": training.render_attention,
}
ZOO = "runs"  # the trained toys of a claims folder: redrawn only when asked for by path


def save(result: Union[dict, object], path: Union[str, Path], settings: Optional[dict] = None) -> list[Path]:
    """Write a result (a dict or anything with `to_dict()`, carrying its `kind`) to `path` as
    JSON, stamped with its provenance and the `settings` that produced it (the command line's
    flags, say), then draw it beside. Returns the JSON and everything drawn."""
    data = dict(result) if isinstance(result, dict) else result.to_dict()
    if data.get("kind") not in RENDERERS:
        raise ValueError(f"{path}: a result needs a kind among {', '.join(RENDERERS)}, got {data.get('kind')!r}.")
    path = Path(path)
    data.setdefault("provenance", {**provenance(), **({"settings": settings} if settings is not None else {})})
    with artifacts.transaction():  # the JSON and what is drawn from it appear together, or none does
        artifacts.write_json(path, data)
        drawn = RENDERERS[data["kind"]](data, path)
    return [path, *drawn]


def render(path: Union[str, Path]) -> list[Path]:
    """Draw one result JSON again from the file alone."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable result JSON ({error}).") from None
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in RENDERERS:
        raise ValueError(f"{path} is not a result this library draws (kind {kind!r}; known: {', '.join(RENDERERS)}).")
    with artifacts.transaction():
        return RENDERERS[kind](data, path)


def results_in(folder: Union[str, Path]) -> list[Path]:
    """Every result JSON under `folder` (by its `kind`), leaving out a claims folder's toy zoo."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder; pass a folder of results.")
    found = []
    for directory, subfolders, files in os.walk(folder):
        subfolders.sort()
        if "claims.json" in files and ZOO in subfolders:
            subfolders.remove(ZOO)
        for name in sorted(f for f in files if f.endswith(".json")):
            try:
                data = json.loads((Path(directory) / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and data.get("kind") in RENDERERS:
                found.append(Path(directory) / name)
    return found


def redraw(folder: Union[str, Path]) -> list[Path]:
    """Draw every result under `folder` again; returns what was written."""
    return [written for path in results_in(folder) for written in render(path)]
