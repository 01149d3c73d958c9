"""Direct logit attribution and the logit lens: what each component writes toward an answer.

Context
-------
The residual stream at the last layer is a sum: token (and position) embeddings, plus every
attention layer's output, plus every MLP's output. An attention layer's output is itself a sum
over heads, z_h W_O[h], plus the bias b_O. The logit difference logit(A) − logit(B) reads the
normalised stream along W_U[:, A] − W_U[:, B], so each term has a direct contribution; paper A
uses this to ask which heads carry a hijack, paper B which heads pass the country to the answer.

How normalisation is handled (exact, not approximate)
-----------------------------------------------------
Every normalisation the stream passes through is linear once its scale is fixed: LayerNorm is
(x − mean x) / s · w + b, RMSNorm x / s · w. Here each scale s is frozen at its value on the
actual run (read from its `hook_scale`, as TL's `ActivationCache.apply_ln_to_stack` does), and
the centring, division and weight are applied to every component separately. The pieces then
add up exactly to the model's logit difference:

    Σ_components c · (W_U[:, A] − W_U[:, B]) + (b_final · ΔW_U if LayerNorm has a bias) + Δb_U
        = logit(A) − logit(B)

which the tests check to 1e-4 relative. This covers `ln_final` and, in models that normalise a
layer's output before adding it (Gemma 2/3's `ln1_post`/`ln2_post`, OLMo's post-norm), the
per-head contributions inside that norm. Output soft-capping (Gemma 2) is not linear: the
attribution is to the logits before the cap. A model without a residual stream (the LCA toy,
whose output replaces the stream) declares `has_residual_stream = False`; then only its last
layer's attention output reaches the logits.

The logit lens (`hooks.lens`) reads the same stream after each layer instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.utilities import get_act_name
from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

from lca_interp.hooks.model import (
    bias_or_zeros,
    has_final_norm,
    norm_as_affine,
    normalizes_layer_outputs,
)
from lca_interp.hooks.select import Head, Inputs, as_tokens, last_positions
from lca_interp.scoring import encode_target

Targets = Union[int, str, Sequence[Union[int, str]], Int[Tensor, "batch"]]


def target_tokens(model, targets: Targets, batch: int) -> Int[Tensor, "batch"]:
    """One token id per prompt: an id, or a word whose first token (with a leading space) is used."""
    items = targets.tolist() if isinstance(targets, Tensor) else [targets] * batch if isinstance(targets, (int, str)) else list(targets)
    if len(items) != batch:
        raise ValueError(f"got {len(items)} targets for {batch} prompts.")
    ids = [item if isinstance(item, int) else encode_target(model, item)[0] for item in items]
    if not all(0 <= i < model.cfg.d_vocab for i in ids):
        raise ValueError(f"target ids must lie in 0..{model.cfg.d_vocab - 1}.")
    return torch.tensor(ids, dtype=torch.long)


# ---------------------------------------------------------------------- normalisation, frozen


@dataclass(frozen=True)
class FrozenNorm:
    """A LayerNorm/RMSNorm as the linear map it is once its scale is read off the run."""

    scale_hook: str
    centre: bool
    weight: Optional[Tensor]  # float64, CPU
    bias: Optional[Tensor]

    def apply(self, x: Float[Tensor, "... d_model"], scale: Float[Tensor, "... 1"]) -> Float[Tensor, "... d_model"]:
        """The norm applied to one summand of its input: centred, divided by the frozen scale,
        weighted. The bias is not added here: it is one constant summand of its own."""
        if self.centre:
            x = x - x.mean(-1, keepdim=True)
        x = x / scale
        return x * self.weight if self.weight is not None else x


def _frozen(norm, name: str) -> FrozenNorm:
    centres, weight, bias = norm_as_affine(norm)
    return FrozenNorm(f"{name}.hook_scale", centres, weight, bias if bias.abs().max() > 0 else None)


def output_norm(model, layer: int) -> Optional[FrozenNorm]:
    """The norm a layer's attention output passes before joining the stream (Gemma 2/3's
    `ln1_post`, OLMo's post-norm `ln1`), or None."""
    cfg = model.cfg
    if normalizes_layer_outputs(model):
        name = "ln1_post"
    elif getattr(cfg, "original_architecture", None) in POST_NORM_ARCHITECTURES:
        name = "ln1"
    else:
        return None
    return _frozen(getattr(model.blocks[layer], name), f"blocks.{layer}.{name}")


