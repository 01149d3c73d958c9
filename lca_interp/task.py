"""The latent concept association (LCA) task of Jiang et al. (2024), with its exact likelihood.

Context
-------
A concept is a vector of m binary latent variables z ∈ {0,1}^m. Each of the V = 2^m vectors is a
token, ι(z) = the integer whose binary digits are z, with z_1 the most significant bit (so the
cluster {z : z_1 = 0} is the contiguous token range [0, V/2), which keeps heat maps readable).

Given the output `z*`, a context is drawn as

    t_1 .. t_{L-1}  ~  p(· | z*) = ω · π(· | z*) + (1 - ω) · Uniform(all V tokens)
    t_L             ~  π(· | z*),        π(z | z*) ∝ exp(-D_H(z, z*) / β) on N(z*), 0 elsewhere

and the label is `y = ι(z*)`. D_H is the Hamming distance, `N(z*) ⊆ Z∖{z*}` the neighbourhood.

Invariant
---------
Because the distribution is known exactly, so is the best any model can do: with a uniform prior
over `z*`, the Bayes-optimal predictor is argmax_y log p(x | y), and its expected accuracy is the
ceiling reported beside every model accuracy in this package. Ties are credited fractionally
(1/|argmax set|), which is the accuracy of the Bayes rule with random tie-breaking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Union

import numpy as np
import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lca_interp.config import Config
from lca_interp.options import NEIGHBOURHOODS

NeighbourhoodName = Literal["all", "hamming1", "cluster1", "cluster2"]

# V x V float64 matrices: m = 12 gives V = 4096 and 128 MiB per matrix; m = 13 would need 512 MiB
# for each of the half-dozen matrices a task holds.
MAX_M = 12
# Log-likelihoods are sums of at most L float64 terms; candidates closer than this are ties.
TIE_TOLERANCE = 1e-9
# The two ways `LCATask.sample` draws tokens; training settings record which one made the batches.
XOR_ALIAS, ROW_CDF = "xor-alias", "row-cdf"


def as_generator(seed: int | torch.Generator) -> torch.Generator:
    """A CPU generator from a seed, or the generator itself (so callers can continue a stream)."""
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(int(seed))


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from a tuple of integers (e.g. (seed, stream, step)).

    The length leads the entropy because SeedSequence ignores trailing zeros: (s, 0) ≠ (s,).
    """
    entropy = [len(keys), *(int(k) for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> 1)


def latent_bits(m: int) -> Int[Tensor, "V m"]:
    """Row t is z = ι⁻¹(t): the m binary latents of token t, most significant bit first."""
    tokens = torch.arange(2**m)
    shifts = torch.arange(m - 1, -1, -1)
    return (tokens[:, None] >> shifts[None, :]) & 1


def token_label(token: int, m: int) -> str:
    """A token as its id and latent bits, e.g. 37 -> "37:00100101" for m = 8."""
    return f"{token}:{token:0{m}b}"


def hamming_distances(m: int) -> Int[Tensor, "V V"]:
    """D_H(t, t') for every pair of tokens: popcount of t XOR t'."""
    bits = latent_bits(m)
    return (bits[:, None, :] != bits[None, :, :]).sum(-1)


def neighbourhood_mask(m: int, name: str) -> Bool[Tensor, "V V"]:
    """N as a boolean matrix: row `z*` marks the tokens `z ∈ N(z*)`. The diagonal is always False."""
    bits = latent_bits(m)
    distances = hamming_distances(m)
    not_self = ~torch.eye(2**m, dtype=torch.bool)
    if name == "all":
        return not_self
    if name == "hamming1":
        return distances == 1
    if name in ("cluster1", "cluster2"):
        n_shared = 1 if name == "cluster1" else 2
        if m < n_shared:
            raise ValueError(f"neighbourhood {name!r} needs m ≥ {n_shared}, got m = {m}.")
        prefix = bits[:, :n_shared]
        same_cluster = (prefix[:, None, :] == prefix[None, :, :]).all(-1)
        return same_cluster & not_self
    raise ValueError(
        f"unknown neighbourhood {name!r}; use one of {', '.join(NEIGHBOURHOODS)} or pass a "
        "boolean V×V mask."
    )


@dataclass(frozen=True, eq=False)
class LCATask(Config):
    """One LCA distribution: parameters plus the exact matrices they define.

    Args:
        m: number of binary latents; the vocabulary has V = 2^m tokens.
        omega: weight ω ∈ [0, 1] of π in the context distribution p.
        beta: temperature β > 0 of `π(z | z*) ∝ exp(-D_H(z, z*) / β)`.
        context_len: L ≥ 1 tokens per sample; the last one is drawn from π.
        neighbourhood: "all" (all but `z*`), "hamming1", "cluster1" (same z_1), "cluster2" (same
            z_1, z_2), or a boolean V×V mask whose row `z*` marks `N(z*)`.
    """

    m: int
    omega: float = 0.5
    beta: float = 1.0
    context_len: int = 64
    neighbourhood: Union[str, Tensor] = "all"
    # Derived matrices, filled in __post_init__ (frozen dataclass, so set via object.__setattr__).
    mask: Bool[Tensor, "V V"] = field(init=False, repr=False, compare=False)
    pi: Float[Tensor, "V V"] = field(init=False, repr=False, compare=False)
    p: Float[Tensor, "V V"] = field(init=False, repr=False, compare=False)
    # How `sample` draws tokens (see there): alias tables over XOR offsets for a neighbourhood that
    # looks the same from every z* (every named one), else row-normalised CDFs of p and π.
    sampler: str = field(init=False, compare=False)
    _tables: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.m, bool) or not isinstance(self.m, int) or not 1 <= self.m <= MAX_M:
            raise ValueError(
                f"m must be an integer from 1 to {MAX_M} (V = 2^m tokens, V×V matrices held in "
                f"memory), got {self.m!r}."
            )
        if not (isinstance(self.omega, (int, float)) and 0.0 <= self.omega <= 1.0):
            raise ValueError(f"omega must lie in [0, 1], got {self.omega!r}.")
        if not (isinstance(self.beta, (int, float)) and self.beta > 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be a positive finite number, got {self.beta!r}.")
        if isinstance(self.context_len, bool) or not isinstance(self.context_len, int):
            raise ValueError(f"context_len must be an integer ≥ 1, got {self.context_len!r}.")
        if self.context_len < 1:
            raise ValueError(f"context_len must be ≥ 1, got {self.context_len}.")

        mask = self._resolve_mask()
        empty = (~mask.any(dim=1)).nonzero().flatten()
        if len(empty) > 0:
            raise ValueError(
                f"the neighbourhood of z* = {int(empty[0])} is empty ({len(empty)} outputs have "
                "none), so its last token cannot be drawn from π; choose a larger neighbourhood."
            )
        # Normalise in log space: exp(-D/β) underflows to 0/0 for small β.
        log_weights = (-hamming_distances(self.m).double() / self.beta).masked_fill(~mask, -math.inf)
        pi = torch.softmax(log_weights, dim=1)
        p = self.omega * pi + (1.0 - self.omega) / self.vocab_size
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "pi", pi)
        object.__setattr__(self, "p", p)
        if _xor_invariant(mask):  # p(z | z*) = p(z ⊕ z* | 0): one table serves every z*
            object.__setattr__(self, "sampler", XOR_ALIAS)
            object.__setattr__(self, "_tables", (_alias_table(p[0]), _alias_table(pi[0])))
        else:
            object.__setattr__(self, "sampler", ROW_CDF)
            object.__setattr__(self, "_tables", (_cdf(p), _cdf(pi)))

    def _resolve_mask(self) -> Bool[Tensor, "V V"]:
        if isinstance(self.neighbourhood, str):
            return neighbourhood_mask(self.m, self.neighbourhood)
        mask = torch.as_tensor(self.neighbourhood)
        V = self.vocab_size
        if mask.dtype != torch.bool or mask.shape != (V, V):
            raise ValueError(
                f"a neighbourhood mask must be a boolean tensor of shape ({V}, {V}), got "
                f"{mask.dtype} of shape {tuple(mask.shape)}."
            )
        if mask.diagonal().any():
            raise ValueError("a neighbourhood mask must not contain z* itself (diagonal must be False).")
        return mask.clone()

    # ------------------------------------------------------------------ description

    @property
    def vocab_size(self) -> int:
        return 2**self.m

    @property
    def neighbourhood_name(self) -> str:
        return self.neighbourhood if isinstance(self.neighbourhood, str) else "custom"

    def to_dict(self) -> dict:
        """JSON-ready parameters; a custom mask is stored as each `z*`'s list of neighbours."""
        if isinstance(self.neighbourhood, str):
            neighbourhood: str | list[list[int]] = self.neighbourhood
        else:
            neighbourhood = [row.nonzero().flatten().tolist() for row in self.mask]
        return {
            "m": self.m,
            "omega": self.omega,
            "beta": self.beta,
            "context_len": self.context_len,
            "neighbourhood": neighbourhood,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "LCATask":
        """The inverse of `to_dict`; a neighbourhood given as lists of neighbours becomes a mask."""
        neighbourhood = data.get("neighbourhood", "all")
        if isinstance(neighbourhood, list) and isinstance(data.get("m"), int):
            V = 2 ** data["m"]
            mask = torch.zeros(V, V, dtype=torch.bool)
            for z_star, neighbours in enumerate(neighbourhood):
                mask[z_star, neighbours] = True
            data = {**data, "neighbourhood": mask}
        return super().from_dict(data)

    # ------------------------------------------------------------------ sampling

    def sample(
        self, batch_size: int, seed: int | torch.Generator
    ) -> tuple[Int[Tensor, "batch L"], Int[Tensor, "batch"]]:
        """Draw `batch_size` contexts x and their labels `y = ι(z*)`, vectorized.

        One float64 uniform per token. A neighbourhood that looks the same from every `z*`
        (`N(z*) = z* ⊕ N(0)`, true of every named one) makes `p(z | z*) = p(z ⊕ z* | 0)`, so a
        token is `z* ⊕ e` with the offset e drawn from one alias table (two gathers and a compare
        per token; the table's threshold is 0 for a zero-probability offset, which is then never
        returned). Other masks use inverse-CDF sampling on each `z*`'s row, each CDF ending at
        exactly 1.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}.")
        gen = as_generator(seed)
        y = torch.randint(self.vocab_size, (batch_size,), generator=gen)
        u_context = torch.rand(batch_size, self.context_len - 1, generator=gen, dtype=torch.float64)
        u_last = torch.rand(batch_size, 1, generator=gen, dtype=torch.float64)
        table_p, table_pi = self._tables
        if self.sampler == XOR_ALIAS:
            offsets = torch.cat([_alias_draw(table_p, u_context), _alias_draw(table_pi, u_last)], dim=1)
            return offsets ^ y[:, None], y
        context = torch.searchsorted(table_p[y], u_context, right=True)
        last = torch.searchsorted(table_pi[y], u_last, right=True)
        return torch.cat([context, last], dim=1), y

    # ------------------------------------------------------------------ exact inference

    def log_likelihood(self, x: Int[Tensor, "batch L"]) -> Float[Tensor, "batch V"]:
        """log p(x | y) for every candidate y (float64; -inf where x is impossible under y)."""
        if x.ndim != 2 or x.shape[1] != self.context_len:
            raise ValueError(
                f"x must have shape [batch, {self.context_len}], got {tuple(x.shape)}."
            )
        if x.numel() and (x.min() < 0 or x.max() >= self.vocab_size):
            raise ValueError(f"tokens must lie in [0, {self.vocab_size}), got {x.min()}..{x.max()}.")
        V = self.vocab_size
        # Context tokens are exchangeable, so log p(t_1..t_{L-1} | y) = Σ_t count(t) · log p(t | y).
        counts = torch.zeros(x.shape[0], V, dtype=torch.float64)
        counts.scatter_add_(1, x[:, :-1], torch.ones_like(x[:, :-1], dtype=torch.float64))
        impossible = self.p == 0
        log_p = torch.log(self.p.masked_fill(impossible, 1.0))  # finite stand-in, masked below
        context_ll = counts @ log_p.T  # [batch, V(y)]
        context_ll = context_ll.masked_fill((counts @ impossible.double().T) > 0, -math.inf)
        last_ll = torch.log(self.pi.T[x[:, -1]])  # [batch, V(y)]: log π(t_L | y)
        return context_ll + last_ll

    def posterior(self, x: Int[Tensor, "batch L"]) -> Float[Tensor, "batch V"]:
        """P(y | x) under the uniform prior."""
        return torch.softmax(self.log_likelihood(x), dim=-1)

    def _bayes_optimal(self, x: Int[Tensor, "batch L"]) -> Bool[Tensor, "batch V"]:
        """Which candidates attain the maximal likelihood (to within TIE_TOLERANCE)."""
        ll = self.log_likelihood(x)
        return ll >= ll.max(dim=-1, keepdim=True).values - TIE_TOLERANCE

    def bayes_predict(self, x: Int[Tensor, "batch L"]) -> Int[Tensor, "batch"]:
        """argmax_y log p(x | y), the lowest token among ties."""
        return self._bayes_optimal(x).to(torch.uint8).argmax(dim=-1)

    def bayes_accuracy(self, x: Int[Tensor, "batch L"], y: Int[Tensor, "batch"]) -> float:
        """Expected accuracy of the Bayes rule on (x, y), ties broken uniformly at random."""
        is_best = self._bayes_optimal(x)
        hit = is_best.gather(1, y[:, None]).squeeze(1).double()
        return float((hit / is_best.sum(dim=-1)).mean())


def mix_contexts(
    x_own: Int[Tensor, "batch L"], x_other: Int[Tensor, "batch L"], fraction: float
) -> Int[Tensor, "batch L"]:
    """Context hijacking in the toy: the first ⌊fraction·(L−1)⌋ context tokens of x_own replaced
    by x_other's (contexts drawn for other outputs); the last token t_L is always x_own's."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction!r}.")
    n = int(fraction * (x_own.shape[1] - 1))
    mixed = x_own.clone()
    mixed[:, :n] = x_other[:, :n]
    return mixed


