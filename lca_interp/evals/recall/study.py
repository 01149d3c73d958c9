"""Paper B's recall study on one model and fact set: every mechanism and both mitigations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Optional

from torch import Tensor

from lca_interp.evals.recall.heads import argument_passing_heads, head_memory_scores
from lca_interp.evals.recall.items import answer_scores, recall_items
from lca_interp.evals.recall.mlp import mlp_decomposition
from lca_interp.evals.recall.overconfidence import anti_overconfidence
from lca_interp.facts import Fact
from lca_interp.hooks.attribution import residual_components
from lca_interp.hooks.mitigations import MITIGATIONS, mitigation
from lca_interp.hooks.select import Head

KIND = "recall"


@dataclass
class RecallResult:
    model: str
    n: int
    shots: int
    zero_shot: dict  # {"baseline": {...}, "masked": ..., "intercept": ..., "both": ...}
    few_shot: dict
    heads: list[dict]
    head_memory: dict  # top heads' OV as a subject → answer memory (hooks.circuits.memory_score)
    mlp_decomposition: dict
    final_mlp: dict
    anti_overconfidence: dict

    def to_dict(self) -> dict:
        data = {"kind": KIND, **asdict(self)}
        for key in ("baseline", *MITIGATIONS):
            data[f"{key}_p"] = self.zero_shot[key]["p_mean"]
        return data


def run_recall(model, facts: Optional[Sequence[Fact]] = None, shots: int = 3, limit: Optional[int] = None,
               mlp_layer: Optional[int] = None, batch_size: int = 16, model_name: str = "", seed: int = 0,
               progress: bool = True) -> tuple[RecallResult, Tensor]:
    """Argument-passing heads, the MLP after the top one and the final MLP as regressions, the
    final layer's anti-overconfidence, and P(answer) zero-shot and few-shot under each mitigation.
    Returns the result and the final MLP's intercept."""
    zero = recall_items(model, facts, shots=0, limit=limit, seed=seed)
    few = recall_items(model, facts, shots=shots, limit=limit, seed=seed) if shots else zero
    heads = argument_passing_heads(model, zero, batch_size, progress)
    top_layer = Head.parse(heads[0].head).layer
    layer = mlp_layer if mlp_layer is not None else min(top_layer + 1, model.cfg.n_layers - 1)
    components = residual_components(model, [item.prompt for item in zero], batch_size=batch_size)
    decomposition = mlp_decomposition(model, zero, layer, components)
    final = mlp_decomposition(model, zero, model.cfg.n_layers - 1, components)
    measured: dict[str, dict] = {}
    for label, items in (("zero_shot", zero), ("few_shot", few)):
        measured[label] = {}
        for name in (None, *MITIGATIONS):
            with mitigation(model, name, final.intercept):
                measured[label][name or "baseline"] = answer_scores(model, items, batch_size).summary()
    result = RecallResult(
        model=model_name, n=len(zero), shots=shots, zero_shot=measured["zero_shot"], few_shot=measured["few_shot"],
        heads=[asdict(h) for h in heads], head_memory=head_memory_scores(model, zero, [h.head for h in heads[:3]]),
        mlp_decomposition=decomposition.to_dict(), final_mlp=final.to_dict(),
        anti_overconfidence=anti_overconfidence(model, zero, components, batch_size),
    )
    return result, final.intercept
