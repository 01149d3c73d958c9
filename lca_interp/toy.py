"""The one-layer LCA toy of Jiang et al. (2024) as a TransformerLens `HookedRootModule`.

Context
-------
The paper's model is

    f(x) = [W_Eᵀ W_V attn(W_E χ(x))]_{:, L},    attn(U) = U σ((W_K U)ᵀ (W_Q U) / √d)

one layer, one head, no residual stream, no normalisation, no positional embedding, and tied
embeddings (the unembedding is W_Eᵀ). It is written here on TransformerLens's `HookedRootModule`
and `HookPoint`, the hooking layer that TL 3.9 and 4.x share (4.0 removed `HookedTransformer`),
with `HookedTransformer`'s hook names, parameter names and weight properties, so every probe
written for GPT-2 or Gemma (hook names, `run_with_cache`, `model.OV`, `model.W_E`) runs on it
unchanged; that is the point of this package.

Conventions
-----------
TransformerLens multiplies row vectors on the right, the paper column vectors on the left, so the
stored matrices are the paper's transposes: `model.W_E` [V, d] has token t's embedding as row t,
`W_V` [1, 1, d, d] equals W_V(paper)ᵀ, and the score of key j for query i is
u_j W_K (u_i W_Q)ᵀ = u_jᵀ W_K(paper)ᵀ W_Q(paper) u_i. W_O is a constant identity buffer and all
biases are constant zero buffers, so `model.OV` is exactly W_V and no optimizer ever sees them.
Attention is bidirectional (σ normalises over all L keys), matching the formula for every column.
The state dict holds `embed.W_E` and `blocks.0.attn.W_{Q,K,V}`, the keys toy folders have always
had.

TransformerLens's own tools
---------------------------
What makes sense for the toy works on it: `run_with_cache` (an `ActivationCache`),
`model.OV`/`model.QK`, `SVDInterpreter` (through `tl_parameters`, which lists the constant W_O and
the tied W_U), `cache.stack_head_results` and `cache.logit_attrs`, `transformer_lens.patching`.
What does not refuses with one sentence: text generation and tokenizer helpers (the toy's tokens
are integers 0..V−1; `task.token_label` names them), the language-model loss (the toy's loss is
cross-entropy at the last position against z*), and residual decompositions (the toy has no
residual stream).

`forward(tokens, last_position_only=True)` computes the query at the last position only and
returns logits [batch, V]; training and evaluation use it, since the loss lives there. Hook
points fire as usual, with query-position dimension 1 for `hook_q`, `hook_pattern`, `hook_z`,
`hook_attn_out` and `hook_resid_post`. Unless something listens to `hook_k` or `hook_v`, that
path never forms per-position keys and values (see `ToyBlock._last_query_attention`), which makes
training about an order of magnitude cheaper at the paper's sizes.
"""

from __future__ import annotations

import math
import typing
from dataclasses import dataclass
from typing import Optional

import einops
import torch
import torch.nn as nn
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import ActivationCache, FactoredMatrix, HookedRootModule
from transformer_lens.config import TransformerLensConfig
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


@dataclass
class ToyTLConfig(TransformerLensConfig):
    """The toy's `model.cfg`: TL's config with the fields TL's tools and this package's probes read
    (what `HookedTransformerConfig` would have said of a one-layer, one-head, attention-only,
    bidirectional model without norms or positions)."""

    d_vocab_out: int = -1
    model_name: str = "lca-toy"
    attention_dir: str = "bidirectional"
    original_architecture: Optional[str] = None
    output_logits_soft_cap: float = -1.0
    use_attn_in: bool = False
    use_hook_mlp_in: bool = False
    ungroup_grouped_query_attention: bool = False
    use_normalization_before_and_after: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.d_vocab_out == -1:
            self.d_vocab_out = self.d_vocab


def toy_tl_config(cfg: ToyConfig) -> ToyTLConfig:
    return ToyTLConfig(
        d_model=cfg.d_model, d_head=cfg.d_model, n_layers=1, n_heads=1, n_ctx=cfg.n_ctx, d_vocab=cfg.d_vocab,
        d_mlp=None, attn_only=True, normalization_type=None, positional_embedding_type="none",
        default_prepend_bos=False, act_fn="relu", device="cpu",
    )


