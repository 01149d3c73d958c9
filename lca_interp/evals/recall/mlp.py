"""Paper B's MLP as a regression on the heads before it: erase, amplify, and a task component.

At the last position of recall prompts, an MLP's output is fitted as mlp_out ≈ Σ_h c_h · head_h
+ b over prompts, every head of that layer and the ones before it as a regressor: c_h ≈ 0 or < 0
erases head h's information, c_h > 1 amplifies it, and the intercept b, read through the
unembedding, is the task-aware component that pushes the stream toward the answers. Fitted on the
final layer, b is what the "intercept" mitigation subtracts (`final_intercept`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lca_interp.evals.recall.items import RecallItem, recall_items
from lca_interp.facts import Fact
from lca_interp.fit import least_squares
from lca_interp.hooks.attribution import ResidualComponents, mlp_label, residual_components
from lca_interp.hooks.select import Head

ERASED_BELOW, AMPLIFIED_ABOVE = 0.1, 1.0  # coefficient thresholds of paper B's reading


@dataclass
class Regression:
    """y ≈ Σ_h c_h X_h + b, fitted over samples: coefficients, intercept, R²."""

    coefficients: Float[Tensor, "n_regressors"]
    intercept: Float[Tensor, "d"]
    r_squared: float


def regress_on_vectors(y: Float[Tensor, "n d"], x: Float[Tensor, "n k d"]) -> Regression:
    """Least squares for one scalar per regressor and one shared intercept vector.

    Centring over samples removes b: y − ȳ = Σ_h c_h (X_h − X̄_h), a linear least-squares
    problem in c with n·d equations; then b = ȳ − Σ_h c_h X̄_h."""
    y, x = y.double(), x.double()
    y_mean, x_mean = y.mean(0), x.mean(0)
    design = (x - x_mean).permute(0, 2, 1).reshape(-1, x.shape[1])  # [(n d), k]
    fit = least_squares(design, (y - y_mean).reshape(-1))
    return Regression(fit.coefficients, y_mean - fit.coefficients @ x_mean, fit.r2)


@dataclass
class MLPDecomposition:
    layer: int
    heads: list[str]
    coefficients: list[float]
    r_squared: float
    intercept_norm: float
    intercept_top_tokens: list[str]
    answers_in_top: float  # fraction of the intercept's top tokens that are answers of the task
    answer_rank_percentile: float  # mean percentile of the task's answers in the intercept's logits (1 = top)
    intercept: Optional[Tensor] = field(default=None, repr=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("intercept")
        data["erased"] = [h for h, c in zip(self.heads, self.coefficients) if c < ERASED_BELOW]
        data["amplified"] = [h for h, c in zip(self.heads, self.coefficients) if c > AMPLIFIED_ABOVE]
        return data


@torch.no_grad()
def mlp_decomposition(model, items: Sequence[RecallItem], layer: int, components: Optional[ResidualComponents] = None,
                      batch_size: int = 16, top: int = 30) -> MLPDecomposition:
    """Regress layer `layer`'s MLP output at the last position on the outputs of every head in
    layers ≤ `layer`, plus an intercept; read the intercept through the unembedding.
    `components`: `residual_components` of the items' prompts, if already computed."""
    if not 0 <= layer < model.cfg.n_layers or model.cfg.attn_only:
        raise ValueError(f"layer {layer} has no MLP; pick one of 0..{model.cfg.n_layers - 1}.")
    if len(items) < 3:
        raise ValueError("the regression needs at least 3 prompts.")
    if components is None:
        components = residual_components(model, [item.prompt for item in items], batch_size=batch_size)
    heads = [str(Head(l, h)) for l in range(layer + 1) for h in range(model.cfg.n_heads)]
    fit = regress_on_vectors(components.select([mlp_label(layer)])[:, 0], components.select(heads))
    intercept_logits = fit.intercept.float() @ model.unembed.W_U.detach().float().cpu()
    ranking = intercept_logits.argsort(descending=True)
    answers = sorted({item.answer_id for item in items})
    rank_of = torch.empty_like(ranking)
    rank_of[ranking] = torch.arange(len(ranking))
    return MLPDecomposition(
        layer=layer, heads=heads, coefficients=fit.coefficients.tolist(), r_squared=fit.r_squared,
        intercept_norm=float(fit.intercept.norm()),
        intercept_top_tokens=[model.to_string(torch.tensor([t])) for t in ranking[:top].tolist()],
        answers_in_top=len(set(ranking[:top].tolist()) & set(answers)) / top,
        answer_rank_percentile=float(1 - rank_of[answers].double().mean() / len(ranking)),
        intercept=fit.intercept.float(),
    )


def final_intercept(model, facts: Optional[Sequence[Fact]] = None, limit: Optional[int] = 60, batch_size: int = 16) -> Tensor:
    """The final MLP's intercept from its regression on zero-shot recall prompts (capitals by
    default): what the "intercept" mitigation subtracts."""
    items = recall_items(model, facts, shots=0, limit=limit)
    return mlp_decomposition(model, items, model.cfg.n_layers - 1, batch_size=batch_size).intercept
