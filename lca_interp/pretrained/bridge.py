"""A transformers model as a TransformerLens `TransformerBridge`, and the plain stack beside it.

TransformerLens 4 removed `HookedTransformer`; its `TransformerBridge` (in TL 3.9 and 4.x alike)
wraps the transformers model itself, so any architecture the bridge knows loads here with no
architecture-specific code of ours. `bridge_from_hf` boots the bridge on a loaded model, turns on
compatibility mode (HookedTransformer's hook names and shapes; with `processing`, TL's standard
weight processing: norms folded into the next matrices, writing weights and the unembedding
centred), and sets what the bridge leaves to us:

- the BOS policy: `cfg.default_prepend_bos` is whether the model's own tokenizer adds BOS (TL
  rebuilds every tokenizer to add it, and strips it where `prepend_bos=False`);
- the bridge's own KV cache (`hooks.model.repair_kv_cache`), which transformers ≥ 5.24 bypasses;
- `plain_stack`: a second transformers model of the same class whose modules hold the bridge's
  (processed) tensors themselves, no copy: the scorer's hook-free path runs it with transformers'
  own KV cache. Its logits equal the bridge's to float round-off.

The conversion is checked, not trusted: the bridge and the plain stack must give the original
model's log-probabilities on a probe sentence (to 1e-3 in float32), or the load is refused in one
sentence; a processing step that dropped part of a checkpoint would otherwise give wrong numbers
silently.
"""

from __future__ import annotations

import warnings
from typing import Optional

import torch

from lca_interp.hooks.model import repair_kv_cache

CONVERSION_PROBE = "The Eiffel Tower is located in the city of"


def bridge_from_hf(source: str, hf_model, tokenizer, prepends_bos: bool, processing: bool, processed: bool = False,
                   dtype: Optional[torch.dtype] = None):
    """The bridge on `hf_model` (which it wraps in place) in compatibility mode, with its plain
    stack as `bridge.plain_stack`, cast to `dtype` after processing. `source` is the folder or hub
    name the bridge reads the config from. `processed`: the weights already are TL-processed (the
    offline cache), so compatibility mode only renames hooks."""
    from transformer_lens.model_bridge import TransformerBridge

    probe = tokenizer(CONVERSION_PROBE, add_special_tokens=False, return_tensors="pt")["input_ids"]
    if prepends_bos:  # the probe as the model reads text, whatever the tokenizer was loaded to add
        probe = torch.cat([torch.tensor([[tokenizer.bos_token_id]]), probe], dim=1)
    probe = probe.to(hf_model.device)
    with torch.no_grad():  # read before the bridge processes the weights in place
        expected = torch.log_softmax(hf_model.eval()(probe).logits.float(), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bridge = TransformerBridge.boot_transformers(
            source, device=str(hf_model.device), dtype=hf_model.dtype, tokenizer=tokenizer, hf_model=hf_model)
        bridge.enable_compatibility_mode(disable_warnings=True, no_processing=processed or not processing,
                                         fold_value_biases=_has_output_bias(bridge))
    bridge.eval()
    bridge.requires_grad_(False)
    bridge.cfg.default_prepend_bos = prepends_bos
    repair_kv_cache(bridge)
    with torch.no_grad():
        _check_conversion(source, "TransformerBridge", torch.log_softmax(bridge(probe).float(), -1), expected, hf_model.dtype)
        if dtype is not None and dtype != hf_model.dtype:
            bridge.to(dtype)
        bridge.plain_stack = plain_stack(bridge)
        plain = torch.log_softmax(bridge.plain_stack(probe).logits.float(), -1)
    _check_conversion(source, "its plain transformers stack", plain, expected, dtype or hf_model.dtype)
    return bridge


def plain_stack(bridge):
    """A transformers model of the bridge's class holding the bridge's tensors (shared storage):
    the unwrapped modules, for forwards with no hooks (`scoring`). Built without weights of its
    own, then handed the bridge's."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    wrapped = bridge.original_model
    config = wrapped.config
    config.tie_word_embeddings = _tied(wrapped)
    with init_empty_weights(include_buffers=False):
        plain = AutoModelForCausalLM.from_config(config, dtype=wrapped.dtype, attn_implementation="sdpa")
    expected = plain.state_dict()
    state = {}
    for key, tensor in wrapped.state_dict(keep_vars=True).items():
        key = key.replace("_original_component.", "")
        if key in expected and key not in state:
            state[key] = tensor.data
    missing = set(expected) - set(state)
    if missing:
        raise ValueError(f"the bridge holds no {sorted(missing)[:3]} for its plain transformers stack.")
    plain.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        plain.tie_weights()
    return plain.to(wrapped.device).eval().requires_grad_(False)


def _has_output_bias(bridge) -> bool:
    """Whether attention's output projection has a bias, into which TL's processing may fold the
    value biases. Qwen2 has value biases and a bias-free `o_proj`: folded, they would land in a
    bias transformers' modules have no place for (log P off by 20), so they stay where they are
    (the logits are the same either way)."""
    output = getattr(bridge.blocks[0].attn, "o", None)
    return getattr(getattr(output, "original_component", None), "bias", True) is not None


def _tied(wrapped) -> bool:
    """Whether the bridge still shares one tensor between embedding and unembedding (processing
    unties them: the unembedding is centred, the embedding is not)."""
    embed, unembed = wrapped.get_input_embeddings().weight, wrapped.get_output_embeddings().weight
    return embed.data_ptr() == unembed.data_ptr()


def _check_conversion(name: str, what: str, got: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    """Raise unless `got` gives transformers' log-probabilities on the probe sentence (over the
    tokens transformers gives more than e^-12): to 1e-3 in float32; to 1 nat in half precision,
    where two forwards of the same weights through different kernels already differ by up to 0.29
    (bfloat16: Gemma-3-270m 0.26, SmolLM2 0.29, Qwen2.5-Coder 0.26), while what the check is for,
    processing that drops part of a checkpoint, is off by nats (Qwen2's value biases: 19.6)."""
    if not (torch.isfinite(expected).all() and torch.isfinite(got).all()):
        raise ValueError(f"{name} overflows in {str(dtype).removeprefix('torch.')}: it gives non-finite "
                         "log-probabilities on a probe sentence; load it in bfloat16 or float32.")
    tolerance = 1e-3 if dtype in (torch.float32, torch.float64) else 1.0
    likely = expected > -12
    difference = float((got - expected).abs()[likely].max())
    if not difference <= tolerance:
        raise ValueError(f"{what} of {name} disagrees with transformers by {difference:.3g} in log-probability on a "
                         "probe sentence, so TransformerLens's processing misses part of this checkpoint; load it with "
                         "processing=False.")
