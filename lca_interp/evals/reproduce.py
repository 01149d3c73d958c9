"""`lca-interp reproduce`: every synthetic claim of paper A, measured, tabled and drawn.

Writes `claims.json` (a list of {id, claim, criterion, measured, holds, figure}), one PNG per
claim, `reproduce.json` (scale, seeds, wall time) and `report.html`: the claims table, every
figure and a trained toy's attention in circuitsvis, in one file that opens offline. Trained toys
are kept in `runs/`, so a second call (or one after an interruption) reuses them.
"""

from __future__ import annotations

import html
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from collections.abc import Sequence
from typing import Optional

from tqdm.auto import tqdm

from lca_interp import artifacts, report
from lca_interp.evals.lca import CLAIMS, QUICK, Claim, Reproduction, Scale
from lca_interp.evals.zoo import Zoo


@dataclass
class Reproduced:
    claims: list[Claim]
    scale: Scale
    seconds: float

    def to_dict(self) -> dict:
        return {"scale": asdict(self.scale), "claims": [c.id for c in self.claims],
                "holds": sum(c.holds for c in self.claims), "seconds": self.seconds}


def reproduce(
    out_dir: str | Path,
    scale: Scale = QUICK,
    seeds: Optional[int] = None,
    claim_ids: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> Reproduced:
    """Measure the claims `claim_ids` (default: all) at `scale` and write the report to `out_dir`."""
    out = Path(out_dir)
    if seeds is not None:
        if seeds < 1:
            raise ValueError(f"seeds must be ≥ 1, got {seeds}.")
        scale = replace(scale, seeds=seeds)
    ids = list(claim_ids or CLAIMS)
    unknown = [i for i in ids if i not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim ids {unknown}; choose from {', '.join(CLAIMS)}.")
    r = Reproduction(scale, Zoo(out / "runs", progress=progress))
    began = time.perf_counter()
    claims = []
    for claim_id in tqdm(ids, desc=f"claims ({scale.name})", disable=not progress):
        claim = CLAIMS[claim_id](r)
        artifacts.save_figure(out / f"{claim_id}.png", claim.figure)
        claims.append(claim)
    seconds = time.perf_counter() - began
    artifacts.write_json(out / "claims.json", [{**c.to_dict(), "figure": f"{c.id}.png"} for c in claims])
    result = Reproduced(claims, scale, seconds)
    artifacts.write_json(out / "reproduce.json", result.to_dict())
    _write_report(out, r, claims, seconds)
    return result


def _write_report(out: Path, r: Reproduction, claims: list[Claim], seconds: float) -> None:
    rows = [
        {"id": c.id, "claim": c.claim, "criterion": c.criterion,
         "holds": "yes" if c.holds else "NO"}
        for c in claims
    ]
    toy = r.trained(0)
    x, y = r.test_set(toy.task, 0)
    scale = r.scale
    parts: list[report.Part] = [
        f"<p>Scale <b>{scale.name}</b>: m = {scale.m} (V = {2**scale.m}), main L = "
        f"{scale.context_lens[0]}, d = {scale.d_main}, {scale.steps} steps, {scale.seeds} seeds; "
        f"{sum(c.holds for c in claims)} of {len(claims)} claims hold; took {seconds / 60:.1f} min.</p>",
        report.table_html(rows),
    ]
    for c in claims:
        parts.append(f"<h2>{c.id}: {'holds' if c.holds else 'does not hold'}</h2>"
                     f"<p>{html.escape(c.claim)}<br><i>Criterion:</i> {html.escape(c.criterion)}</p>")
        parts.append(report.png_html(out / f"{c.id}.png", alt=c.id))
    parts.append("<h2>A trained toy's attention (seed 0, main setting)</h2>")
    parts.extend(report.toy_attention_views(toy.model, toy.task, x[:2], y[:2]))
    report.write_page(out / "report.html", "Paper A, synthetic claims", parts)

