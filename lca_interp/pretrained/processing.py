"""TL's weight processing at the memory cost of one block: the model `load_and_process_state_dict`
gives, built without its whole-model copies.

TransformerLens folds each norm's weights into the matrices that read its output, centres the
weights that write to the residual stream and the unembedding, and folds value biases into the
output bias (`convert` explains why). TL 3.9's `ProcessWeights.fold_layer_norm`, `center_unembed`
and `fold_value_biases` each begin by cloning every tensor of the state dict while their caller
still holds the original, and the `HookedTransformer` that receives the result holds a third copy
from its random initialisation. On Gemma-3-270m, whose 262,144 × 640 embedding and unembedding are
three quarters of its weights, a first conversion peaked at 5.3× the weights (BENCHMARKS.md). Here:

- the model is built with its parameters on the meta device (its buffers, masks and rotary tables,
  are real) and is handed the processed tensors themselves;
- each block goes through TL's own `ProcessWeights.process_weights`, given that block alone as
  block 0 of a one-layer config, so TL's copies cost one block;
- the vocabulary-sized matrices and the final norm are processed in place here, by the formulas
  TL's `fold_layer_norm`, `center_writing_weights` and `center_unembed` apply to them.

Every step reads and writes its own tensors, so doing them block by block changes nothing: the
result equals TL's to float round-off (tests/test_processing.py, on random-weight GPT-2, Llama
with grouped-query attention and Gemma-3 models; Gemma-3-270m's cache comes out bit-equal,
BENCHMARKS.md). A state dict that lacks a
parameter other than a bias (which TL fills with zeros, as here) goes through TL's own path, with
the same choice of steps.
"""

from __future__ import annotations

import copy

import torch

EMBEDDINGS = ("embed.W_E", "pos_embed.W_pos")  # what TL's per-block centring expects to find


def hooked_with_processed_weights(cfg, tokenizer, state_dict: dict[str, torch.Tensor], processing: bool):
    """A `HookedTransformer` for `cfg` holding `state_dict` (TL format, as
    `get_pretrained_state_dict` gives it; its tensors may be changed in place), processed as
    TL's `from_pretrained` would with `processing` (its four standard steps on or off together)."""
    from accelerate import init_empty_weights
    from transformer_lens import HookedTransformer

    steps = standard_steps(cfg, processing)
    with init_empty_weights(include_buffers=False):
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    parameters = dict(model.named_parameters())
    missing = set(parameters) - set(state_dict)
    for name in {name for name in missing if name.rsplit(".", 1)[-1].lstrip("_").startswith("b_")}:
        # a bias the checkpoint has none of (GPT-2's unembedding): zeros, as TL's fill_missing_keys gives it
        state_dict[name] = torch.zeros(parameters[name].shape, dtype=parameters[name].dtype)
        missing.remove(name)
    covered = not missing and not steps["refactor_factored_attn_matrices"]
    if any(steps.values()):  # in float32 (`load._conversion_dtype`), from a pre-norm config
        covered &= cfg.normalization_type in ("LNPre", "RMSPre") and all(
            t.dtype == torch.float32 for t in state_dict.values() if t.is_floating_point())
    if not covered:
        return _through_tl(cfg, tokenizer, state_dict, steps)
    with torch.no_grad():
        if steps["fold_ln"] or steps["center_writing_weights"] or steps["fold_value_biases"]:
            _process_blocks(state_dict, cfg, steps)
        _process_vocabulary_matrices(state_dict, cfg, steps)
    model.load_state_dict({name: state_dict[name] for name in parameters}, strict=False, assign=True)
    return model


def standard_steps(cfg, processing: bool) -> dict[str, bool]:
    """TL's processing steps for `cfg`, as `HookedTransformer.from_pretrained` chooses them: all
    four, less those a model's design rules out (a shortformer, a post-norm model, a logit softcap,
    which is not invariant to the shift that centring the unembedding adds)."""
    from transformer_lens.utilities.architectures import POST_NORM_ARCHITECTURES

    shortformer = cfg.positional_embedding_type == "shortformer"
    post_norm = cfg.original_architecture in POST_NORM_ARCHITECTURES
    softcap = cfg.output_logits_soft_cap is not None and cfg.output_logits_soft_cap > 0
    return dict(fold_ln=processing and not (shortformer or post_norm),
                center_writing_weights=processing and not (shortformer or post_norm),
                center_unembed=processing and not (shortformer or softcap),
                fold_value_biases=processing, refactor_factored_attn_matrices=False)


