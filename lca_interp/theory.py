"""Constructions and measurements from the theory of Jiang et al. (2024), section 5.

Context
-------
The paper explains the trained toy with three objects:

* **Eq 5.1, the constructed value matrix.** W_V = Σ_t W_E(t) (Σ_{t' ∈ N_1(t)} W_E(t')ᵀ), with
  N_1(t) the Hamming-1 neighbours of t inside N(t). It is an associative memory: it writes token
  t wherever one of t's neighbours is read. With orthonormal embeddings and uniform attention
  (W_K = W_Q = 0) the logit of y is the fraction of context tokens in N_1(y), so the error falls
  to 0 as L grows (Theorem 1); with N = Hamming-1 and ω = 1 it is 0 (Lemma 2), while W_V = I
  scores y by how often y itself appears, which never happens for z* (error 1).
* **Eq 5.2, the embedding geometry.** Trained embeddings satisfy ⟨W_E(t), W_E(t')⟩ ≈ b_0 when
  t = t' and −a·D_H(t, t') + b otherwise, with a > 0 and b_0 > b. When b = b_0 the Gram matrix
  b·11ᵀ − a·D has rank ≤ m + 2 (Lemma 5), so a trained W_E shows a spectral gap after about m
  singular values.
* **Attention selects the cluster** of the last token when N is a cluster (Lemma 6).

Conventions
-----------
Functions take and return TransformerLens-convention matrices: `W_E` is [V, d] (token t's
embedding is row t) and the value matrix is TL's `W_V[0, 0]` = the paper's W_Vᵀ, so that
`u @ W_V` maps a residual row vector. In that convention Eq 5.1 reads W_V = W_Eᵀ Aᵀ W_E with
A[t, t'] = 1 iff t' ∈ N_1(t).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from scipy.linalg import subspace_angles
from torch import Tensor

from lca_interp.fit import least_squares
from lca_interp.task import LCATask, as_generator, hamming_distances, latent_bits
from lca_interp.toy import LCAToy, ToyConfig

# ---------------------------------------------------------------------- Eq 5.1


def hamming1_partners(task: LCATask) -> Bool[Tensor, "V V"]:
    """A[t, t'] = 1 iff t' is a Hamming-1 neighbour of t inside N(t): the pairs of Eq 5.1."""
    return task.mask & (hamming_distances(task.m) == 1)


def random_partners(partners: Bool[Tensor, "V V"], seed: int | torch.Generator) -> Bool[Tensor, "V V"]:
    """The randomly constructed baseline's pairs: for every token t, as many partners as t has in
    `partners`, drawn uniformly without replacement from the other V − 1 tokens.

    It has the same number of outer products per token as Eq 5.1, so the same scale, but its
    partners ignore the latent structure.
    """
    gen = as_generator(seed)
    V = partners.shape[0]
    counts = partners.sum(dim=1)
    scores = torch.rand(V, V, generator=gen)
    scores.fill_diagonal_(-1.0)  # never pick t itself
    order = scores.argsort(dim=1, descending=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(V).expand(V, V).contiguous())
    return ranks < counts[:, None]


def value_matrix_from_pairs(
    W_E: Float[Tensor, "V d"], partners: Bool[Tensor, "V V"]
) -> Float[Tensor, "d d"]:
    """Σ_t W_E(t) Σ_{t' : partners[t, t']} W_E(t')ᵀ, returned in TL convention (W_Eᵀ Aᵀ W_E)."""
    A = partners.to(W_E.dtype)
    return W_E.T @ A.T @ W_E


def constructed_value_matrix(W_E: Float[Tensor, "V d"], task: LCATask) -> Float[Tensor, "d d"]:
    """Eq 5.1 for the task's neighbourhood, in TL convention."""
    return value_matrix_from_pairs(W_E, hamming1_partners(task))


def random_value_matrix(
    W_E: Float[Tensor, "V d"], task: LCATask, seed: int | torch.Generator
) -> Float[Tensor, "d d"]:
    """The randomly constructed baseline of Eq 5.1 (see `random_partners`), in TL convention."""
    return value_matrix_from_pairs(W_E, random_partners(hamming1_partners(task), seed))


def orthonormal_embeddings(V: int, d: int, seed: int | torch.Generator) -> Float[Tensor, "V d"]:
    """V orthonormal rows in R^d (d ≥ V): the first V rows of a random orthogonal matrix."""
    if d < V:
        raise ValueError(f"orthonormal embeddings need d ≥ V, got d = {d} < V = {V}.")
    gaussian = torch.randn(d, d, generator=as_generator(seed), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))  # Haar-distributed, not just orthogonal
    return q[:V].float()


def theorem1_toy(task: LCATask, d: int, value: str = "constructed", seed: int = 0) -> LCAToy:
    """The model of Theorem 1: W_K = W_Q = 0 (uniform attention), orthonormal W_E (needs
    d ≥ V), and W_V = the Eq 5.1 construction (`value="constructed"`) or the identity."""
    if value not in ("constructed", "identity"):
        raise ValueError(f"value must be 'constructed' or 'identity', got {value!r}.")
    model = LCAToy(ToyConfig(d_vocab=task.vocab_size, d_model=d, n_ctx=task.context_len, seed=seed))
    W_E = orthonormal_embeddings(task.vocab_size, d, seed)
    W_V = constructed_value_matrix(W_E, task) if value == "constructed" else torch.eye(d)
    attn = model.blocks[0].attn
    with torch.no_grad():
        model.embed.W_E.copy_(W_E)
        attn.W_Q.zero_()
        attn.W_K.zero_()
        attn.W_V.copy_(W_V[None])
    return model


