"""Interventions: restrict attention, steer, ablate and patch, as context managers on any model.

Context
-------
Reading activations says what a model computes; changing one and watching the output says what
the computation is *for*. Paper B's mitigations are interventions (make the final layer's last
position attend only to itself; subtract the final MLP's intercept from the residual stream), and
its circuit is found by ablating and patching heads. Paper A's toy reads the same way: with its
last position attending only to itself, the toy's logits are exactly W_E[x_L] W_V W_Eᵀ, the value
matrix read as an associative memory with the last token as the key.

Each function validates everything it can (layers, heads, hook names, vector and source sizes,
positions) and raises a one-sentence ValueError *before* any hook exists, then returns
`model.hooks(fwd_hooks=...)`: hooks are attached when the `with` block is entered and removed in
that context manager's `finally`, only at its own context level, so an exception in the body or
in the forward never leaves a hook behind, and hooks a user attached elsewhere stay. What depends
on the run (sequence length, batch) is checked inside the hook, with the same kind of error.

    with restrict_attention(model, layers=-1):        # paper B's first mitigation
        logits = model(tokens)
    with ablate_heads(model, [(9, 6)], mode="mean", means=mean_head_outputs(model, tokens, [(9, 6)])):
        ...

Positions
---------
Positions are indices into the activation's position axis, negative counting from the end; for
`hook_pattern` and `hook_attn_scores` that axis is the query axis and an index names a *token*
(key) position. A forward can compute fewer queries than tokens (the LCA toy's
`last_position_only` path, TransformerLens's KV cache): the queries are then the last tokens, so
`restrict_attention` maps token positions onto them and leaves alone any position whose query is
not computed. Other query-side hooks on that path (`hook_z`, `hook_attn_out`, `hook_resid_post`)
hold only the last position, so position -1 is the one to use there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Optional, Union

import einops
import torch
from jaxtyping import Bool, Float, Shaped
from torch import Tensor
from lca_interp.hooks.model import HookedModel
from transformer_lens.hook_points import HookPoint
from transformer_lens.utilities import get_act_name

from lca_interp.hooks.layout import (
    Positions,
    along,
    describe,
    hook_layout,
    in_range,
    position_mask,
    positions_of,
    require_position_axis,
)
from lca_interp.hooks.select import (
    Head,
    HeadLike,
    Inputs,
    as_tokens,
    heads_of,
    last_positions,
    layers_of,
    require_hook,
)


def restrict_attention(
    model: HookedModel,
    layers: Union[int, Iterable[int], None] = None,
    heads: Union[Iterable[int], Iterable[HeadLike], None] = None,
    positions: Positions = -1,
) -> AbstractContextManager[HookedModel]:
    """Make the given query positions (None: all) attend only to themselves in the chosen layers
    and heads.

    `heads` is None (every head), head indices applied in each chosen layer, or (layer, head)
    pairs (then `layers` defaults to theirs). The pattern rows of those queries are replaced by a
    one-hot on the diagonal after the softmax, so the head's output there is exactly that
    position's own value vector.
    """
    by_layer = _heads_by_layer(model, layers, heads)
    chosen = positions_of(positions)
    hooks = []
    for layer, layer_heads in by_layer.items():
        head_mask = torch.zeros(model.cfg.n_heads, dtype=torch.bool)
        head_mask[layer_heads] = True
        hooks.append((get_act_name("pattern", layer), _self_attention_hook(head_mask, chosen)))
    return model.hooks(fwd_hooks=hooks)


def add_vector(
    model: HookedModel,
    hook_name: str,
    vector: Shaped[Tensor, " d"],
    scale: float = 1.0,
    positions: Positions = None,
) -> AbstractContextManager[HookedModel]:
    """Add `scale * vector` to the activation at `hook_name` (at every position, or the given ones).

    The vector runs along the activation's last dimension: d_model for residual-stream hooks,
    d_head for `hook_z` (added to every head), d_mlp for `mlp.hook_post`. Subtract with scale=-1.
    """
    require_hook(model, hook_name)
    layout = hook_layout(model, hook_name)
    if not isinstance(vector, Tensor) or vector.ndim != 1 or not vector.is_floating_point():
        raise ValueError(f"the vector must be a 1-D floating-point tensor, got {describe(vector)}.")
    if layout.last is not None and vector.shape[0] != layout.last:
        raise ValueError(f"the vector has {vector.shape[0]} entries but {hook_name} has last dimension {layout.last}.")
    chosen = positions_of(positions)
    require_position_axis(layout, hook_name, chosen)
    vector = vector.detach().clone()  # the user's tensor may change before the forward runs

    def hook(activation: Float[Tensor, "*shape"], hook: HookPoint) -> Float[Tensor, "*shape"]:
        if activation.shape[-1] != vector.shape[0]:
            raise ValueError(
                f"the vector has {vector.shape[0]} entries but {hook.name} has last dimension "
                f"{activation.shape[-1]} in this run."
            )
        steered = activation + scale * vector.to(activation)
        if chosen is None:
            return steered
        chosen_positions = position_mask(chosen, activation, layout.pos_dim, hook.name)
        return torch.where(along(chosen_positions, layout.pos_dim, activation.ndim), steered, activation)

    return model.hooks(fwd_hooks=[(hook_name, hook)])


def ablate_heads(
    model: HookedModel,
    heads: Iterable[HeadLike],
    mode: str = "zero",  # "zero" or "mean"; a str so that a typo gets the one-sentence error
    means: Optional[Mapping[HeadLike, Tensor]] = None,
) -> AbstractContextManager[HookedModel]:
    """Replace the output z of each (layer, head) by zero, or by its mean from `mean_head_outputs`.

    Works at `blocks.{l}.attn.hook_z` [batch, pos, n_heads, d_head], before W_O: a zero-ablated
    head adds nothing to the residual stream (b_O is shared by all heads and stays), a
    mean-ablated one adds its mean output read through W_O.
    """
    chosen = heads_of(model, heads)
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}.")
    if mode == "zero" and means is not None:
        raise ValueError("means are only used with mode='mean'; drop them or pass mode='mean'.")
    if mode == "mean":
        _check_means(model, chosen, means)
    hooks = []
    for layer, layer_heads in _group(chosen).items():
        if mode == "zero":
            values = torch.zeros(len(layer_heads), model.cfg.d_head)
        else:
            values = torch.stack([means[(layer, head)].detach() for head in layer_heads])
        hooks.append((get_act_name("z", layer), _replace_heads_hook(layer_heads, values)))
    return model.hooks(fwd_hooks=hooks)


@torch.no_grad()
def mean_head_outputs(
    model: HookedModel, inputs: Inputs, heads: Iterable[HeadLike]
) -> dict[Head, Float[Tensor, " d_head"]]:
    """Each head's output z averaged over the batch and every real token position, from one
    forward that caches only the needed `hook_z`: padding of a list of strings is left out, and
    so is a leading BOS token (its activations are nothing like a word's)."""
    chosen = heads_of(model, heads)
    tokens = as_tokens(model, inputs)
    lengths = (last_positions(model, inputs) + 1).to(tokens.device)
    real = torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths[:, None]  # [batch, pos]
    bos = getattr(getattr(model, "tokenizer", None), "bos_token_id", None)
    if bos is not None:
        real[:, 0] &= tokens[:, 0] != bos
    if not real.any():
        raise ValueError("the inputs hold no real token besides BOS to average over.")
    real = real.float()
    names = {get_act_name("z", layer) for layer, _ in chosen}
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names, return_type=None)
    means = {}
    for head in chosen:
        z = cache[get_act_name("z", head.layer)][:, :, head.head]  # [batch, pos, d_head]
        means[head] = einops.einsum(z, real.to(z), "batch pos d_head, batch pos -> d_head") / real.sum()
    return means


