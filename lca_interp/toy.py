"""The one-layer LCA toy of Jiang et al. (2024) as a TransformerLens `HookedTransformer`.

Context
-------
The paper's model is

    f(x) = [W_Eᵀ W_V attn(W_E χ(x))]_{:, L},    attn(U) = U σ((W_K U)ᵀ (W_Q U) / √d)

one layer, one head, no residual stream, no normalisation, no positional embedding, and tied
embeddings (the unembedding is W_Eᵀ). Making it a `HookedTransformer` with TL's own `Attention`
component means every probe written for GPT-2 or Gemma (hook names, `run_with_cache`,
`model.OV`, `model.W_E`) runs on it unchanged; that is the point of this package.

Conventions
-----------
TransformerLens multiplies row vectors on the right, the paper column vectors on the left, so the
stored matrices are the paper's transposes: `model.W_E` [V, d] has token t's embedding as row t,
`W_V` [1, 1, d, d] equals W_V(paper)ᵀ, and the score of key j for query i is
u_j W_K (u_i W_Q)ᵀ = u_jᵀ W_K(paper)ᵀ W_Q(paper) u_i. W_O is a constant identity buffer and all
biases are constant zero buffers, so `model.OV` is exactly W_V and no optimizer ever sees them.
Attention is bidirectional (σ normalises over all L keys), matching the formula for every column.

TransformerLens's own tools
---------------------------
What makes sense for the toy works on it: `run_with_cache`, `model.OV`/`model.QK`,
`SVDInterpreter` (through `tl_parameters`, which lists the constant W_O and the tied W_U),
`cache.stack_head_results` and `cache.logit_attrs`, `transformer_lens.patching`. What does not
refuses with one sentence: text generation and tokenizer helpers (the toy's tokens are integers
0..V−1; `task.token_label` names them), the language-model loss (the toy's loss is cross-entropy
at the last position against z*), and residual decompositions (the toy has no residual stream).

`forward(tokens, last_position_only=True)` computes the query at the last position only and
returns logits [batch, V]; training and evaluation use it, since the loss lives there. Hook
points fire as usual, with query-position dimension 1 for `hook_q`, `hook_pattern`, `hook_z`,
`hook_attn_out` and `hook_resid_post`. Unless something listens to `hook_k` or `hook_v`, that
path never forms per-position keys and values (see `ToyBlock._last_query_attention`), which makes
training about an order of magnitude cheaper at the paper's sizes.
"""

from __future__ import annotations

import typing
import warnings
from dataclasses import dataclass
from typing import Optional

import einops
import torch
import torch.nn as nn
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import ActivationCache, HookedTransformer, HookedTransformerConfig
from transformer_lens.components import Attention, Embed
from transformer_lens.hook_points import HookPoint

from lca_interp.config import Config
from lca_interp.task import as_generator


@dataclass(frozen=True)
class ToyConfig(Config):
    """Everything needed to rebuild a toy: sizes, what is frozen, and the init seed.

    `n_ctx` is recorded for provenance only: without positional embeddings any length works.
    """

    d_vocab: int
    d_model: int
    n_ctx: int
    freeze_wv: bool = False
    freeze_embed: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        self.require_positive_ints("d_vocab", "d_model", "n_ctx")


class TiedUnembed(nn.Module):
    """Unembedding that reads W_U = W_Eᵀ from the embedding: one parameter, shared storage."""

    def __init__(self, embed: Embed):
        super().__init__()
        # Bypass nn.Module registration: the embedding is already a submodule of the model, and
        # registering it twice would put W_E into the state dict twice.
        object.__setattr__(self, "_embed", embed)
        self.register_buffer("b_U", torch.zeros(embed.cfg.d_vocab), persistent=False)
        self.hook_in = HookPoint()  # [batch, pos, d_model]
        self.hook_out = HookPoint()  # [batch, pos, d_vocab]

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self._embed.W_E.T

    def forward(self, residual: Float[Tensor, "batch pos d_model"]) -> Float[Tensor, "batch pos d_vocab"]:
        return self.hook_out(self.hook_in(residual) @ self.W_U)


