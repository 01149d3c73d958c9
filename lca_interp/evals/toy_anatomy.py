"""The anatomy of a hijack, asked of the LCA toy: where its attention goes when part of the
context was drawn for another output, and what the value matrix writes from there.

Context
-------
Paper A explains context hijacking with its toy: the last position attends to context tokens and
the value matrix, an associative memory, maps each attended token to the outputs it is associated
with; mixing in tokens associated with another output y' moves the prediction there. The toy has
no residual stream, no normalisation and W_O = I, so with the last position's attention a_j and
the token map M = W_E W_V W_Eᵀ (`hooks.circuits.full_ov_circuit`), exactly

    logit(y') − logit(y) = Σ_j a_j (M[x_j, y'] − M[x_j, y]),

which is split here into what the foreign and the own tokens write. The same quantities are
measured on an LLM by `evals.anatomy` (attention to the hijack sentences, direct logit attribution).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import partial

import torch

from lca_interp.hooks.attention import AttentionExample, attention_examples, capture_patterns
from lca_interp.hooks.circuits import full_ov_circuit, memory_score
from lca_interp.task import LCATask, mix_contexts, token_label
from lca_interp.theory import toy_reference_map

KIND = "toy_anatomy"


@dataclass
class ToyAnatomy:
    """Hijacking the LCA toy by mixing in another output's context, per mixed fraction."""

    task: dict
    fractions: list[float]
    n: int
    mass_foreign: list[float]  # attention mass of the last position on the foreign tokens
    uniform_foreign: list[float]  # the share of foreign tokens: what uniform attention would give
    write_foreign: list[float]  # mean contribution of foreign tokens to logit(y') − logit(y)
    write_own: list[float]  # ... of the own tokens (t_L included)
    logit_diff: list[float]  # the toy's mean logit(y') − logit(y)
    flip_rate: list[float]  # predicts y'
    memory: dict = field(default_factory=dict)  # W_E W_V W_Eᵀ against Eq 5.1's Hamming-1 map
    examples: list[AttentionExample] = field(default_factory=list)  # half-mixed contexts

    def to_dict(self) -> dict:
        return {"kind": KIND, "model": "lca-toy", **asdict(self)}


@torch.no_grad()
def toy_hijack_anatomy(model, task: LCATask, n: int = 2000, fractions: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0),
                       seed: int = 0, n_examples: int = 3) -> ToyAnatomy:
    """The LLM anatomy's questions asked of the toy on n pairs of contexts with distinct outputs."""
    x_own, y_own = task.sample(n, seed=seed)
    x_other, y_other = task.sample(n, seed=seed + 1)
    keep = y_own != y_other
    x_own, y_own, x_other, y_other = x_own[keep], y_own[keep], x_other[keep], y_other[keep]
    memory = full_ov_circuit(model, 0, 0, torch.arange(task.vocab_size))  # [V, V]
    rows = torch.arange(len(y_own))
    measured: dict[str, list[float]] = {name: [] for name in
                                        ("mass_foreign", "uniform_foreign", "write_foreign", "write_own", "logit_diff", "flip_rate")}
    for fraction in fractions:
        mixed = mix_contexts(x_own, x_other, fraction)
        foreign = torch.zeros_like(mixed, dtype=torch.bool)
        foreign[:, : int(fraction * (task.context_len - 1))] = True
        pattern = capture_patterns(model, mixed)[0][:, 0, -1]  # [batch, key]
        writes = pattern * (memory[mixed, y_other[:, None]] - memory[mixed, y_own[:, None]])  # [batch, key]
        logits = model(mixed, last_position_only=True)
        measured["mass_foreign"].append(float((pattern * foreign).sum(-1).mean()))
        measured["uniform_foreign"].append(float(foreign.float().mean()))
        measured["write_foreign"].append(float((writes * foreign).sum(-1).mean()))
        measured["write_own"].append(float((writes * ~foreign).sum(-1).mean()))
        measured["logit_diff"].append(float((logits[rows, y_other] - logits[rows, y_own]).mean()))
        measured["flip_rate"].append(float((logits.argmax(-1) == y_other).float().mean()))
    half = mix_contexts(x_own[:n_examples], x_other[:n_examples], 0.5)
    examples = attention_examples(model, half, targets=y_own[:n_examples].tolist(), token_labels=partial(token_label, m=task.m))
    return ToyAnatomy(task=task.to_dict(), fractions=list(fractions), n=len(y_own), **measured,
                      memory=memory_score(memory, toy_reference_map(task)).to_dict(), examples=examples)
