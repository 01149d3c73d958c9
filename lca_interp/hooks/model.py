"""What a probe may assume of a model, on every TransformerLens version, in one place.

A probe takes any model with TransformerLens's hook names and weight properties: the LCA toy (a
`HookedRootModule`), a `HookedTransformer` (TL 3.x) or a `TransformerBridge` in compatibility mode
(TL 3.9 and 4.x). Where those differ in a way that would give a wrong number without an error, the
question is answered here, named for what it asks, so no probe branches on the TL version.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

# Any module with TL's hook points (`hook_dict`, `hooks`, `run_with_hooks`, `run_with_cache`), its
# `cfg` and its weight properties (`W_E`, `W_U`, `W_Q`, ..., `OV`, `QK`). TL 3.9 has no common
# base class or protocol for the toy, `HookedTransformer` and `TransformerBridge`.
HookedModel = torch.nn.Module


def repair_kv_cache(bridge) -> None:
    """Make a `TransformerBridge`'s attention read transformers' KV cache again.

    transformers ≥ 5.24 hands the cache to attention as `cache=`, and TL's attention bridges
    (3.9 and 4.3) read only `past_key_values`: the cache stays empty, every step after the first
    attends to nothing cached, and `generate()` with its default cache writes garbage (log P off
    by 14–25). A pre-hook on each attention passes the cache under the name TL reads."""

    def pass_cache(module, args, kwargs):
        if kwargs.get("past_key_values") is None and kwargs.get("cache") is not None:
            kwargs["past_key_values"] = kwargs["cache"]
        return args, kwargs

    for block in bridge.blocks:
        block.attn.register_forward_pre_hook(pass_cache, with_kwargs=True)


class _Stop(Exception):
    """Raised by a capturing hook to end a forward once what it needs has passed."""


def final_residual(model, tokens: Tensor, **forward_kwargs) -> Float[Tensor, "batch pos d_model"]:
    """The residual stream leaving the last block, before the final norm, under whatever hooks are
    attached; the unembedding never runs. (`stop_at_layer=n_layers` gives this on a
    `HookedTransformer` but the logits on a `TransformerBridge`.)"""
    captured: dict[str, Tensor] = {}

    def capture(activation: Tensor, hook) -> None:
        captured["residual"] = activation
        raise _Stop

    try:
        with model.hooks(fwd_hooks=[(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post", capture)]):
            model(tokens, **forward_kwargs)
    except _Stop:
        pass
    return captured["residual"]


def final_stream(model, tokens: Tensor, **forward_kwargs) -> Float[Tensor, "batch pos d_model"]:
    """What the unembedding reads: the final residual through the final norm (itself where the
    model has none)."""
    residual = final_residual(model, tokens, **forward_kwargs)
    return model.ln_final(residual) if has_final_norm(model) else residual


def has_final_norm(model) -> bool:
    return model.cfg.normalization_type is not None and hasattr(model, "ln_final")


def bias_or_zeros(module, name: str, size: int) -> Tensor:
    """`module.<name>`, or zeros where the checkpoint has no such bias (a bridge gives None; a
    `HookedTransformer` fills zeros)."""
    bias = getattr(module, name, None)
    if bias is None:
        weight = next(module.parameters())
        return torch.zeros(size, dtype=weight.dtype, device=weight.device)
    return bias


def attention_window(model) -> Optional[int]:
    """The local attention window of the model's sliding-window layers (Gemma 2/3), or None. A
    bridge's cfg leaves `window_size` None for Gemma 3: transformers' config has it."""
    window = getattr(model.cfg, "window_size", None)
    if window is None and hasattr(model, "original_model"):
        config = model.original_model.config
        config = getattr(config, "text_config", config)
        if "sliding_attention" in (getattr(config, "layer_types", None) or ["sliding_attention"]):
            window = getattr(config, "sliding_window", None)
    return window


def normalizes_layer_outputs(model) -> bool:
    """Whether each attention output passes a norm of its own before joining the stream (Gemma
    2/3's `ln1_post`). A bridge's cfg says False for Gemma 3 although the modules exist."""
    return bool(getattr(model.cfg, "use_normalization_before_and_after", False)) or hasattr(model.blocks[0], "ln1_post")


def normalizes_queries_and_keys(model) -> bool:
    """Whether attention normalises queries and keys per head (Gemma 3's `q_norm`/`k_norm`); a
    bridge's cfg says False for Gemma 3 although the modules exist."""
    return bool(getattr(model.cfg, "use_qk_norm", False)) or hasattr(model.blocks[0].attn, "q_norm")


@torch.no_grad()
def norm_as_affine(norm) -> tuple[bool, Tensor, Tensor]:
    """A LayerNorm/RMSNorm module as the affine map it is once its scale s is fixed:
    y = (x − [mean x if it centres]) / s · weight + bias. Returns (centres, weight, bias), read
    off the module itself by evaluating it, so every kind agrees: TL's folded LNPre/RMSPre
    (weight 1), a bridge's norm after folding (whose parameter is 1, or 0 for Gemma's
    offset norm, whose multiplier is 1 + w), an unfolded norm with its weights."""
    parameter = next(iter(norm.parameters()), None)
    dtype = parameter.dtype if parameter is not None else torch.float32
    device = parameter.device if parameter is not None else "cpu"
    d = (parameter.shape[-1] if parameter is not None else None) or _width(norm)
    big = 1e3  # eps (≤ 1e-5) is then invisible next to the scale

    def read(direction: Tensor) -> tuple[Tensor, Tensor]:
        """The norm at ±big·direction (a zero-mean input of scale big·rms): (bias, weight · direction)."""
        plus, minus = (norm((sign * big * direction).to(device, dtype)[None, None])[0, 0].double().cpu() for sign in (1, -1))
        return (plus + minus) / 2, (plus - minus) / 2 * float(direction.square().mean().sqrt())

    signs = torch.ones(d, dtype=torch.float64)
    signs[1::2] = -1
    if d % 2:
        signs[-1] = 0  # keeps the mean zero; the last coordinate is read with a second input
    bias, scaled = read(signs)
    weight = scaled * signs
    if d % 2:
        last = torch.zeros(d, dtype=torch.float64)
        last[0], last[-1] = -1, 1
        weight[-1] = read(last)[1][-1]
    constant = norm(torch.full((1, 1, d), big, device=device, dtype=dtype))[0, 0].double().cpu()
    centres = bool(torch.allclose(constant, bias, atol=1e-4))  # a centring norm maps a constant to its bias
    return centres, weight, bias


def _width(norm) -> int:
    cfg = getattr(norm, "cfg", None)
    return int(getattr(cfg, "d_model"))


def kv_head(model, layer: int, head: int) -> int:
    """The index into `blocks[layer].attn.W_K` / `W_V` that query head `head` reads. Under
    grouped-query attention a bridge stores one matrix per KV head ([n_kv, …]; query head h reads
    h // (n_heads / n_kv)), a `HookedTransformer` one per query head, repeated."""
    stored = model.blocks[layer].attn.W_K.shape[0]
    return head if stored == model.cfg.n_heads else head // (model.cfg.n_heads // stored)


def final_residual_from(model, tokens: Tensor, layer: int, entering: Float[Tensor, "batch pos d_model"]) -> Tensor:
    """`final_residual` with the stream entering `layer` replaced by `entering` (same shape as the
    run on `tokens` gives it): the blocks from `layer` on, on a stream of one's choosing. A
    bridge on TL 3.9 has no `start_at_layer`, so the blocks before `layer` run too."""
    with model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", lambda activation, hook: entering)]):
        return final_residual(model, tokens)