class ToyBlock(nn.Module):
    """Attention only, and the output replaces the stream: resid_post = attn_out."""

    def __init__(self, cfg: HookedTransformerConfig):
        super().__init__()
        self.attn = Attention(cfg, "global", 0)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, query_pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, query_pos, d_model]

    def forward(
        self, resid_pre: Float[Tensor, "batch pos d_model"], last_position_only: bool
    ) -> Float[Tensor, "batch query_pos d_model"]:
        resid_pre = self.hook_resid_pre(resid_pre)
        if last_position_only and not self._keys_or_values_observed():
            attn_out = self._last_query_attention(resid_pre)
        else:
            query_input = resid_pre[:, -1:] if last_position_only else resid_pre
            attn_out = self.attn(query_input, resid_pre, resid_pre)
        attn_out = self.hook_attn_out(attn_out)
        return self.hook_resid_post(attn_out)

    def _keys_or_values_observed(self) -> bool:
        """Whether any hook (cache, intervention, raw torch hook) listens to keys or values."""
        cfg = self.attn.cfg
        if cfg.use_attn_result or cfg.use_split_qkv_input or cfg.use_attn_in:
            return True
        return any(
            hook._forward_hooks or hook._forward_pre_hooks or hook._backward_hooks
            for hook in (self.attn.hook_k, self.attn.hook_v)
        )

    def _last_query_attention(
        self, resid: Float[Tensor, "batch pos d_model"]
    ) -> Float[Tensor, "batch 1 d_model"]:
        """`self.attn(resid[:, -1:], resid, resid)` with the products reassociated.

        With one query, score_j = (u_j W_K + b_K)·q = u_j·(W_K qᵀ) + b_K·q and, since the pattern
        sums to 1, z = Σ_j a_j (u_j W_V + b_V) = (Σ_j a_j u_j) W_V + b_V. No key or value is
        formed per position: O(L·d + d²) per context instead of O(L·d²). The other hook points
        fire with the values the standard path gives; when anything listens to `hook_k` or
        `hook_v`, `forward` takes the standard path instead, so those hooks are never skipped.
        """
        attn = self.attn
        q = attn.hook_q(
            einops.einsum(resid[:, -1:], attn.W_Q, "batch q d_model, head d_model d_head -> batch q head d_head")
            + attn.b_Q
        )
        query_in_resid = einops.einsum(q, attn.W_K, "batch q head d_head, head d_model d_head -> batch q head d_model")
        scores = einops.einsum(resid, query_in_resid, "batch key d_model, batch q head d_model -> batch head q key")
        key_bias = einops.einsum(q, attn.b_K, "batch q head d_head, head d_head -> batch head q")
        scores = attn.hook_attn_scores((scores + key_bias[..., None]) / attn.attn_scale)
        pattern = attn.hook_pattern(torch.softmax(scores, dim=-1))
        mixed = einops.einsum(pattern, resid, "batch head q key, batch key d_model -> batch q head d_model")
        z = attn.hook_z(
            einops.einsum(mixed, attn.W_V, "batch q head d_model, head d_model d_head -> batch q head d_head")
            + attn.b_V
        )
        return einops.einsum(z, attn.W_O, "batch q head d_head, head d_head d_model -> batch q d_model") + attn.b_O


