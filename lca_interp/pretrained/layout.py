"""Weight layout for TransformerLens's forward.

TL's attention and gated-MLP forwards rearrange W_Q/W_K/W_V/W_O and W_in/W_gate/W_out into
`F.linear` layout and call `.contiguous()` on every forward, which copies every matrix on every
call (a quarter of Gemma-3-270m's CPU forward time). `lay_out_for_forward` stores those
parameters with the strides of that layout: same shapes, same values, same hook activations, and
the rearranged views are already contiguous, so the copies become no-ops.
"""

from __future__ import annotations

import torch


def lay_out_for_forward(model):
    """Re-stride attention and gated-MLP weights in place so TL's per-forward `.contiguous()`
    copies are no-ops (see the module docstring). Values and shapes are unchanged."""
    from transformer_lens.components import AbstractAttention, GatedMLP

    def restride(param: torch.nn.Parameter, order: tuple[int, ...]) -> None:
        # Storage contiguous in `order`, viewed back in the parameter's own dimension order.
        inverse = sorted(range(len(order)), key=order.__getitem__)
        param.data = param.data.permute(order).contiguous().permute(inverse)

    if getattr(model.cfg, "load_in_4bit", False):
        return model
    for module in model.modules():
        if isinstance(module, AbstractAttention):
            for name in ("W_Q", "_W_K", "_W_V") if hasattr(module, "_W_K") else ("W_Q", "W_K", "W_V"):
                restride(getattr(module, name), (0, 2, 1))  # -> (head d_head) d_model
            restride(module.W_O, (2, 0, 1))  # -> d_model (head d_head)
        elif isinstance(module, GatedMLP):
            for name in ("W_in", "W_gate", "W_out"):
                restride(getattr(module, name), (1, 0))
    return model
