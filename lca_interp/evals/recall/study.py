"""Paper B's recall study on one model and fact set: every mechanism and both mitigations.

Held out: the facts (countries) are split, seeded, into a fit half and an evaluation half. The
argument-passing heads are ranked, the MLP to decompose is chosen and the final MLP's intercept
(what the "intercept" mitigation subtracts) is fitted on the fit half; every P(answer), the
decomposition, the heads' memory scores and the anti-overconfidence numbers are measured on
the evaluation half.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import Tensor

from lca_interp.evals.recall.heads import argument_passing_heads, head_memory_scores
from lca_interp.evals.recall.items import answer_scores, recall_items, single_token_facts
from lca_interp.evals.recall.mlp import mlp_decomposition
from lca_interp.evals.recall.overconfidence import anti_overconfidence
from lca_interp.facts import Fact
from lca_interp.hooks.attribution import residual_components
from lca_interp.hooks.mitigations import MITIGATIONS, mitigation
from lca_interp.hooks.select import Head
from lca_interp.pretrained import describe

KIND = "recall"


@dataclass
class RecallResult:
    model: str
    n: int  # zero-shot prompts of the evaluation half
    shots: int
    split: dict  # seed and the fit / evaluation facts (subjects)
    zero_shot: dict  # {"baseline": {...}, "masked": ..., "intercept": ..., "both": ...}
    few_shot: dict
    heads: list[dict]
    head_memory: dict  # top heads' OV as a subject → answer memory (hooks.circuits.memory_score)
    mlp_decomposition: dict
    final_mlp: dict
    anti_overconfidence: dict
    model_source: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        data = {"kind": KIND, **asdict(self)}
        for key in ("baseline", *MITIGATIONS):
            data[f"{key}_p"] = self.zero_shot[key]["p_mean"]
        return data


def run_recall(model, facts: Optional[Sequence[Fact]] = None, shots: int = 3, limit: Optional[int] = None,
               mlp_layer: Optional[int] = None, batch_size: int = 16, model_name: str = "", seed: int = 0,
               progress: bool = True, fit_fraction: float = 0.5) -> tuple[RecallResult, Tensor]:
    """Argument-passing heads, the MLP after the top one and the final MLP as regressions, the
    final layer's anti-overconfidence, and P(answer) zero-shot and few-shot under each mitigation,
    fitted and measured on disjoint facts (see the module docstring). Returns the result and the
    final MLP's intercept (fitted on the fit half)."""
    began = time.perf_counter()
    usable = single_token_facts(model, facts, limit, seed)
    if not 0 < fit_fraction < 1:
        raise ValueError(f"fit_fraction must lie strictly between 0 and 1, got {fit_fraction}.")
    order = torch.randperm(len(usable), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = round(fit_fraction * len(usable))
    fit_facts, eval_facts = [usable[i] for i in order[:cut]], [usable[i] for i in order[cut:]]
    if min(len(fit_facts), len(eval_facts)) < 3:
        raise ValueError(f"{len(usable)} facts with a single-token answer split {len(fit_facts)}/{len(eval_facts)}; the "
                         "regressions need at least 3 on each side, so use more facts.")
    fit = recall_items(model, fit_facts, shots=0, seed=seed)
    zero = recall_items(model, eval_facts, shots=0, seed=seed)
    few = recall_items(model, eval_facts, shots=shots, seed=seed) if shots else zero
    heads = argument_passing_heads(model, fit, batch_size, progress, seed=seed)
    layer = mlp_layer if mlp_layer is not None else min(Head.parse(heads[0].head).layer + 1, model.cfg.n_layers - 1)
    final = mlp_decomposition(model, fit, model.cfg.n_layers - 1, batch_size=batch_size)
    components = residual_components(model, [item.prompt for item in zero], batch_size=batch_size)
    decomposition = mlp_decomposition(model, zero, layer, components)
    measured: dict[str, dict] = {}
    for label, items in (("zero_shot", zero), ("few_shot", few)):
        measured[label] = {}
        for name in (None, *MITIGATIONS):
            with mitigation(model, name, final.intercept):
                measured[label][name or "baseline"] = answer_scores(model, items, batch_size).summary()
    result = RecallResult(
        model=model_name, n=len(zero), shots=shots,
        split={"seed": seed, "fit": [f.subject for f in fit_facts], "evaluation": [f.subject for f in eval_facts]},
        zero_shot=measured["zero_shot"], few_shot=measured["few_shot"],
        heads=[asdict(h) for h in heads], head_memory=head_memory_scores(model, zero, [h.head for h in heads[:3]]),
        mlp_decomposition=decomposition.to_dict(), final_mlp=final.to_dict(),
        anti_overconfidence=anti_overconfidence(model, zero, components, batch_size),
        model_source=describe(model), seconds=time.perf_counter() - began,
    )
    return result, final.intercept