def patch_activation(
    model: HookedModel,
    hook_name: str,
    source: Shaped[Tensor, "..."],
    positions: Positions = None,
    heads: Union[int, Iterable[int], None] = None,
) -> AbstractContextManager[HookedModel]:
    """Replace the activation at `hook_name` by `source` (e.g. `cache[hook_name]` of another run).

    Optionally only at some positions and/or, for head-indexed hooks (`hook_q/k/v`, `hook_z`,
    `hook_result`, `hook_pattern`, `hook_attn_scores`), some heads of that hook's layer. The
    source must have the activation's exact shape, which is checked in the forward.
    """
    require_hook(model, hook_name)
    layout = hook_layout(model, hook_name)
    if not isinstance(source, Tensor) or not source.is_floating_point():
        raise ValueError(f"the source must be a floating-point tensor, got {describe(source)}.")
    if layout.ndim is not None and source.ndim != layout.ndim:
        raise ValueError(f"{hook_name} has {layout.ndim} dimensions but the source has shape {tuple(source.shape)}.")
    if layout.last is not None and source.shape[-1] != layout.last:
        raise ValueError(
            f"{hook_name} has last dimension {layout.last} but the source has shape {tuple(source.shape)}."
        )
    chosen = positions_of(positions)
    require_position_axis(layout, hook_name, chosen)
    head_mask = None
    if heads is not None:
        if layout.head_dim is None:
            raise ValueError(
                f"{hook_name} has no head axis; heads apply to hook_q/k/v, hook_z, hook_result and hook_pattern."
            )
        head_list = [heads] if isinstance(heads, int) else list(heads)
        if not head_list or not all(isinstance(h, int) and 0 <= h < layout.n_heads for h in head_list):
            raise ValueError(
                f"heads must be a non-empty list within 0..{layout.n_heads - 1} at {hook_name}, got {heads!r}."
            )
        if source.shape[layout.head_dim] != layout.n_heads:
            raise ValueError(f"{hook_name} has {layout.n_heads} heads but the source has shape {tuple(source.shape)}.")
        head_mask = torch.zeros(layout.n_heads, dtype=torch.bool)
        head_mask[head_list] = True
    source = source.detach()

    def hook(activation: Float[Tensor, "*shape"], hook: HookPoint) -> Float[Tensor, "*shape"]:
        if activation.shape != source.shape:
            raise ValueError(
                f"the source has shape {tuple(source.shape)} but {hook.name} has shape "
                f"{tuple(activation.shape)} in this run."
            )
        mask = torch.ones((), dtype=torch.bool, device=activation.device)
        if chosen is not None:
            pos_mask = position_mask(chosen, activation, layout.pos_dim, hook.name)
            mask = mask & along(pos_mask, layout.pos_dim, activation.ndim)
        if head_mask is not None:
            mask = mask & along(head_mask.to(activation.device), layout.head_dim, activation.ndim)
        return torch.where(mask, source.to(activation), activation)

    return model.hooks(fwd_hooks=[(hook_name, hook)])