def with_value_matrix(model: LCAToy, W_V: Float[Tensor, "d d"]) -> LCAToy:
    """A copy of `model` whose value matrix is replaced by `W_V` (TL convention)."""
    clone = LCAToy(model.toy_cfg)
    clone.load_state_dict(model.state_dict())
    with torch.no_grad():
        clone.blocks[0].attn.W_V.copy_(W_V[None])
    return clone


# ---------------------------------------------------------------------- Eq 5.2 and Lemma 5


@dataclass
class GeometryFit:
    """Least-squares fit of Eq 5.2 to an embedding's Gram matrix.

    `mean_by_distance[k]` is the mean ⟨W_E(t), W_E(t')⟩ over pairs at Hamming distance k (k = 0 is
    the mean squared norm). `a`, `b` fit the off-diagonal pairs as −a·D_H + b, `b0` is the mean
    squared norm, and `r2` is the coefficient of determination of that line over the off-diagonal
    pairs.
    """

    mean_by_distance: list[float]
    a: float
    b: float
    b0: float
    r2: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def embedding_geometry(W_E: Float[Tensor, "V d"], m: int) -> GeometryFit:
    gram = W_E.double() @ W_E.double().T
    distances = hamming_distances(m)
    means = [float(gram[distances == k].mean()) for k in range(m + 1)]
    off = distances > 0
    design = torch.stack([-distances[off].double(), torch.ones(int(off.sum()), dtype=torch.float64)], dim=1)
    fit = least_squares(design, gram[off])
    a, b = fit.coefficients.tolist()
    return GeometryFit(mean_by_distance=means, a=a, b=b, b0=means[0], r2=fit.r2)


def eq52_gram(m: int, a: float, b: float, b0: float) -> Float[Tensor, "V V"]:
    """The Gram matrix Eq 5.2 prescribes: b0 on the diagonal, −a·D_H + b off it."""
    distances = hamming_distances(m).double()
    gram = b - a * distances
    gram.fill_diagonal_(b0)
    return gram


@dataclass
class Spectrum:
    """Singular values (descending) and where the largest ratio σ_k / σ_{k+1} falls.

    `gap_after` = k means the gap lies between the k-th and (k+1)-th singular values (1-based).
    """

    singular_values: list[float]
    gap_after: int
    gap_ratio: float

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def spectrum(matrix: Float[Tensor, "rows cols"], floor: float = 1e-12) -> Spectrum:
    s = torch.linalg.svdvals(matrix.double())
    ratios = s[:-1] / s[1:].clamp_min(floor * s[0])
    k = int(ratios.argmax())
    return Spectrum(singular_values=s.tolist(), gap_after=k + 1, gap_ratio=float(ratios[k]))


# ---------------------------------------------------------------------- subspaces and attention


def top_singular_subspace(matrix: Float[Tensor, "rows cols"], k: int) -> np.ndarray:
    """Orthonormal basis [rows, k] of the column space of the rank-k SVD approximation."""
    u, _, _ = torch.linalg.svd(matrix.double(), full_matrices=False)
    return u[:, :k].numpy()


def smallest_principal_angle(
    first: Float[Tensor, "rows cols"], second: Float[Tensor, "rows cols2"], k: int
) -> float:
    """Smallest principal angle (radians) between the column spaces of the two matrices' rank-k
    SVD approximations (scipy.linalg.subspace_angles)."""
    angles = subspace_angles(top_singular_subspace(first, k), top_singular_subspace(second, k))
    return float(angles.min())


def cluster_ids(task: LCATask, n_latents: int) -> Int[Tensor, "V"]:
    """Each token's cluster: the integer value of its first `n_latents` latents."""
    return latent_bits(task.m)[:, :n_latents] @ (2 ** torch.arange(n_latents - 1, -1, -1))


def same_cluster_attention(
    pattern_last: Float[Tensor, "batch L"], x: Int[Tensor, "batch L"], clusters: Int[Tensor, "V"]
) -> Float[Tensor, "batch"]:
    """Attention mass from the last position onto tokens in the last token's cluster."""
    same = clusters[x] == clusters[x[:, -1:]]
    return (pattern_last * same).sum(-1)


def toy_reference_map(task: LCATask) -> Bool[Tensor, "V V"]:
    """The token map Eq 5.1 stores: reference[s, t] = 1 iff reading s should write t, i.e.
    s ∈ N_1(t). `hamming1_partners(task)` transposed (its row t lists N_1(t)); for the standard
    neighbourhoods the relation is symmetric, for a custom mask the direction matters. Compare
    with `hooks.circuits.full_ov_circuit(toy, 0, 0, range(V))` via `hooks.circuits.memory_score`."""
    return hamming1_partners(task).T.contiguous()