def final_norm(model) -> Optional[FrozenNorm]:
    if not has_final_norm(model):
        return None
    return _frozen(model.ln_final, "ln_final")


# ---------------------------------------------------------------------- attribution


@dataclass
class LogitAttribution:
    """Direct contributions to logit(A) − logit(B) (or logit(A)) at one position per prompt.

    `contributions[:, i]` belongs to `labels[i]`: "embed", "pos_embed", "L{l}H{h}" (one head),
    "L{l} attn bias", "L{l} MLP", "final norm bias", "unembed bias". Their sum over components
    equals `logit_diff`, the model's own (pre-softcap) logit difference.
    """

    labels: list[str]
    contributions: Float[Tensor, "batch component"]
    logit_diff: Float[Tensor, "batch"]
    n_layers: int
    n_heads: int

    def heads(self) -> Float[Tensor, "batch layer head"]:
        index = [self.labels.index(str(Head(l, h))) for l in range(self.n_layers) for h in range(self.n_heads)]
        return self.contributions[:, index].reshape(-1, self.n_layers, self.n_heads)

    def mean(self) -> dict[str, float]:
        return dict(zip(self.labels, self.contributions.mean(0).tolist()))

    def to_dict(self) -> dict:
        return {"labels": self.labels, "mean_contribution": self.contributions.mean(0).tolist(),
                "logit_diff": self.logit_diff.tolist()}


@dataclass
class ResidualComponents:
    """The final residual stream at one position per prompt, split into its summands.

    `vectors[:, i]` is the summand named `labels[i]` (as in `LogitAttribution`), in float64 on
    the CPU; heads inside a post-norm are already passed through it with its scale frozen, so
    `vectors.sum(1) == stream` up to round-off. `final_scale` is `ln_final`'s scale on the run.
    """

    labels: list[str]
    vectors: Float[Tensor, "batch component d_model"]
    stream: Float[Tensor, "batch d_model"]
    final_scale: Optional[Float[Tensor, "batch 1"]]

    def select(self, labels: Sequence[str]) -> Float[Tensor, "batch n d_model"]:
        return self.vectors[:, [self.labels.index(label) for label in labels]]


def mlp_label(layer: int) -> str:
    return f"L{layer} MLP"