class Embed(nn.Module):
    """W_E [V, d]: row t is token t's embedding."""

    def __init__(self, cfg: ToyTLConfig):
        super().__init__()
        self.cfg = cfg
        self.W_E = nn.Parameter(torch.empty(cfg.d_vocab, cfg.d_model))

    def forward(self, tokens: Int[Tensor, "batch pos"]) -> Float[Tensor, "batch pos d_model"]:
        return self.W_E[tokens]


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


class ToyAttention(nn.Module):
    """TL's attention with one head and no mask: trained W_Q, W_K, W_V [head, d_model, d_head];
    W_O = I and zero biases as constant buffers (part of the computation, never trained or
    saved). Hook points and shapes are `HookedTransformer`'s."""

    def __init__(self, cfg: ToyTLConfig):
        super().__init__()
        self.cfg = cfg
        h, d, d_head = cfg.n_heads, cfg.d_model, cfg.d_head
        for name in ("W_Q", "W_K", "W_V"):
            setattr(self, name, nn.Parameter(torch.empty(h, d, d_head)))
        self.register_buffer("W_O", torch.eye(d)[None].expand(h, d_head, d).clone(), persistent=False)
        for name in ("b_Q", "b_K", "b_V"):
            self.register_buffer(name, torch.zeros(h, d_head), persistent=False)
        self.register_buffer("b_O", torch.zeros(d), persistent=False)
        self.attn_scale = math.sqrt(d_head)
        for name in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z", "hook_result"):
            setattr(self, name, HookPoint())

    def forward(
        self,
        query_input: Float[Tensor, "batch query_pos d_model"],
        key_input: Float[Tensor, "batch key_pos d_model"],
        value_input: Float[Tensor, "batch key_pos d_model"],
    ) -> Float[Tensor, "batch query_pos d_model"]:
        q = self.hook_q(einops.einsum(query_input, self.W_Q, "b q d, h d e -> b q h e") + self.b_Q)
        k = self.hook_k(einops.einsum(key_input, self.W_K, "b k d, h d e -> b k h e") + self.b_K)
        v = self.hook_v(einops.einsum(value_input, self.W_V, "b k d, h d e -> b k h e") + self.b_V)
        scores = self.hook_attn_scores(einops.einsum(q, k, "b q h e, b k h e -> b h q k") / self.attn_scale)
        pattern = self.hook_pattern(torch.softmax(scores, dim=-1))
        z = self.hook_z(einops.einsum(pattern, v, "b h q k, b k h e -> b q h e"))
        return self.output(z)

    def output(self, z: Float[Tensor, "batch query_pos head d_head"]) -> Float[Tensor, "batch query_pos d_model"]:
        """z W_O + b_O, through `hook_result` per head when `cfg.use_attn_result` is set."""
        if self.cfg.use_attn_result:
            result = self.hook_result(einops.einsum(z, self.W_O, "b q h e, h e d -> b q h d"))
            return result.sum(-2) + self.b_O
        return einops.einsum(z, self.W_O, "b q h e, h e d -> b q d") + self.b_O


class ToyBlock(nn.Module):
    """Attention only, and the output replaces the stream: resid_post = attn_out."""

    def __init__(self, cfg: ToyTLConfig):
        super().__init__()
        self.attn = ToyAttention(cfg)
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
        return attn.output(z)


