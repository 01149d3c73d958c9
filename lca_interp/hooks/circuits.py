"""Per-head OV and QK circuits, their SVD read in token space, and associative-memory scores.

Context
-------
Elhage et al., *A Mathematical Framework for Transformer Circuits* (2021), split an attention head
into two independent bilinear maps of the residual stream. In TransformerLens's row-vector
convention (`x @ M`), with d_model × d_model matrices:

* the **OV circuit** W_V @ W_O says what the head writes once it attends to a position: the
  head's output is Σ_j a_j · x_j @ OV;
* the **QK circuit** W_Q @ W_Kᵀ says where it attends: score(i, j) = x_i @ QK @ x_jᵀ / √d_head
  (before biases, masks and positional rotations).

Both are products of two thin matrices, so they are kept as TL `FactoredMatrix` objects and never
formed densely unless asked for. Read through the embedding and unembedding, the OV circuit becomes
a token → token map, the *full OV circuit* W_E @ OV @ W_U, whose row s holds the logits the head
adds when it attends to token s.

Paper A (Jiang et al. 2024) claims that in the LCA toy the value matrix *is* an associative
memory: Eq 5.1 builds W_V = Σ_t W_E(t) Σ_{t' ∈ N_1(t)} W_E(t')ᵀ, so that reading any Hamming-1
neighbour of t writes t. In the toy (no residual, no normalisation, W_O = I, W_U = W_Eᵀ) the full
OV circuit is exactly W_E W_V W_Eᵀ, and with orthonormal embeddings it equals the transposed
neighbour adjacency (`theory.toy_reference_map`). `memory_score` measures how close any
token → token circuit comes to such a reference map, which lets the same number be computed
for the toy's trained W_V and for an LLM head mapping country tokens to capital tokens (paper B).

Invariant
---------
Nothing here allocates a vocab × vocab matrix: SVD directions are projected onto W_E [vocab, d]
and W_U [d, vocab] one matrix-vector product at a time, and the full circuit is only formed on the
token sets the caller names. LayerNorm/RMSNorm, other layers and the residual stream are ignored,
as in "A Mathematical Framework": these are direct paths, not the model's computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Optional, Union

import einops
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import FactoredMatrix

from lca_interp.hooks.model import HookedModel, kv_head, normalizes_queries_and_keys
from lca_interp.hooks.select import heads_of

CIRCUITS = ("ov", "qk")
TokenIds = Union[Sequence[int], Int[Tensor, "n"]]


# ---------------------------------------------------------------------- the circuits


def ov_circuit(model: HookedModel, layer: int, head: int) -> FactoredMatrix:
    """W_V @ W_O of one head as a d_model × d_model `FactoredMatrix` (acts as `x @ OV`).

    A detached snapshot of the weights. A grouped-query head gets its KV group's value matrix
    (TL's `W_V` repeats each group's for its query heads) with its own W_O.
    """
    attn = _attention(model, layer, head)
    return FactoredMatrix(attn.W_V[kv_head(model, layer, head)].detach(), attn.W_O[head].detach())


def qk_circuit(model: HookedModel, layer: int, head: int) -> FactoredMatrix:
    """W_Q @ W_Kᵀ of one head as a d_model × d_model `FactoredMatrix`: x_query @ QK @ x_keyᵀ is
    the attention score before scaling, biases and positional rotations. Grouped-query heads get
    their group's W_K; models that normalise queries and keys (Gemma 3's q/k RMSNorm) refuse."""
    if normalizes_queries_and_keys(model):
        raise ValueError(
            "this model RMS-normalises each head's queries and keys before their product (Gemma 3), so W_Q W_Kᵀ "
            "is not its attention score; read where it attends with hooks.attention instead."
        )
    attn = _attention(model, layer, head)
    W_K_T = einops.rearrange(attn.W_K[kv_head(model, layer, head)].detach(), "d_model d_head -> d_head d_model")
    return FactoredMatrix(attn.W_Q[head].detach(), W_K_T)


def _attention(model: HookedModel, layer: int, head: int):
    ((layer, head),) = heads_of(model, [(layer, head)])
    return model.blocks[layer].attn


def _circuit(model: HookedModel, layer: int, head: int, circuit: str) -> FactoredMatrix:
    if circuit not in CIRCUITS:
        raise ValueError(f"circuit must be one of {CIRCUITS}, got {circuit!r}.")
    return (ov_circuit if circuit == "ov" else qk_circuit)(model, layer, head)


# ---------------------------------------------------------------------- SVD in token space


@dataclass
class SingularDirection:
    """One singular triple σ u vᵀ of a head's circuit, read in token space.

    Since circuits act on row vectors, x @ M = Σ σ (x·u) vᵀ: `u` is the input direction (left
    singular vector) and `v` the output direction (right singular vector).

    * OV: `input_*` are the tokens whose embedding W_E[t] reads most strongly along u, `output_*`
      the tokens whose unembedding W_U[:, t] v writes most strongly (the direct logit effect).
    * QK: nothing is written to the logits, so both sides are read through W_E: `input_*` are
      query tokens along u, `output_*` key tokens along v.

    SVD fixes (u, v) only up to a joint sign flip. The sign is chosen so that the largest-magnitude
    output projection is positive, u flips with v (so σ u vᵀ is unchanged), and both lists hold
    the largest *positive* projections: reading an `input_tokens` token makes the head write
    towards the `output_tokens` tokens. `*_scores` are those projections, descending.
    """

    circuit: str
    index: int
    singular_value: float
    input_tokens: list[str]
    input_ids: list[int]
    input_scores: list[float]
    output_tokens: list[str]
    output_ids: list[int]
    output_scores: list[float]

    def to_dict(self) -> dict:
        return asdict(self)


def singular_directions(
    model: HookedModel,
    layer: int,
    head: int,
    k: int = 5,
    circuit: str = "ov",
    top_tokens: int = 10,
    token_labels: Optional[Callable[[int], str]] = None,
) -> list[SingularDirection]:
    """The top-k singular directions of one head's OV or QK circuit, each with its top tokens.

    Tokens are labelled by `token_labels(id)` when given (the toy has no tokenizer:
    e.g. `functools.partial(lca_interp.task.token_label, m=task.m)`), else by the model's
    tokenizer, else by the id as a string. Cost: one [vocab, d_model] @ [d_model, k] product per
    side, so a 262k vocabulary is fine. See `SingularDirection` for the sign convention.
    """
    matrix = _circuit(model, layer, head, circuit)
    n_singular = matrix.mdim  # a d_model × d_head × d_model product has at most d_head of them
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_singular:
        raise ValueError(
            f"k must be an integer from 1 to {n_singular} (the circuit's inner dimension), "
            f"got {k!r}."
        )
    V = model.cfg.d_vocab
    if isinstance(top_tokens, bool) or not isinstance(top_tokens, int) or not 1 <= top_tokens <= V:
        raise ValueError(f"top_tokens must be an integer from 1 to {V}, got {top_tokens!r}.")

    # SVD needs float32 or better; the factors are thin, so upcasting them is cheap.
    U, S, V = FactoredMatrix(_at_least_float32(matrix.A), _at_least_float32(matrix.B)).svd()
    with torch.no_grad():
        W_E = model.W_E.detach()
        # Cast the k vectors to the weights' dtype rather than the [vocab, d] weights to float32.
        in_scores = (W_E @ U[:, :k].to(W_E.dtype)).float()  # [vocab, k]
        if circuit == "ov":
            W_U_T = einops.rearrange(model.W_U.detach(), "d_model vocab -> vocab d_model")
            out_scores = (W_U_T @ V[:, :k].to(W_U_T.dtype)).float()  # [vocab, k]
        else:
            out_scores = (W_E @ V[:, :k].to(W_E.dtype)).float()  # [vocab, k]
    peak = out_scores.abs().argmax(dim=0)  # [k]
    sign = torch.where(out_scores.gather(0, peak[None]) >= 0, 1.0, -1.0)  # [1, k]
    in_scores, out_scores = in_scores * sign, out_scores * sign

    in_top = in_scores.topk(top_tokens, dim=0)  # values, indices: [top_tokens, k]
    out_top = out_scores.topk(top_tokens, dim=0)
    label = _labeller(model, token_labels)
    directions = []
    for i in range(k):
        in_ids, out_ids = in_top.indices[:, i].tolist(), out_top.indices[:, i].tolist()
        directions.append(
            SingularDirection(
                circuit=circuit,
                index=i,
                singular_value=float(S[i]),
                input_tokens=label(in_ids),
                input_ids=in_ids,
                input_scores=in_top.values[:, i].tolist(),
                output_tokens=label(out_ids),
                output_ids=out_ids,
                output_scores=out_top.values[:, i].tolist(),
            )
        )
    return directions


def _at_least_float32(x: Tensor) -> Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _labeller(
    model: HookedModel, token_labels: Optional[Callable[[int], str]]
) -> Callable[[list[int]], list[str]]:
    if token_labels is not None:
        return lambda ids: [str(token_labels(i)) for i in ids]
    if getattr(model, "tokenizer", None) is not None:
        # One token per row: a [n, 1] batch decodes to n strings in one call.
        return lambda ids: list(model.to_string(torch.tensor(ids)[:, None]))
    return lambda ids: [str(i) for i in ids]


# ---------------------------------------------------------------------- token → token maps


def token_map_circuit(
    model: HookedModel, layer: int, head: int, sources: TokenIds, targets: TokenIds
) -> Float[Tensor, "n_src n_tgt"]:
    """W_E[sources] @ OV @ W_U[:, targets]: entry (s, t) is the logit of target t the head adds
    per unit of attention on source s (e.g. subject tokens → answer tokens).

    Direct path only: normalisation (LayerNorm/RMSNorm), other layers and the residual stream are
    ignored, as in "A Mathematical Framework". For the LCA toy, which has none of them, this is
    exactly the toy's computation, W_E W_V W_Eᵀ restricted to the two token sets.
    """
    matrix = ov_circuit(model, layer, head)
    src = _token_ids(model, sources, "sources")
    tgt = _token_ids(model, targets, "targets")
    with torch.no_grad():
        # Multiply the thin factors first: [n_src, d_head] @ [d_head, n_tgt], never vocab × vocab.
        reads = model.W_E.detach()[src] @ matrix.A  # [n_src, d_head]
        writes = matrix.B @ model.W_U.detach()[:, tgt]  # [d_head, n_tgt]
        return reads @ writes


def full_ov_circuit(
    model: HookedModel, layer: int, head: int, tokens: TokenIds
) -> Float[Tensor, "n n"]:
    """W_E[tokens] @ OV @ W_U[:, tokens]: `token_map_circuit` with the same tokens on both sides
    (rows are tokens attended to, columns the logits written). No normalisation: see there."""
    return token_map_circuit(model, layer, head, tokens, tokens)


def _token_ids(model: HookedModel, tokens: TokenIds, what: str) -> Int[Tensor, "n"]:
    ids = torch.as_tensor(tokens) if not isinstance(tokens, Tensor) else tokens
    if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"{what} must be a non-empty list or 1-D integer tensor of token ids.")
    V = model.cfg.d_vocab
    if int(ids.min()) < 0 or int(ids.max()) >= V:
        raise ValueError(f"{what} contain token ids outside the vocabulary 0..{V - 1}.")
    return ids.long().to(model.W_E.device)


# ---------------------------------------------------------------------- associative-memory score


@dataclass
class MemoryScore:
    """How closely a token → token circuit acts as the associative memory `reference` describes.

    * `cosine`: cosine similarity of the row-centred circuit and the row-centred reference (row
      centring discards what a softmax discards: a constant added to all logits of a row). 1 means
      the circuit is an affine copy of the reference row by row; a circuit whose rows are
      constant scores 0.
    * `retrieval_accuracy`: fraction of source rows whose top-|support| targets are exactly the
      reference's support (entries > 0), i.e. every target beats every non-target strictly; for a
      one-to-one map, top-1 accuracy.
    * `mean_rank`: over all (source, target) pairs of the support, 1 + the number of non-targets
      of that row scoring at least as high as the target (ties count against). 1 is perfect for
      any support size; a random circuit gives about 1 + (n_tgt − |support|) / 2.
    * `n_sources`: rows with a non-empty support (the only ones scored), `n_targets`: columns.
    """

    cosine: float
    retrieval_accuracy: float
    mean_rank: float
    n_sources: int
    n_targets: int

    def to_dict(self) -> dict:
        return asdict(self)


def memory_score(
    circuit: Float[Tensor, "n_src n_tgt"],
    reference: Union[
        Float[Tensor, "n_src n_tgt"], Bool[Tensor, "n_src n_tgt"], Int[Tensor, "n_src n_tgt"]
    ],
) -> MemoryScore:
    """Score `circuit` (e.g. from `token_map_circuit`) against `reference`, a [n_src, n_tgt]
    adjacency (bool or 0/1) or weights; the targets of row s are the entries > 0. Rows with no
    target are left out of accuracy and rank but still count in the cosine. See `MemoryScore`."""
    if circuit.ndim != 2 or circuit.shape != reference.shape:
        raise ValueError(
            "circuit and reference must be 2-D of the same shape, got "
            f"{tuple(circuit.shape)} and {tuple(reference.shape)}."
        )
    circuit = circuit.detach().double().cpu()
    reference = reference.detach().double().cpu()
    if not (torch.isfinite(circuit).all() and torch.isfinite(reference).all()):
        raise ValueError("circuit and reference must be finite.")
    support = reference > 0  # [n_src, n_tgt]
    scored = support.any(dim=1)  # [n_src]
    if not scored.any():
        raise ValueError("the reference has no positive entry, so there is nothing to retrieve.")

    centred_circuit = circuit - circuit.mean(dim=1, keepdim=True)
    centred_reference = reference - reference.mean(dim=1, keepdim=True)
    reference_norm = centred_reference.norm()
    if reference_norm == 0:
        raise ValueError(
            "every reference row is constant, so no circuit can match or miss it; give a "
            "reference that prefers some targets."
        )
    circuit_norm = centred_circuit.norm()
    overlap = (centred_circuit * centred_reference).sum()
    cosine = 0.0 if circuit_norm == 0 else float(overlap / (circuit_norm * reference_norm))

    circuit, support = circuit[scored], support[scored]
    # Best non-target of each row (−inf when every column is a target) against worst target.
    best_other = circuit.masked_fill(support, -torch.inf).max(dim=1).values  # [rows]
    worst_target = circuit.masked_fill(~support, torch.inf).min(dim=1).values  # [rows]
    retrieved = worst_target > best_other
    # Non-targets ≥ each entry, by binary search in the row's sorted non-targets (targets set to
    # −inf sort first and are never counted): O(n log n) per row, not an [n, n] comparison.
    others = circuit.masked_fill(support, -torch.inf).sort(dim=1).values  # [rows, n_tgt], ascending
    n_below = torch.searchsorted(others, circuit, side="left")  # non-targets (and −inf) < entry
    ranks = 1 + circuit.shape[1] - n_below  # [rows, n_tgt], meaningful where support
    return MemoryScore(
        cosine=cosine,
        retrieval_accuracy=float(retrieved.double().mean()),
        mean_rank=float(ranks[support].double().mean()),
        n_sources=int(scored.sum()),
        n_targets=int(reference.shape[1]),
    )


# ---------------------------------------------------------------------- reference maps


def pairs_reference(
    n_src: int, n_tgt: int, pairs: Sequence[tuple[int, int]]
) -> Bool[Tensor, "n_src n_tgt"]:
    """A [n_src, n_tgt] adjacency from (source index, target index) pairs, indices into the
    source and target token lists (e.g. country i → capital i: `[(i, i) for i in range(n)]`)."""
    if n_src < 1 or n_tgt < 1:
        raise ValueError(f"n_src and n_tgt must be positive, got {n_src} and {n_tgt}.")
    if not pairs:
        raise ValueError("no pairs given; pass (source index, target index) pairs.")
    reference = torch.zeros(n_src, n_tgt, dtype=torch.bool)
    for s, t in pairs:
        if not (0 <= s < n_src and 0 <= t < n_tgt):
            raise ValueError(
                f"pair ({s}, {t}) is out of range for {n_src} sources and {n_tgt} targets."
            )
        reference[s, t] = True
    return reference