def _through_tl(cfg, tokenizer, state_dict, steps: dict[str, bool]):
    from transformer_lens import HookedTransformer

    model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state_dict, **steps)
    return model


def _process_blocks(state_dict: dict[str, torch.Tensor], cfg, steps: dict[str, bool]) -> None:
    """Each block through TL's `process_weights`, alone, as block 0 of a one-layer model."""
    from transformer_lens.weight_processing import ProcessWeights

    one_block = copy.copy(cfg)
    one_block.n_layers = 1
    # TL's writing-weight centring also centres the embeddings and requires them present: stand-ins
    # here, the real ones in `_process_vocabulary_matrices`.
    stand_ins = {name: torch.zeros(1, cfg.d_model) for name in EMBEDDINGS}
    for layer in range(cfg.n_layers):
        prefix = f"blocks.{layer}."
        names = [name for name in state_dict if name.startswith(prefix)]
        block = {"blocks.0." + name.removeprefix(prefix): state_dict.pop(name) for name in names}
        block = ProcessWeights.process_weights({**block, **stand_ins}, one_block, **{**steps, "center_unembed": False})
        for name, tensor in block.items():
            if name.startswith("blocks.0."):
                state_dict[prefix + name.removeprefix("blocks.0.")] = tensor


def _process_vocabulary_matrices(state_dict: dict[str, torch.Tensor], cfg, steps: dict[str, bool]) -> None:
    """TL's processing of the final norm, embeddings and unembedding (W_E [vocab, d_model], W_pos
    [n_ctx, d_model], W_U [d_model, vocab]), in place, in TL's order:

    1. fold the final norm into the unembedding: b_U += b_ln · W_U (LayerNorm only), W_U ← diag(w) W_U
       (w + 1 where the norm's weight is an offset), then the norm is the identity; with a
       LayerNorm, each W_U column is centred over d_model;
    2. with a LayerNorm (not final_rms): centre each W_E and W_pos row over d_model;
    3. centre each W_U row over the vocabulary, and b_U."""
    layer_norm = cfg.normalization_type == "LNPre"
    final_w, final_b, b_U = (state_dict.get(name) for name in ("ln_final.w", "ln_final.b", "unembed.b_U"))
    if steps["fold_ln"]:
        W_U = _owned(state_dict, "unembed.W_U")
        if layer_norm and not cfg.final_rms and final_b is not None and b_U is not None:
            b_U = state_dict["unembed.b_U"] = b_U + _vocabulary_chunks(W_U, lambda chunk: (chunk * final_b[:, None]).sum(-2))
            state_dict["ln_final.b"] = torch.zeros_like(final_b)
        if final_w is not None:
            offset = getattr(cfg, "rmsnorm_uses_offset", False)
            W_U.mul_(((1.0 + final_w) if offset else final_w)[:, None])
            state_dict["ln_final.w"] = torch.zeros_like(final_w) if offset else torch.ones_like(final_w)
            if layer_norm:
                W_U.sub_(W_U.mean(0, keepdim=True))
    if steps["center_writing_weights"] and layer_norm and not cfg.final_rms:
        _owned(state_dict, "embed.W_E").sub_(state_dict["embed.W_E"].mean(-1, keepdim=True))
        if cfg.positional_embedding_type not in ("rotary", "alibi", "none") and "pos_embed.W_pos" in state_dict:
            _owned(state_dict, "pos_embed.W_pos").sub_(state_dict["pos_embed.W_pos"].mean(-1, keepdim=True))
    if steps["center_unembed"]:
        W_U = _owned(state_dict, "unembed.W_U")
        W_U.sub_(W_U.mean(-1, keepdim=True))
        if b_U is not None:
            state_dict["unembed.b_U"] = b_U - b_U.mean()


def _owned(state_dict: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    """`state_dict[name]` as a contiguous tensor that shares memory with no other entry (a tied
    unembedding is a view of the embedding), stored back under `name`."""
    tensor = state_dict[name]
    others = {t.untyped_storage().data_ptr() for key, t in state_dict.items() if key != name}
    if tensor.untyped_storage().data_ptr() in others or not tensor.is_contiguous():
        tensor = tensor.clone(memory_format=torch.contiguous_format)
    state_dict[name] = tensor
    return tensor


def _vocabulary_chunks(W_U: torch.Tensor, per_chunk, columns: int = 16384) -> torch.Tensor:
    """`per_chunk` over blocks of W_U's vocabulary columns, concatenated: a product over the whole
    matrix would be as large as the matrix."""
    return torch.cat([per_chunk(W_U[:, start:start + columns]) for start in range(0, W_U.shape[1], columns)])
