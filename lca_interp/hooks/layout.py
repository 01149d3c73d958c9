"""What a hook point's name says about its activation: shape, position axis, head axis.

Interventions validate what they are given (vector sizes, positions, heads) before any hook is
attached, and again inside the hook against the run's actual shapes; both need to know, from a
hook name alone, where the position and head axes of its activation are. TransformerLens's names
say it: `hook_pattern` is [batch, head, query, key], `hook_z` [batch, pos, head, d_head],
residual-stream hooks [batch, pos, d_model], and so on.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional, Union

import torch
from jaxtyping import Bool
from torch import Tensor
from lca_interp.hooks.model import HookedModel

Positions = Union[int, Iterable[int], None]

# Hooks whose activation is [batch, pos, d_model], by the last part of their name.
RESIDUAL_LIKE = {
    "hook_embed", "hook_pos_embed", "hook_resid_pre", "hook_resid_mid", "hook_resid_post",
    "hook_attn_out", "hook_mlp_out", "hook_mlp_in",
}


@dataclass(frozen=True)
class HookLayout:
    """What a hook's name says about its activation; None where the name does not say."""

    ndim: Optional[int]
    pos_dim: Optional[int]  # None: no position axis the name vouches for (Gemma's q_norm/k_norm)
    head_dim: Optional[int] = None
    n_heads: Optional[int] = None
    last: Optional[int] = None


def hook_layout(model: HookedModel, name: str) -> HookLayout:
    cfg = model.cfg
    parent, _, leaf = name.rpartition(".")
    module = parent.rpartition(".")[2]
    grouped = cfg.n_key_value_heads is not None and not getattr(cfg, "ungroup_grouped_query_attention", False)
    kv_heads = cfg.n_key_value_heads if grouped else cfg.n_heads  # grouped-query attention (Gemma)
    if module == "attn":
        if leaf in ("hook_pattern", "hook_attn_scores"):  # [batch, head, query, key]
            return HookLayout(4, pos_dim=2, head_dim=1, n_heads=cfg.n_heads)
        if leaf in ("hook_q", "hook_z", "hook_rot_q", "hook_k", "hook_v", "hook_rot_k"):
            heads = kv_heads if leaf in ("hook_k", "hook_v", "hook_rot_k") else cfg.n_heads
            return HookLayout(4, pos_dim=1, head_dim=2, n_heads=heads, last=cfg.d_head)
        if leaf == "hook_result":
            return HookLayout(4, pos_dim=1, head_dim=2, n_heads=cfg.n_heads, last=cfg.d_model)
    if module in ("q_norm", "k_norm"):  # HookedTransformer flattens positions here, a bridge does not
        return HookLayout(None, pos_dim=None)
    if leaf in ("hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input"):
        heads = kv_heads if leaf in ("hook_k_input", "hook_v_input") else cfg.n_heads
        return HookLayout(4, pos_dim=1, head_dim=2, n_heads=heads, last=cfg.d_model)
    if leaf in RESIDUAL_LIKE or name == "unembed.hook_in" or (module.startswith("ln") and leaf == "hook_normalized"):
        return HookLayout(3, pos_dim=1, last=cfg.d_model)
    if module.startswith("ln") and leaf == "hook_scale":
        return HookLayout(3, pos_dim=1, last=1)
    if module == "mlp" and leaf in ("hook_pre", "hook_pre_linear", "hook_post"):
        return HookLayout(3, pos_dim=1, last=cfg.d_mlp)
    if name == "unembed.hook_out":
        return HookLayout(3, pos_dim=1, last=cfg.d_vocab_out)
    return HookLayout(None, pos_dim=1)  # anything else is taken as [batch, pos, ...]


def positions_of(positions: Positions) -> Optional[list[int]]:
    if positions is None:
        return None
    chosen = [positions] if isinstance(positions, int) else list(positions)
    if not chosen:
        raise ValueError("no positions given; pass None for every position.")
    for p in chosen:
        # bool is an int to Python, but True/False here is always a mask passed by mistake
        if isinstance(p, bool) or not hasattr(p, "__index__"):
            raise ValueError(f"positions must be integers, got {positions!r}.")
    return [operator.index(p) for p in chosen]


def require_position_axis(layout: HookLayout, name: str, positions: Optional[list[int]]) -> None:
    if positions is not None and layout.pos_dim is None:
        raise ValueError(f"{name} has no position axis; pass positions=None.")


def in_range(positions: list[int], length: int, name: str) -> list[int]:
    for p in positions:
        if not -length <= p < length:
            raise ValueError(f"position {p} is outside the {length} positions at {name} in this run.")
    return positions


def position_mask(positions: list[int], activation: Tensor, pos_dim: int, name: str) -> Bool[Tensor, " pos"]:
    length = activation.shape[pos_dim]
    mask = torch.zeros(length, dtype=torch.bool, device=activation.device)
    mask[[p % length for p in in_range(positions, length, name)]] = True
    return mask


def along(mask: Bool[Tensor, " n"], dim: int, ndim: int) -> Tensor:
    """A 1-D mask viewed so that it broadcasts along dimension `dim` of an `ndim`-D tensor."""
    return mask.view([-1 if i == dim else 1 for i in range(ndim)])


def describe(value) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    return f"{type(value).__name__}"
