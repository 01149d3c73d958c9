"""The logit lens: the next-token distribution read off the residual stream after each layer.

The stream after layer l is passed through `ln_final` (its scale recomputed on that partial
stream, as the lens is usually defined) and the unembedding, at one position per prompt. Paper B
reads the final layer's anti-overconfidence this way: P(answer) rises through the layers, then
falls in the last one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.utilities import get_act_name

from lca_interp.hooks.attribution import Targets, target_tokens
from lca_interp.hooks.select import Inputs, as_tokens, last_positions
from lca_interp.scoring import logits_at


@dataclass
class LogitLens:
    """The next-token distribution read off the residual stream after each stage.

    `stages` are "embed" (the stream entering layer 0) and "L0".."L{n-1}" (after each layer);
    `probabilities[b, s, j]` is P(tracked[j]) at stage s for prompt b, and `top_tokens[b, s]`
    the most likely token there. The last stage equals the model's own output distribution.
    """

    stages: list[str]
    probabilities: Float[Tensor, "batch stage tracked"]
    top_tokens: Int[Tensor, "batch stage"]

    def to_dict(self) -> dict:
        return {"stages": self.stages, "mean_probabilities": self.probabilities.mean(0).tolist(),
                "top_tokens": self.top_tokens.tolist()}


@torch.no_grad()
def logit_lens(
    model,
    inputs: Inputs,
    tracked: Sequence[Targets],
    positions: Optional[Int[Tensor, "batch"]] = None,
    chunk: int = 64,
) -> LogitLens:
    """P(each tracked target) after every layer at one position per prompt (default: the last
    real token). Each entry of `tracked` is a target spec as in `direct_logit_attribution`."""
    tokens = as_tokens(model, inputs)
    batch, n_layers = tokens.shape[0], model.cfg.n_layers
    positions = last_positions(model, inputs) if positions is None else torch.as_tensor(positions, dtype=torch.long)
    ids = torch.stack([target_tokens(model, target, batch) for target in tracked], 1)  # [batch, tracked]
    rows = torch.arange(batch)
    names = [get_act_name("resid_pre", 0)] + [get_act_name("resid_post", l) for l in range(n_layers)]
    streams: dict[str, Tensor] = {}

    def keep(name: str):  # by the name asked for: a bridge's hook says its own (blocks.L.hook_out)
        def hook(activation: Tensor, hook) -> None:
            streams[name] = activation[rows.to(activation.device), positions.to(activation.device)]
        return hook

    with model.hooks(fwd_hooks=[(name, keep(name)) for name in names]):
        model(tokens, return_type=None)
    stacked = torch.stack([streams[name] for name in names], 1)  # [batch, stage, d_model]
    flat = stacked.reshape(-1, 1, stacked.shape[-1])
    probabilities, top = [], []
    for start in range(0, flat.shape[0], chunk):  # a [chunk, d_vocab] block of logits at a time
        part = flat[start : start + chunk]
        index = torch.arange(part.shape[0])
        log_probs = logits_at(model, part, index, torch.zeros_like(index)).float().log_softmax(-1).cpu()
        owners = torch.arange(start, start + part.shape[0]) // len(names)
        probabilities.append(log_probs.gather(1, ids[owners]).exp())
        top.append(log_probs.argmax(-1))
    return LogitLens(
        stages=["embed"] + [f"L{l}" for l in range(n_layers)],
        probabilities=torch.cat(probabilities).reshape(batch, len(names), -1),
        top_tokens=torch.cat(top).reshape(batch, len(names)),
    )
