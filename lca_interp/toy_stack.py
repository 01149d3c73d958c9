"""Several LCA toys as one stack of weights: the toy's last-position function and AdamW, per toy.

Context
-------
Paper A's claims need dozens of small toys (seeds × context lengths × widths × frozen variants ×
learning rates). One toy's step is a handful of [256 × 256 × 128] products, too small to keep two
CPU cores busy, so toys of the same shape train together: their weights are stacked on a leading
`toy` axis and one batched product serves all of them. Nothing couples the toys: the loss is a sum
of per-toy losses, so each toy's gradient is its own, and AdamW is elementwise, with a learning
rate, weight decay and step count per toy.

The toy's function in token space
---------------------------------
With one query (the last position), the toy is f(x) = W_E W_V Σ_j a_j W_E(x_j) with
a = softmax_j(score(x_j)), and a key's score depends only on its token. Grouping positions by
token, Σ_j a_j W_E(x_j) = Σ_v w_v W_E(v) with w = softmax_v(score(v) + log c_v), where c_v counts
the occurrences of token v in the context (log 0 = −inf). So the forward needs the [batch, V]
token counts and dense products with W_E, never the [batch, L, d] tensor of gathered embeddings,
and its cost does not grow with L. `last_position_logits` computes exactly the function
`LCAToy.forward(x, last_position_only=True)` computes (tests compare them), without hooks: this
is the training kernel, and the hooked `LCAToy` stays the object of analysis.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from lca_interp.toy import LCAToy

# The toy's parameters, in `LCAToy.named_parameters()` order and naming.
PARAMETERS = ("embed.W_E", "blocks.0.attn.W_Q", "blocks.0.attn.W_K", "blocks.0.attn.W_V")
BETAS, EPS = (0.9, 0.999), 1e-8  # torch.optim.AdamW's defaults, which the single-toy runs used


def last_position_logits(
    W_E: Float[Tensor, "toy V d"],
    W_Q: Float[Tensor, "toy d d_head"],
    W_K: Float[Tensor, "toy d d_head"],
    W_V: Float[Tensor, "toy d d_head"],
    x: Int[Tensor, "toy batch L"],
) -> Float[Tensor, "toy batch V"]:
    """Each toy's logits at the last position of its contexts (W_O = I, W_U = W_Eᵀ, no biases).

    Contexts shorter than L are padded on the left with the token id V (`pad_contexts`), which
    counts for nothing, so toys of different context lengths share one call."""
    toys = torch.arange(x.shape[0], device=x.device)[:, None]
    V = W_E.shape[1]
    query = W_E[toys, x[..., -1]] @ W_Q  # [toy, batch, d_head]
    query_in_resid = query @ W_K.transpose(1, 2)  # [toy, batch, d]: the query read back as a key
    scores = query_in_resid @ W_E.transpose(1, 2) / math.sqrt(W_Q.shape[-1])  # [toy, batch, V]
    counts = torch.zeros(*x.shape[:2], V + 1, dtype=torch.long, device=x.device)
    counts = counts.scatter_add_(2, x, torch.ones_like(x))[..., :V]  # [toy, batch, V]; the pad column dropped
    log_count = torch.arange(x.shape[-1] + 1, dtype=W_E.dtype, device=x.device).log()  # log 0 = −inf
    attention_by_token = torch.softmax(scores + log_count[counts], dim=-1)  # [toy, batch, V]
    z = (attention_by_token @ W_E) @ W_V  # [toy, batch, d_head]
    return z @ W_E.transpose(1, 2)


def pad_contexts(contexts: Sequence[Int[Tensor, "batch _"]], pad: int) -> Int[Tensor, "toy batch L"]:
    """Stack contexts of different lengths, the shorter ones padded on the left with `pad` (= V,
    which `last_position_logits` ignores), so every context ends at the last position."""
    length = max(c.shape[1] for c in contexts)
    return torch.stack([F.pad(c, (length - c.shape[1], 0), value=pad) for c in contexts])


class ToyStack:
    """The trainable state of n toys of one shape: stacked weights and AdamW moments.

    All toys share V and d; anything else (task, seed, which weights are frozen, learning rate,
    weight decay, how far each has trained) is per toy. A weight no toy trains is stacked without
    a gradient; a weight some toys freeze has its gradient and decay masked for those toys, so
    their AdamW moments stay zero and the weight does not move by a single bit.
    """

    def __init__(self, models: Sequence[LCAToy], lrs: Sequence[float], weight_decays: Sequence[float]):
        if not models:
            raise ValueError("a stack needs at least one toy.")
        shapes = {(m.cfg.d_vocab, m.cfg.d_model) for m in models}
        if len(shapes) > 1:
            raise ValueError(f"toys in one stack must share V and d, got {sorted(shapes)}.")
        self.configs = [m.toy_cfg for m in models]
        self.device = models[0].embed.W_E.device  # every tensor of the stack lives with the toys' weights
        self.params: dict[str, Tensor] = {}
        self.trains: dict[str, Tensor] = {}  # name → [toy] bool: which toys train this weight
        for name in PARAMETERS:
            weights = [dict(m.named_parameters())[name] for m in models]
            self.trains[name] = torch.tensor([w.requires_grad for w in weights], device=self.device)
            self.params[name] = torch.stack([w.detach() for w in weights]).requires_grad_(bool(self.trains[name].any()))
        self.exp_avg = {name: torch.zeros_like(self.params[name]) for name in self.trainable}
        self.exp_avg_sq = {name: torch.zeros_like(self.params[name]) for name in self.trainable}
        # Per-toy AdamW scalars in float64, as torch.optim.AdamW computes them in Python floats
        # (MPS has no float64: float32 there).
        scalar = dict(dtype=torch.float32 if self.device.type == "mps" else torch.float64, device=self.device)
        self.adam_steps = torch.zeros(len(models), **scalar)
        self.lr = torch.tensor(lrs, **scalar)
        self.weight_decay = torch.tensor(weight_decays, **scalar)

    def __len__(self) -> int:
        return len(self.configs)

    @property
    def trainable(self) -> list[str]:
        """The weights some toy of the stack still trains (the others get no gradient at all)."""
        return [name for name, p in self.params.items() if p.requires_grad]

    def logits(self, x: Int[Tensor, "toy batch L"], toys: slice | Tensor = slice(None)) -> Float[Tensor, "toy batch V"]:
        """Logits of the toys `toys` (a slice or an index tensor; default: all), each on its own
        contexts x[toy] (padded on the left with V where they are shorter)."""
        p = self.params
        heads = [p[name][toys, 0] for name in PARAMETERS[1:]]  # one head: [toy, d, d_head]
        return last_position_logits(p["embed.W_E"][toys], *heads, x)

    @torch.no_grad()
    def adamw_step(self) -> None:
        """One AdamW step of every toy on the gradients in `.grad`, as torch.optim.AdamW does it
        (decoupled decay, bias-corrected moments), with each toy's own lr and step count."""
        self.adam_steps += 1
        beta1, beta2 = BETAS
        # Per-toy scalars, shaped to broadcast over a parameter's other axes.
        correction1 = 1 - beta1**self.adam_steps
        correction2_sqrt = (1 - beta2**self.adam_steps).sqrt()
        for name in self.trainable:
            param, trains = self.params[name], self.trains[name]
            per_toy = lambda v: v.to(param.dtype).view(-1, *[1] * (param.ndim - 1))  # noqa: E731
            grad = param.grad * per_toy(trains) if not trains.all() else param.grad
            param.mul_(1 - per_toy(self.lr * self.weight_decay * trains))
            self.exp_avg[name].lerp_(grad, 1 - beta1)
            self.exp_avg_sq[name].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            denom = (self.exp_avg_sq[name].sqrt() / per_toy(correction2_sqrt)).add_(EPS)
            param.addcdiv_(self.exp_avg[name] * per_toy(-self.lr / correction1), denom)
            param.grad = None

    def keep(self, indices: Sequence[int]) -> None:
        """Drop every toy not in `indices` (toys that finished), keeping the others' state."""
        index = torch.tensor(list(indices), dtype=torch.long, device=self.device)
        self.configs = [self.configs[i] for i in indices]
        for name, param in self.params.items():
            self.trains[name] = self.trains[name][index]
            # Once no toy left trains a weight (the trained-W_E toys plateau before the frozen
            # ones), its gradient is no longer computed.
            self.params[name] = param.detach()[index].requires_grad_(bool(self.trains[name].any()))
        for moments in (self.exp_avg, self.exp_avg_sq):
            for name in moments:
                moments[name] = moments[name][index]
        self.adam_steps, self.lr, self.weight_decay = self.adam_steps[index], self.lr[index], self.weight_decay[index]

    def model(self, i: int) -> LCAToy:
        """Toy i as an `LCAToy` (a copy of its current weights)."""
        model = LCAToy(self.configs[i]).on_device(self.device)
        with torch.no_grad():
            for name, param in model.named_parameters():
                param.copy_(self.params[name][i])
        return model

    def optimizer_state(self, i: int) -> dict[str, Tensor]:
        """Toy i's AdamW state as flat tensors named like a torch.optim.AdamW checkpoint."""
        state = {}
        for name in self.trainable:
            if not self.trains[name][i]:
                continue
            state[f"{name}.exp_avg"] = self.exp_avg[name][i]
            state[f"{name}.exp_avg_sq"] = self.exp_avg_sq[name][i]
            state[f"{name}.step"] = self.adam_steps[i].float()
        return state

    @torch.no_grad()
    def load(self, i: int, weights: dict[str, Tensor], optimizer: dict[str, Tensor]) -> None:
        """Set toy i's weights and AdamW state (as `optimizer_state` writes it)."""
        for name in PARAMETERS:
            self.params[name][i] = weights[name]
        for name in self.trainable:
            if f"{name}.step" in optimizer:
                self.exp_avg[name][i] = optimizer[f"{name}.exp_avg"]
                self.exp_avg_sq[name][i] = optimizer[f"{name}.exp_avg_sq"]
                self.adam_steps[i] = float(optimizer[f"{name}.step"])