class LCAToy(HookedRootModule):
    """f(x) of the LCA paper with TL hook names. See the module docstring for conventions."""

    # Read by the probes (hooks.attribution): the block's output replaces the stream, so the
    # embeddings reach the logits only through attention.
    has_residual_stream = False

    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = toy_tl_config(cfg)
        self.toy_cfg = cfg
        self.embed = Embed(self.cfg)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.blocks = nn.ModuleList([ToyBlock(self.cfg)])
        self.unembed = TiedUnembed(self.embed)
        self._init_weights(cfg)
        self.setup()  # index the hook points by name

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
    def forward(
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
        resid = self.hook_embed(self.embed(tokens.to(self.embed.W_E.device)))
        resid = self.blocks[0](resid, last_position_only)
        logits = self.unembed(resid)
        if return_type is None:
            return None
        return logits[:, -1] if last_position_only else logits

    def on_device(self, device: str | torch.device) -> "LCAToy":
        """Move to `device` and keep `cfg.device` in step."""
        self.cfg.device = str(device)
        return self.to(device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------ weights, as TL names them

    @property
    def W_E(self) -> Float[Tensor, "d_vocab d_model"]:
        return self.embed.W_E

    @property
    def W_U(self) -> Float[Tensor, "d_model d_vocab"]:
        return self.unembed.W_U

    @property
    def b_U(self) -> Float[Tensor, "d_vocab"]:
        return self.unembed.b_U

    def _stacked(self, name: str) -> Tensor:
        return torch.stack([getattr(block.attn, name) for block in self.blocks])

    W_Q = property(lambda self: self._stacked("W_Q"), doc="[layer, head, d_model, d_head]")
    W_K = property(lambda self: self._stacked("W_K"), doc="[layer, head, d_model, d_head]")
    W_V = property(lambda self: self._stacked("W_V"), doc="[layer, head, d_model, d_head]")
    W_O = property(lambda self: self._stacked("W_O"), doc="[layer, head, d_head, d_model]: the identity")
    b_Q = property(lambda self: self._stacked("b_Q"), doc="[layer, head, d_head]: zeros")
    b_K = property(lambda self: self._stacked("b_K"), doc="[layer, head, d_head]: zeros")
    b_V = property(lambda self: self._stacked("b_V"), doc="[layer, head, d_head]: zeros")
    b_O = property(lambda self: self._stacked("b_O"), doc="[layer, d_model]: zeros")

    @property
    def OV(self) -> FactoredMatrix:
        """W_V W_O per layer and head, [1, 1, d, d]: W_V itself, since W_O = I."""
        return FactoredMatrix(self.W_V, self.W_O)

    @property
    def QK(self) -> FactoredMatrix:
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    def tl_parameters(self) -> dict[str, Tensor]:
        """Every weight under its TransformerLens name, the constant ones (W_O = I, zero biases)
        and the tied unembedding W_U = W_Eᵀ included: what TL's `SVDInterpreter` reads."""
        attn = self.blocks[0].attn
        constants = {f"blocks.0.attn.{name}": getattr(attn, name) for name in ("W_O", "b_Q", "b_K", "b_V", "b_O")}
        return {**dict(self.named_parameters()), **constants, "unembed.W_U": self.W_U, "unembed.b_U": self.b_U}

    def set_use_attn_result(self, use_attn_result: bool) -> None:
        """Per-head outputs through `blocks.0.attn.hook_result`, as on `HookedTransformer`."""
        self.cfg.use_attn_result = use_attn_result

    def tokens_to_residual_directions(self, tokens: Int[Tensor, "..."] | int) -> Float[Tensor, "... d_model"]:
        """The unembedding directions of token ids (W_U's columns), [*tokens.shape, d_model]."""
        if isinstance(tokens, str):
            self._no_tokenizer()
        return self.W_U.T[torch.as_tensor(tokens, device=self.W_U.device)]

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> Tensor:
        """Zero: the toy's only bias-bearing path is attention, and its biases are constant zeros."""
        return torch.zeros(self.cfg.d_model, device=self.W_E.device)

    # ------------------------------------------------------------------ TransformerLens's tools

    def run_with_cache(self, *args, **kwargs):  # type: ignore[override]
        """`HookedRootModule.run_with_cache`, with the activations as a TL `ActivationCache`."""
        out, cache = super().run_with_cache(*args, **kwargs)
        return out, ToyActivationCache(cache, self, has_batch_dim=not kwargs.get("remove_batch_dim", False))

    def generate(self, *args, **kwargs):
        raise ValueError("the LCA toy predicts z* at the last position; it does not generate text.")

    def loss_fn(self, *args, **kwargs):
        raise ValueError("the LCA toy has no next-token loss; its loss is cross-entropy at the last position against z*.")

    def _no_tokenizer(self, *args, **kwargs):
        raise ValueError("the LCA toy has no tokenizer: its tokens are the integers 0..V−1 (task.token_label names them).")

    to_tokens = to_string = to_str_tokens = to_single_token = _no_tokenizer


class ToyActivationCache(ActivationCache):
    """An `ActivationCache` that refuses to split a residual stream the toy does not have."""

    def _no_residual_stream(self, *args, **kwargs):
        raise ValueError(
            "the LCA toy has no residual stream (its output is the attention output alone); use "
            "cache.stack_head_results() for what the head writes."
        )

    decompose_resid = get_full_resid_decomposition = _no_residual_stream  # type: ignore[assignment]