@torch.no_grad()
def residual_components(
    model, inputs: Inputs, positions: Optional[Int[Tensor, "batch"]] = None, batch_size: Optional[int] = None
) -> ResidualComponents:
    """Embeddings, every head, attention bias and MLP output at one position per prompt (default:
    each prompt's last real token), from forwards that keep only that position; a list of prompts
    runs `batch_size` at a time (default: all in one forward)."""
    if batch_size is not None and isinstance(inputs, (list, tuple)) and len(inputs) > batch_size:
        if positions is not None:
            raise ValueError("pass positions=None when splitting prompts into batches (each uses its last token).")
        parts = [residual_components(model, inputs[s : s + batch_size]) for s in range(0, len(inputs), batch_size)]
        return ResidualComponents(parts[0].labels, torch.cat([p.vectors for p in parts]), torch.cat([p.stream for p in parts]),
                                  None if parts[0].final_scale is None else torch.cat([p.final_scale for p in parts]))
    cfg = model.cfg
    tokens = as_tokens(model, inputs)
    batch = tokens.shape[0]
    positions = last_positions(model, inputs) if positions is None else torch.as_tensor(positions, dtype=torch.long)
    rows = torch.arange(batch)
    residual_stream = getattr(model, "has_residual_stream", True)
    layers = list(range(cfg.n_layers)) if residual_stream else [cfg.n_layers - 1]
    norms = {l: output_norm(model, l) for l in layers}
    final = final_norm(model)

    last_resid = get_act_name("resid_post", cfg.n_layers - 1)
    wanted = {get_act_name("z", l) for l in layers} | {last_resid}
    wanted |= {norm.scale_hook for norm in [*norms.values(), final] if norm is not None}
    if residual_stream:
        wanted.add("hook_embed")
        if cfg.positional_embedding_type == "standard" and "hook_pos_embed" in model.hook_dict:
            wanted.add("hook_pos_embed")
        if not cfg.attn_only:
            wanted |= {get_act_name("mlp_out", l) for l in layers}
    picked: dict[str, Tensor] = {}

    def keep(name: str):  # only the scored position of each prompt
        def hook(activation: Tensor, hook) -> None:
            picked[name] = activation[rows.to(activation.device), positions.to(activation.device)].double().cpu()
        return hook

    with model.hooks(fwd_hooks=[(name, keep(name)) for name in sorted(wanted)]):
        model(tokens, return_type=None)

    labels: list[str] = []
    parts: list[Tensor] = []  # each [batch, d_model]: one summand of the final residual stream
    for name, label in (("hook_embed", "embed"), ("hook_pos_embed", "pos_embed")):
        if name in picked:
            labels.append(label)
            parts.append(picked[name])
    for l in layers:
        attn, norm = model.blocks[l].attn, norms[l]
        heads = torch.einsum("bhd,hdm->bhm", picked[get_act_name("z", l)], attn.W_O.detach().double().cpu())
        bias = bias_or_zeros(attn, "b_O", cfg.d_model).detach().double().cpu().expand(batch, -1)
        if norm is not None:
            scale = picked[norm.scale_hook]
            heads, bias = norm.apply(heads, scale[:, None]), norm.apply(bias, scale)
        labels += [str(Head(l, h)) for h in range(cfg.n_heads)] + [f"L{l} attn bias"]
        parts += [*heads.unbind(1), bias]
        if norm is not None and norm.bias is not None:
            labels.append(f"L{l} attn norm bias")
            parts.append(norm.bias.expand(batch, -1))
        if get_act_name("mlp_out", l) in picked:
            labels.append(mlp_label(l))
            parts.append(picked[get_act_name("mlp_out", l)])
    return ResidualComponents(labels, torch.stack(parts, 1), picked[last_resid],
                              picked[final.scale_hook] if final is not None else None)


@torch.no_grad()
def direct_logit_attribution(
    model,
    inputs: Inputs,
    target_a: Targets,
    target_b: Optional[Targets] = None,
    positions: Optional[Int[Tensor, "batch"]] = None,
) -> LogitAttribution:
    """Contribution of every head, attention bias, MLP and embedding to logit(A) − logit(B), or
    to logit(A) alone when `target_b` is None.

    `positions` defaults to each prompt's last real token. Targets are token ids or words (first
    token of " " + word), one for all prompts or one per prompt.
    """
    cfg = model.cfg
    batch = as_tokens(model, inputs).shape[0]
    a_ids = target_tokens(model, target_a, batch)
    W_U = model.unembed.W_U.detach().double().cpu()
    b_U = bias_or_zeros(model.unembed, "b_U", W_U.shape[1]).detach().double().cpu()
    direction, bias_diff = W_U[:, a_ids].T, b_U[a_ids]  # [batch, d_model], [batch]
    if target_b is not None:
        b_ids = target_tokens(model, target_b, batch)
        direction, bias_diff = direction - W_U[:, b_ids].T, bias_diff - b_U[b_ids]
    components = residual_components(model, inputs, positions)
    stack, stream = components.vectors, components.stream
    final = final_norm(model)
    if final is not None:
        scale = components.final_scale
        stack, stream = final.apply(stack, scale[:, None]), final.apply(stream, scale)
    contributions = torch.einsum("bcm,bm->bc", stack, direction)
    constants = {"unembed bias": bias_diff}
    if final is not None and final.bias is not None:
        constants = {"final norm bias": direction @ final.bias, **constants}
    labels = components.labels + list(constants)
    contributions = torch.cat([contributions, torch.stack(list(constants.values()), 1)], 1)
    # The model's own logit difference, from its final stream: what the pieces must add up to.
    logit_diff = (stream * direction).sum(-1) + sum(constants.values())
    return LogitAttribution(labels, contributions.float(), logit_diff.float(), cfg.n_layers, cfg.n_heads)
