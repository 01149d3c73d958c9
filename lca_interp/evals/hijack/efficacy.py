"""Context hijacking (paper A, section 3): does prepended context flip a model's factual recall?

For a fact (prompt p, true target o*, false target o_), prepend k copies of a hijack sentence
(`lca_interp.prompts`: generic, negation and their reverses) and compare the full multi-token
probabilities P(o_ | context + p) and P(o* | context + p) (`scoring.hijack_scores`). The efficacy
score ES(k) is the fraction of facts with P(o_) > P(o*). It comes with a percentile bootstrap
95% interval over facts (scipy, seeded), per-relation ES, and the mean probabilities of both
targets. `hijack_with_mitigations` measures the same under paper B's fixes (paper A × paper B).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Optional

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from lca_interp.evals.hijack.mixed import MarginBound
from lca_interp.evals.hijack.shards import HijackScoring, ShardPlan
from lca_interp.facts import Fact
from lca_interp.pretrained import describe
from lca_interp.prompts import Donors, hijackable
from lca_interp.scoring import TargetScores, efficacy_score, flips

KIND = "hijack"


@dataclass
class HijackResult:
    """ES(k) and friends for one model, dataset and scheme. Lists are indexed like `k`.

    `efficacy_score` compares summed target log-probabilities (paper A's reading of
    P(o_) > P(o*)); `efficacy_score_per_token` compares mean log-probabilities per target token
    (ROME's CounterFact code). Each has a 95% percentile bootstrap interval over facts."""

    model: str
    dataset: str
    scheme: str
    n: int
    k: list[int]
    efficacy_score: list[float]
    ci_low: list[float]
    ci_high: list[float]
    efficacy_score_per_token: list[float]
    ci_low_per_token: list[float]
    ci_high_per_token: list[float]
    p_true_mean: list[float]
    p_false_mean: list[float]
    by_relation: dict[str, dict] = field(default_factory=dict)
    mitigations: dict[str, dict] = field(default_factory=dict)  # name → the same fields, under that fix
    skipped_records: int = 0  # records not evaluated: malformed, or without a donor (relation scheme)
    model_source: dict = field(default_factory=dict)  # pretrained.describe: weights, quantization, BOS
    relation: Optional[str] = None  # the one relation id the facts were restricted to, if any
    seconds: float = 0.0  # this run's wall time
    shard_seconds: Optional[float] = None  # a sharded run's: the seconds its shards took, summed over workers and resumed runs
    precision: dict = field(default_factory=dict)  # what scored it: a dtype, or mixed with its bound (`precision`)

    def to_dict(self) -> dict:
        return {"kind": KIND, **asdict(self)}

    def summary(self) -> str:
        es = ", ".join(f"k={k}: {v:.3f}" for k, v in zip(self.k, self.efficacy_score))
        return f"ES ({self.scheme}, {self.dataset}, n = {self.n}): {es}"


def bootstrap_interval(flipped: np.ndarray, n_bootstrap: int, seed: int) -> tuple[list[float], list[float]]:
    """Percentile 95% interval of the mean over the last axis (scipy), one per row."""
    if flipped.shape[-1] < 2:  # one fact: resampling it gives itself
        return flipped[..., 0].tolist(), flipped[..., 0].tolist()
    interval = stats.bootstrap((flipped,), np.mean, axis=-1, n_resamples=n_bootstrap, confidence_level=0.95,
                               method="percentile", random_state=seed).confidence_interval
    return interval.low.tolist(), interval.high.tolist()


def hijack_result(scores: TargetScores, facts: Sequence[Fact], scheme: str, model_name: str = "", dataset_name: str = "",
                  seed: int = 0, n_bootstrap: int = 1000) -> HijackResult:
    """ES(k) both ways with bootstrap intervals, mean probabilities and per-relation ES, from
    `scoring.hijack_scores` ([k, fact, (true, false)])."""
    low, high = bootstrap_interval(flips(scores).numpy(), n_bootstrap, seed)
    low_token, high_token = bootstrap_interval(flips(scores, per_token=True).numpy(), n_bootstrap, seed)
    probabilities = scores.log_prob.exp()
    by_relation = {}
    for relation in dict.fromkeys(f.relation for f in facts):
        rows = torch.tensor([i for i, f in enumerate(facts) if f.relation == relation])
        part = TargetScores(scores.log_prob[:, rows], scores.n_tokens[:, rows])
        by_relation[relation] = {"n": len(rows), "efficacy_score": efficacy_score(part),
                                 "efficacy_score_per_token": efficacy_score(part, per_token=True)}
    return HijackResult(
        model=model_name, dataset=dataset_name, scheme=scheme, n=len(facts), k=list(range(scores.log_prob.shape[0])),
        efficacy_score=efficacy_score(scores), ci_low=low, ci_high=high,
        efficacy_score_per_token=efficacy_score(scores, per_token=True), ci_low_per_token=low_token,
        ci_high_per_token=high_token, p_true_mean=probabilities[..., 0].mean(1).tolist(),
        p_false_mean=probabilities[..., 1].mean(1).tolist(), by_relation=by_relation,
    )


def run_hijack(model, facts: Sequence[Fact], scheme: str = "generic", max_prepends: int = 3, batch_size: int = 16,
               model_name: str = "", dataset_name: str = "", seed: int = 0, n_bootstrap: int = 1000,
               progress: bool = True, donors: Optional[Donors] = None, shards: Optional[ShardPlan] = None,
               mitigation: Optional[str] = None, intercept: Optional[Tensor] = None,
               margin_bound: Optional[MarginBound] = None) -> HijackResult:
    """Score every fact with k = 0..max_prepends hijack sentences; both targets, one batched run.
    The relation scheme needs `donors` and leaves out (and counts) facts that have none.
    `shards`: score in resumable shards, in this process or on Ray workers (`evals.shards`).
    `mitigation`: one of paper B's fixes applied while scoring (`intercept`: the final MLP's).
    `margin_bound`: score in mixed precision (`mixed`; the model loaded with dtype="mixed")."""
    began = time.perf_counter()
    facts, unusable = hijackable(facts, scheme, donors)
    if not facts:
        raise ValueError(f"no fact can be hijacked by the {scheme} scheme (none has a donor of its relation).")
    scoring = HijackScoring(scheme, max_prepends, batch_size, donors, mitigation, intercept, margin_bound)
    shard_seconds = None
    if shards is None:
        scores = scoring.scores(model, facts, progress)
    else:
        scores, shard_seconds = shards.scores(model, facts, scoring, progress)
    result = hijack_result(scores, facts, scheme, model_name, dataset_name, seed, n_bootstrap)
    result.shard_seconds = shard_seconds
    result.precision = precision(model, scores, margin_bound)
    result.skipped_records, result.model_source, result.seconds = unusable, describe(model), time.perf_counter() - began
    return result


def precision(model, scores: TargetScores, margin_bound: Optional[MarginBound]) -> dict:
    """What the scores were computed in; for mixed precision, the bound and the pairs that float32
    scored again, in all and by k."""
    if margin_bound is None:
        dtype = describe(model).get("dtype", "float32")
        return {"scored_in": "float32" if dtype == "mixed" else dtype}  # a mixed model's float32 half
    return {"scored_in": "mixed", "margin_bound": asdict(margin_bound), "pairs": int(scores.rescored.numel()),
            "rescored_pairs": int(scores.rescored.sum()), "rescored_by_k": scores.rescored.sum(1).tolist()}


def hijack_with_mitigations(model, facts: Sequence[Fact], names: Sequence[str], intercept: Optional[Tensor] = None,
                            **hijack_kwargs) -> HijackResult:
    """`run_hijack` without a fix, and under each of paper B's `names` (hooks.mitigations), the
    latter kept in `mitigations`. `intercept`: the final MLP's, for "intercept" and "both"."""
    result = run_hijack(model, facts, **hijack_kwargs)
    hijack_kwargs["margin_bound"] = None  # mitigations act through hooks, on the float32 model
    for name in dict.fromkeys(names):
        result.mitigations[name] = asdict(run_hijack(model, facts, mitigation=name, intercept=intercept, **hijack_kwargs))
    return result