# ---------------------------------------------------------------------------------- hooks


def _self_attention_hook(head_mask: Bool[Tensor, " head"], positions: Optional[list[int]]):
    def hook(pattern: Float[Tensor, "batch head query key"], hook: HookPoint) -> Float[Tensor, "batch head query key"]:
        n_query, n_key = pattern.shape[-2:]
        first_query = n_key - n_query  # queries are the last n_query tokens (toy fast path, KV cache)
        if positions is None:
            keys = list(range(n_key))
        else:
            keys = [p % n_key for p in in_range(positions, n_key, hook.name)]
        rows = [key - first_query for key in keys if key >= first_query]
        if not rows:
            return pattern
        own = torch.zeros(n_query, n_key, dtype=pattern.dtype, device=pattern.device)
        own[rows, [row + first_query for row in rows]] = 1.0
        query_mask = torch.zeros(n_query, dtype=torch.bool, device=pattern.device)
        query_mask[rows] = True
        restricted = head_mask.to(pattern.device)[:, None] & query_mask[None, :]  # [head, query]
        return torch.where(restricted[None, :, :, None], own, pattern)

    return hook


def _replace_heads_hook(heads: list[int], values: Float[Tensor, "n d_head"]):
    def hook(z: Float[Tensor, "batch pos head d_head"], hook: HookPoint) -> Float[Tensor, "batch pos head d_head"]:
        z = z.clone()  # the hook's input may be used elsewhere; never write into it
        z[:, :, heads] = values.to(z)  # [n, d_head] broadcast over batch and positions
        return z

    return hook


# ----------------------------------------------------------------------------- heads


def _heads_by_layer(model: HookedModel, layers, heads) -> dict[int, list[int]]:
    chosen_layers = layers_of(model, layers)
    if heads is None:
        return {layer: list(range(model.cfg.n_heads)) for layer in chosen_layers}
    heads = list(heads)
    if heads and all(isinstance(h, int) for h in heads):
        return _group(heads_of(model, [(layer, h) for layer in chosen_layers for h in heads]))
    if not all(isinstance(h, (tuple, list)) and len(h) == 2 for h in heads):
        raise ValueError(f"heads must be head indices or (layer, head) pairs, not {heads!r}.")
    pairs = heads_of(model, heads)
    stray = [pair for pair in pairs if pair[0] not in chosen_layers]
    if layers is not None and stray:
        raise ValueError(
            f"head {stray[0]} is not in the chosen layers {chosen_layers}; pass its layer too or leave layers out."
        )
    return _group(pairs)


def _group(pairs: list[Head]) -> dict[int, list[int]]:
    by_layer: dict[int, list[int]] = {}
    for layer, head in pairs:
        by_layer.setdefault(layer, []).append(head)
    return by_layer


def _check_means(model: HookedModel, heads: list[Head], means) -> None:
    if means is None:
        raise ValueError("mode='mean' needs means; compute them with mean_head_outputs(model, inputs, heads).")
    for head in heads:
        if head not in means:
            raise ValueError(
                f"means has no entry for head {head}; compute them with mean_head_outputs(model, inputs, heads)."
            )
        value = means[head]
        if not isinstance(value, Tensor) or tuple(value.shape) != (model.cfg.d_head,):
            raise ValueError(
                f"the mean of head {head} must be a tensor of shape ({model.cfg.d_head},), got {describe(value)}."
            )
