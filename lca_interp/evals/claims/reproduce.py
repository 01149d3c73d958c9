"""`reproduce`: every synthetic claim of paper A at one scale, as data.

The toys all claims need are trained first, in batched stacks (`Reproduction.prepare`), then
each claim is measured. The result holds the claims, the scale, the wall time and the attention
of one trained toy on two test contexts (for the report page); `lca_interp.report` writes it as
`claims.json` and draws every figure and `report.html` from that file alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Optional

from tqdm.auto import tqdm

from lca_interp.devices import resolve_device
from lca_interp.evals.claims import CLAIMS, QUICK, Claim, Scale
from lca_interp.evals.claims.protocol import ToySpec
from lca_interp.evals.claims.zoo import Reproduction, TrainedToy, Zoo
from lca_interp.hooks.attention import AttentionExample, attention_examples
from lca_interp.task import token_label

KIND = "claims"


@dataclass
class Reproduced:
    claims: list[Claim]
    scale: Scale
    seconds: float
    attention_examples: list[AttentionExample]

    def to_dict(self) -> dict:
        return {"kind": KIND, "scale": asdict(self.scale), "seconds": self.seconds,
                "holds": sum(c.holds for c in self.claims), "claims": [c.to_dict() for c in self.claims],
                "attention_examples": [asdict(e) for e in self.attention_examples]}


def reproduce(
    out_dir: str | Path,
    scale: Scale = QUICK,
    seeds: Optional[int] = None,
    claim_ids: Optional[Sequence[str]] = None,
    progress: bool = True,
    device: Optional[str] = None,
) -> Reproduced:
    """Measure the claims `claim_ids` (default: all) at `scale`; trained toys are kept in
    `out_dir/runs/` and reused by later calls. `device`: where the toys train (default: the CPU);
    the claims are measured from the saved toys, on the CPU."""
    if seeds is not None:
        if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
            raise ValueError(f"seeds must be a positive integer, got {seeds!r}.")
        scale = replace(scale, seeds=seeds)
    ids = list(claim_ids or CLAIMS)
    unknown = [i for i in ids if i not in CLAIMS]
    if unknown:
        raise ValueError(f"unknown claim ids {unknown}; choose from {', '.join(CLAIMS)}.")
    resolve_device(device or "cpu")  # a bad device is one sentence before anything trains
    r = Reproduction(scale, Zoo(Path(out_dir) / "runs", progress=progress, device=device))
    began = time.perf_counter()
    specs = list(dict.fromkeys(spec for claim_id in ids for spec in CLAIMS[claim_id].needs(scale)))
    r.prepare(specs)
    claims = [CLAIMS[claim_id](r) for claim_id in tqdm(ids, desc=f"claims ({scale.name})", disable=not progress)]
    toy = _pictured_toy(r, specs)
    x, y = r.test_set(toy.task, 0)
    examples = attention_examples(toy.model, x[:2], targets=y[:2].tolist(), token_labels=partial(token_label, m=toy.task.m))
    return Reproduced(claims, scale, time.perf_counter() - began, examples)


def _pictured_toy(r: Reproduction, specs: list[ToySpec]) -> TrainedToy:
    """The toy whose attention the report shows: seed 0's main toy, or, where no claim asked for
    that one, seed 0's toy of the first spec a claim asked for (none is trained for the picture)."""
    if not specs or ToySpec() in specs:
        return r.toy(0)
    first = specs[0]
    return r.select(first).toys[0] if first.to_plateau else r.toy(0, first)