class LCAToy(HookedTransformer):
    """f(x) of the LCA paper with TL hook names. See the module docstring for conventions."""

    # Read by the probes (hooks.attribution): the block's output replaces the stream, so the
    # embeddings reach the logits only through attention.
    has_residual_stream = False

    def __init__(self, cfg: ToyConfig):
        tl_cfg = HookedTransformerConfig(
            n_layers=1,
            n_heads=1,
            d_model=cfg.d_model,
            d_head=cfg.d_model,
            d_vocab=cfg.d_vocab,
            n_ctx=cfg.n_ctx,
            attn_only=True,
            normalization_type=None,
            attention_dir="bidirectional",
            default_prepend_bos=False,
            init_weights=False,
            device="cpu",
            model_name="lca-toy",
        )
        with warnings.catch_warnings():  # TL 3.9 deprecates HookedTransformer in favour of 4.x
            warnings.simplefilter("ignore", DeprecationWarning)
            super().__init__(tl_cfg, move_to_device=False)
        self.toy_cfg = cfg
        del self.pos_embed, self.hook_pos_embed
        self.blocks = nn.ModuleList([ToyBlock(tl_cfg)])
        self.unembed = TiedUnembed(self.embed)
        self._make_constant(self.blocks[0].attn)
        self._init_weights(cfg)
        self.setup()  # re-index hook points after swapping modules

    @staticmethod
    def _make_constant(attn: Attention) -> None:
        """W_O = I and zero biases, as buffers: part of the computation, never trained or saved."""
        d = attn.cfg.d_model
        constants = {
            "W_O": torch.eye(d)[None],
            "b_Q": torch.zeros(1, d),
            "b_K": torch.zeros(1, d),
            "b_V": torch.zeros(1, d),
            "b_O": torch.zeros(d),
        }
        for name, value in constants.items():
            delattr(attn, name)
            attn.register_buffer(name, value, persistent=False)

    def _init_weights(self, cfg: ToyConfig) -> None:
        """N(0, 1/d) for W_E, W_Q, W_K, W_V (embeddings of norm ≈ 1); W_V = I when frozen."""
        gen = as_generator(cfg.seed)
        std = cfg.d_model**-0.5
        attn = self.blocks[0].attn
        with torch.no_grad():
            for param in (self.embed.W_E, attn.W_Q, attn.W_K, attn.W_V):
                param.copy_(torch.randn(param.shape, generator=gen) * std)
            if cfg.freeze_wv:
                attn.W_V.copy_(torch.eye(cfg.d_model)[None])
        attn.W_V.requires_grad_(not cfg.freeze_wv)
        self.embed.W_E.requires_grad_(not cfg.freeze_embed)

    # Excluded from the runtime type checker used under test: forward validates its input itself
    # and answers bad input with one ValueError sentence, which the checker would pre-empt.
    @typing.no_type_check
    def forward(  # type: ignore[override]
        self,
        tokens: Int[Tensor, "batch pos"],
        return_type: Optional[str] = "logits",
        last_position_only: bool = False,
    ) -> Optional[Float[Tensor, "batch *pos d_vocab"]]:
        """Logits [batch, pos, V], or [batch, V] with `last_position_only` (the query at L only)."""
        if not isinstance(tokens, Tensor) or tokens.dtype.is_floating_point or tokens.ndim != 2:
            raise ValueError(
                "the LCA toy takes token ids as an integer tensor [batch, pos]; it has no tokenizer."
            )
        if return_type not in ("logits", None):
            raise ValueError(
                f"return_type must be 'logits' or None: the LCA toy has no language-model {return_type!r}; its loss is "
                "cross-entropy at the last position against z* (lca_interp.training)."
            )
        resid = self.hook_embed(self.embed(tokens))
        resid = self.blocks[0](resid, last_position_only)
        logits = self.unembed(resid)
        if return_type is None:
            return None
        return logits[:, -1] if last_position_only else logits

    def on_device(self, device: str | torch.device) -> "LCAToy":
        """Move to `device` and keep `cfg.device` in step, quietly: TL's `to` prints a line on
        every call, and training moves a toy for every checkpoint."""
        self.cfg.device = str(device)
        return nn.Module.to(self, device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ TransformerLens's tools

    def tl_parameters(self) -> dict[str, Tensor]:
        """Every weight under its TransformerLens name, the constant ones (W_O = I, zero biases)
        and the tied unembedding W_U = W_Eᵀ included: what TL's `SVDInterpreter` reads."""
        attn = self.blocks[0].attn
        constants = {f"blocks.0.attn.{name}": getattr(attn, name) for name in ("W_O", "b_Q", "b_K", "b_V", "b_O")}
        return {**dict(self.named_parameters()), **constants, "unembed.W_U": self.unembed.W_U, "unembed.b_U": self.unembed.b_U}

    def run_with_cache(self, *args, **kwargs):  # type: ignore[override]
        out, cache = super().run_with_cache(*args, **kwargs)
        if isinstance(cache, ActivationCache):
            cache = ToyActivationCache(cache.cache_dict, self, has_batch_dim=cache.has_batch_dim)
        return out, cache

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> Tensor:
        """Zero: the toy's only bias-bearing path is attention, and its biases are constant zeros."""
        return torch.zeros(self.cfg.d_model)

    def generate(self, *args, **kwargs):  # type: ignore[override]
        raise ValueError("the LCA toy predicts z* at the last position; it does not generate text.")

    def loss_fn(self, *args, **kwargs):  # type: ignore[override]
        raise ValueError("the LCA toy has no next-token loss; its loss is cross-entropy at the last position against z*.")

    def _no_tokenizer(self, *args, **kwargs):
        raise ValueError("the LCA toy has no tokenizer: its tokens are the integers 0..V−1 (task.token_label names them).")

    to_tokens = to_string = to_str_tokens = to_single_token = _no_tokenizer  # type: ignore[assignment]


class ToyActivationCache(ActivationCache):
    """An `ActivationCache` that refuses to split a residual stream the toy does not have."""

    def _no_residual_stream(self, *args, **kwargs):
        raise ValueError(
            "the LCA toy has no residual stream (its output is the attention output alone); use "
            "cache.stack_head_results() for what the head writes."
        )

    decompose_resid = get_full_resid_decomposition = _no_residual_stream  # type: ignore[assignment]