def _cdf(probs: Float[Tensor, "rows V"]) -> Float[Tensor, "rows V"]:
    """Cumulative sums normalised so each row ends at exactly 1."""
    cdf = probs.cumsum(dim=-1)
    return cdf / cdf[:, -1:]


def _xor_invariant(mask: Bool[Tensor, "V V"]) -> bool:
    """Whether `N(z*) = z* ⊕ N(0)` for every `z*` (then π and p are too: `D_H(z, z*) = |z ⊕ z*|`)."""
    tokens = torch.arange(mask.shape[0])
    return bool((mask[tokens[:, None], tokens[:, None] ^ tokens[None, :]] == mask[0]).all())


def _alias_table(probs: Float[Tensor, "V"]) -> tuple[Float[Tensor, "V"], Int[Tensor, "V"]]:
    """Walker's alias table (Vose's construction): column c keeps itself when a uniform fraction
    falls below threshold[c], else gives alias[c]. Columns of probability 0 have threshold 0."""
    V = len(probs)
    scaled = (probs / probs.sum() * V).tolist()
    threshold, alias = [0.0] * V, list(range(V))
    small = [c for c, s in enumerate(scaled) if s < 1.0]
    large = [c for c, s in enumerate(scaled) if s >= 1.0]
    while small and large:
        low, high = small.pop(), large.pop()
        threshold[low], alias[low] = scaled[low], high
        scaled[high] -= 1.0 - scaled[low]
        (small if scaled[high] < 1.0 else large).append(high)
    for column in small + large:  # what round-off leaves: columns of mass ≈ 1, which keep themselves
        if probs[column] <= 0:
            raise RuntimeError("alias table: a zero-probability column was left over; this is a bug.")
        threshold[column] = 1.0
    return torch.tensor(threshold, dtype=torch.float64), torch.tensor(alias)


def _alias_draw(
    table: tuple[Float[Tensor, "V"], Int[Tensor, "V"]], uniforms: Float[Tensor, "batch n"]
) -> Int[Tensor, "batch n"]:
    """One draw per uniform in [0, 1): its top log2(V) bits pick the column, the rest the side
    (V is a power of two, so the split is exact in float64)."""
    threshold, alias = table
    scaled = uniforms * len(threshold)
    column = scaled.long()
    return torch.where(scaled - column < threshold[column], column, alias[column])
