"""Attention probes: which positions a query reads from, per layer and head.

Context
-------
Paper A's toy analysis asks whether the last position attends to tokens of its own cluster
(Lemma 6); its LLM analysis asks whether the final position of a hijacked prompt reads from the
hijack sentences instead of the subject. Both are the same measurement: the attention pattern's
row at one query position, summed over a set of key positions. Three tools:

- `capture_patterns`: the full patterns of chosen layers (and heads), caching nothing else
  (`names_filter`) and stopping the forward after the last chosen layer when the model allows.
- `attention_mass`: for a batch of prompts of different lengths, the mass each head sends from
  one query position per prompt (default: its last real token) onto a per-prompt set of key
  positions, as a [batch, layer, head] tensor. Only that tensor is kept, never the patterns.
- `class_attention_matrix`: mass by class of the key token, averaged by class of the query
  (e.g. the toy's latent clusters): a heat map whose rows sum to 1.
- `attention_examples`: chosen heads' full patterns on a few inputs, with token labels and what
  the model predicts, as plain data that `lca_interp.report` draws as circuitsvis views.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Optional, Union

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.utilities import get_act_name

from lca_interp.hooks.select import HeadLike, Inputs, as_tokens, heads_of, last_positions, layers_of

KeyPositions = Union[Bool[Tensor, "batch pos"], Sequence[Iterable[int]]]


def pattern_hook(layer: int) -> str:
    return get_act_name("pattern", layer)


def _stop_after(model, layers: list[int]) -> dict:
    """`stop_at_layer` past the last chosen layer, where the model's forward takes it (the toy's
    does not, and has one layer anyway)."""
    if "stop_at_layer" in inspect.signature(model.forward).parameters and max(layers) + 1 < model.cfg.n_layers:
        return {"stop_at_layer": max(layers) + 1}
    return {}


@torch.no_grad()
def capture_patterns(
    model,
    inputs: Inputs,
    layers: Union[int, Iterable[int], None] = None,
    heads: Optional[Sequence[int]] = None,
) -> dict[int, Float[Tensor, "batch head query key"]]:
    """Attention patterns {layer: [batch, head, query, key]} of the chosen layers and heads.

    Strings are right-padded; the padded key columns of a shorter prompt hold attention only from
    padded queries (causal masking), so its real rows are exact.
    """
    layers = layers_of(model, layers)
    heads = list(range(model.cfg.n_heads)) if heads is None else list(heads)
    if not heads or not all(0 <= h < model.cfg.n_heads for h in heads):
        raise ValueError(f"heads must be a non-empty list within 0..{model.cfg.n_heads - 1}, got {heads}.")
    tokens = as_tokens(model, inputs)
    names = {pattern_hook(layer) for layer in layers}
    _, cache = model.run_with_cache(
        tokens, names_filter=lambda name: name in names, return_type=None, **_stop_after(model, layers)
    )
    return {layer: cache[pattern_hook(layer)][:, heads] for layer in layers}


def key_mask(key_positions: KeyPositions, batch: int, n_pos: int) -> Bool[Tensor, "batch pos"]:
    """A [batch, pos] mask from per-prompt position lists (negative indices count from `n_pos`)."""
    if isinstance(key_positions, Tensor):
        if key_positions.dtype != torch.bool or tuple(key_positions.shape) != (batch, n_pos):
            raise ValueError(f"a key mask must be a bool tensor of shape {(batch, n_pos)}, got {key_positions.dtype} {tuple(key_positions.shape)}.")
        return key_positions
    if len(key_positions) != batch:
        raise ValueError(f"got key positions for {len(key_positions)} prompts but {batch} prompts.")
    mask = torch.zeros(batch, n_pos, dtype=torch.bool)
    for row, positions in enumerate(key_positions):
        for position in positions:
            if not -n_pos <= position < n_pos:
                raise ValueError(f"key position {position} of prompt {row} is outside its {n_pos} tokens.")
            mask[row, position] = True
    return mask


@torch.no_grad()
def attention_mass(
    model,
    inputs: Inputs,
    key_positions: KeyPositions,
    query_positions: Optional[Int[Tensor, "batch"]] = None,
    layers: Union[int, Iterable[int], None] = None,
) -> Float[Tensor, "batch layer head"]:
    """Attention mass from one query position per prompt onto its key positions, per layer and head.

    `query_positions` defaults to each prompt's last real token; `key_positions` is a bool mask
    [batch, pos] or one iterable of positions per prompt. Layers are in `layers_of` order.
    """
    layers = layers_of(model, layers)
    tokens = as_tokens(model, inputs)
    batch, n_pos = tokens.shape
    if query_positions is None:
        query_positions = last_positions(model, inputs)
    query_positions = torch.as_tensor(query_positions, dtype=torch.long).cpu()
    if query_positions.shape != (batch,) or not bool(((query_positions >= 0) & (query_positions < n_pos)).all()):
        raise ValueError(f"query_positions must hold one position in 0..{n_pos - 1} per prompt ({batch}).")
    mask = key_mask(key_positions, batch, n_pos).to(tokens.device)
    rows = torch.arange(batch, device=tokens.device)
    queries = query_positions.to(tokens.device)
    masses: dict[int, Tensor] = {}

    def keep_mass(pattern: Float[Tensor, "batch head query key"], hook) -> None:
        picked = pattern[rows, :, queries]  # [batch, head, key]
        masses[hook.layer()] = (picked * mask[:, None]).sum(-1).cpu()

    with model.hooks(fwd_hooks=[(pattern_hook(layer), keep_mass) for layer in layers]):
        model(tokens, return_type=None, **_stop_after(model, layers))
    return torch.stack([masses[layer] for layer in layers], dim=1)


def class_attention_matrix(
    pattern_rows: Float[Tensor, "batch key"],
    key_classes: Int[Tensor, "batch key"],
    query_classes: Int[Tensor, "batch"],
    n_classes: int,
) -> Float[Tensor, "n_classes n_classes"]:
    """Mean attention mass onto each key class (columns), averaged over the queries of each class
    (rows). A row sums to the mean mass of its queries (1 for full pattern rows); classes with no
    query give a zero row."""
    key_onehot = torch.nn.functional.one_hot(key_classes, n_classes).to(pattern_rows.dtype)
    mass = torch.einsum("bk,bkc->bc", pattern_rows, key_onehot)  # [batch, key class]
    query_onehot = torch.nn.functional.one_hot(query_classes, n_classes).to(pattern_rows.dtype)
    return (query_onehot.T @ mass) / query_onehot.sum(0).clamp_min(1)[:, None]


@dataclass
class AttentionExample:
    """Attention of chosen heads on one input: `pattern[h][q][k]` for head `heads[h]` over the
    input's real tokens (`tokens`, labelled), headed by the target and the model's prediction."""

    heading: str
    tokens: list[str]
    heads: list[str]
    pattern: list[list[list[float]]]


@torch.no_grad()
def attention_examples(
    model,
    inputs: Inputs,
    heads: Optional[Sequence[HeadLike]] = None,
    targets: Optional[Sequence[int]] = None,
    token_labels: Optional[Callable[[int], str]] = None,
) -> list[AttentionExample]:
    """Patterns of `heads` ((layer, head) pairs; default: every head of layer 0) on each input.

    Tokens are labelled by `token_labels(id)` (the toy has no tokenizer), else by the model's
    tokenizer. Each heading names the target (when given) and the model's top next-token
    prediction at the input's last real token."""
    chosen = heads_of(model, heads if heads is not None else [(0, h) for h in range(model.cfg.n_heads)])
    tokens = as_tokens(model, inputs)
    lengths = (last_positions(model, inputs) + 1).tolist()
    layers = sorted({layer for layer, _ in chosen})
    names = {pattern_hook(layer) for layer in layers}
    logits, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names)
    label = token_labels or (lambda t: model.to_string(torch.tensor([t])))
    examples = []
    for row, length in enumerate(lengths):
        ids = tokens[row, :length].tolist()
        prediction = label(int(logits[row, length - 1].argmax()))
        target = f"target {label(int(targets[row]))}, " if targets is not None else ""
        pattern = torch.stack([cache[pattern_hook(layer)][row, head, :length, :length] for layer, head in chosen])
        examples.append(AttentionExample(
            heading=f"{target}model predicts {prediction}", tokens=[label(t) for t in ids],
            heads=[str(head) for head in chosen], pattern=pattern.float().cpu().tolist()))
    return examples
