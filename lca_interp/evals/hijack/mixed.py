"""Mixed precision for hijack scoring: bfloat16's speed with float32's ES decisions.

An ES decision is the sign of a margin: log P(o_) − log P(o*), summed over the targets' tokens
(paper A) or as per-token means (ROME's reading). bfloat16 moves a margin by a few tenths of a nat
at most (Gemma-3-270m: 0.42 over 800 pairs), so only a pair whose bfloat16 margin lies near zero
can be decided otherwise in float32. Mixed precision scores every (fact, k) in bfloat16, then
scores again in float32 exactly the pairs whose bfloat16 margin, by either reading, is within a
bound of zero, and keeps float32's scores for those.

The bound is measured, not guessed (`calibrate`): the largest |bfloat16 − float32| margin error
over calibration facts that the run does not report, times a safety factor. It travels with the
scores (`HijackScoring.margin_bound`, so a resumed or Ray-sharded run uses the same one) and into the
result, with the number of pairs scored again (`TargetScores.rescored`).

The two precisions are two models: `load_model(..., dtype="mixed")` returns the float32 model with
its bfloat16 copy as `model.bfloat16_twin` (`twin_of`); everything but this scorer uses the float32
model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lca_interp.facts import Fact
from lca_interp.prompts import Donors
from lca_interp.scoring import TargetScores, hijack_requests, hijack_scores, margin, score_targets

SAFETY = 2.0  # the bound is this many times the largest margin error seen in calibration


@dataclass(frozen=True)
class MarginBound:
    """Which bfloat16 margins are near enough zero to be scored again in float32 (nats, by each
    reading), and the calibration that measured them."""

    summed: float
    per_token: float
    largest_error: float  # max |bfloat16 − float32| summed margin over the calibration pairs
    largest_error_per_token: float
    safety: float
    calibration_pairs: int
    calibration: str  # which facts, in words (e.g. "the last 200 records of counterfact.json")


def margins(scores: TargetScores) -> tuple[Float[Tensor, "k fact"], Float[Tensor, "k fact"]]:
    """`scoring.margin` of every (k, fact) by both readings: summed, and per target token."""
    return margin(scores), margin(scores, per_token=True)


def twin_of(model):
    """The bfloat16 copy a mixed-precision model carries; a clear error for any other model."""
    twin = getattr(model, "bfloat16_twin", None)
    if twin is None:
        raise ValueError("mixed-precision scoring needs a model loaded with dtype='mixed' (its bfloat16 copy scores first).")
    return twin


def calibrate(model, facts: Sequence[Fact], scheme: str, max_prepends: int, batch_size: int = 16,
              donors: Donors | None = None, safety: float = SAFETY, described: str = "",
              progress: bool = False) -> MarginBound:
    """The margin bound from scoring `facts` (which the run must not report) at k = 0..max_prepends
    in both precisions: the largest |bfloat16 − float32| margin error, by each reading, times
    `safety`."""
    if not facts:
        raise ValueError("mixed precision needs calibration facts to measure its margin bound on.")
    if not safety >= 1:
        raise ValueError(f"the safety factor must be ≥ 1, got {safety}.")
    fast = hijack_scores(twin_of(model), facts, scheme, max_prepends, batch_size, progress, donors)
    exact = hijack_scores(model, facts, scheme, max_prepends, batch_size, progress, donors)
    errors = [float((f - e).abs().max()) for f, e in zip(margins(fast), margins(exact))]
    if not all(map(math.isfinite, errors)):
        raise ValueError("bfloat16 gives non-finite log-probabilities on the calibration facts; score in float32.")
    return MarginBound(summed=safety * errors[0], per_token=safety * errors[1], largest_error=errors[0],
                       largest_error_per_token=errors[1], safety=safety, calibration_pairs=fast.log_prob[..., 0].numel(),
                       calibration=described or f"{len(facts)} facts")


def near_ties(scores: TargetScores, bound: MarginBound) -> Bool[Tensor, "k fact"]:
    """The (k, fact) pairs whose margin, by either reading, is within the bound of zero, or is not
    a number at all (a bfloat16 overflow decides nothing)."""
    summed, per_token = margins(scores)
    return ~(summed.abs() > bound.summed) | ~(per_token.abs() > bound.per_token)


def mixed_hijack_scores(model, facts: Sequence[Fact], scheme: str, max_prepends: int, bound: MarginBound,
                        batch_size: int = 16, progress: bool = False, donors: Donors | None = None) -> TargetScores:
    """`scoring.hijack_scores` in bfloat16, with float32's scores for the pairs near a tie;
    `rescored` marks them."""
    scores = hijack_scores(twin_of(model), facts, scheme, max_prepends, batch_size, progress, donors)
    near = near_ties(scores, bound)
    if near.any():
        prompts, targets, groups = hijack_requests(facts, scheme, max_prepends, donors)
        pairs = near.flatten().nonzero()[:, 0]  # (k, fact) in the requests' order, two requests each
        chosen = torch.stack([2 * pairs, 2 * pairs + 1], 1).flatten().tolist()
        exact = score_targets(model, [prompts[i] for i in chosen], [targets[i] for i in chosen], batch_size, progress,
                              [groups[i] for i in chosen])
        if not torch.equal(exact.n_tokens, scores.n_tokens[near].flatten()):
            raise RuntimeError("the float32 and bfloat16 models tokenize the targets differently.")
        scores.log_prob[near] = exact.log_prob.view(-1, 2)
    return TargetScores(scores.log_prob, scores.n_tokens, rescored=near)


def calibration_facts(every_fact: Sequence[Fact], reported: Sequence[Fact], n: int, dataset: str) -> tuple[list[Fact], str]:
    """The last `n` facts of the dataset, which calibrate the margin bound, and their description;
    refused when the run reports any of them."""
    if n < 1:
        raise ValueError(f"--calibration-records must be ≥ 1, got {n}.")
    if n >= len(every_fact):
        raise ValueError(f"the dataset has {len(every_fact)} records, too few to keep {n} apart for calibration.")
    calibration = list(every_fact[-n:])
    if {id(fact) for fact in calibration} & {id(fact) for fact in reported}:
        raise ValueError(f"the last {n} records calibrate mixed precision and cannot be reported too; pass "
                         f"--limit {len(every_fact) - n} or less, or fewer --calibration-records.")
    return calibration, f"the last {n} records of {dataset} ({len(every_fact) - n}-{len(every_fact)})"
