"""Paper B's recall prompts: "The capital of France is" → " Paris", with aligned corrupted twins.

Only facts whose answer is a single token for the model are kept, so P(first token) is
P(answer). Zero-shot prompts put each fact behind neutral lead-ins; few-shot prompts behind
"The capital of Y is Z." demonstrations from other facts of the same relation. Each prompt has a
corrupted twin with another subject of the same token length (None when there is none), so that
activation patching is aligned token for token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor

from lca_interp.facts import Fact, load_capitals
from lca_interp.scoring import encode_prompt, encode_target, last_token_logits, token_positions

LEAD_INS = ("", "Here is a fact.", "Geography quiz.")


@dataclass(frozen=True)
class RecallItem:
    """One prompt whose next token should be the answer, with its patching twin."""

    subject: str
    answer: str
    answer_id: int
    prompt: str
    subject_positions: tuple[int, ...]  # the subject's tokens in the question (not the shots)
    corrupt_prompt: Optional[str]  # another subject, same token length; None when none exists


def recall_items(
    model,
    facts: Optional[Sequence[Fact]] = None,
    shots: int = 0,
    lead_ins: Sequence[str] = LEAD_INS,
    limit: Optional[int] = None,
    seed: int = 0,
) -> list[RecallItem]:
    """Prompts for every fact with a single-token answer: each lead-in (zero-shot) or `shots`
    demonstrations from other facts of the same relation (few-shot). Capitals by default."""
    if shots < 0:
        raise ValueError(f"shots must be ≥ 0, got {shots}.")
    usable = single_token_facts(model, facts, limit, seed)
    generator = torch.Generator().manual_seed(seed)
    by_relation: dict[str, list[Fact]] = {}
    for fact in usable:
        by_relation.setdefault(fact.relation, []).append(fact)
    subject_length = {f.subject: len(encode_target(model, f.subject)) for f in usable}
    items = []
    for fact in usable:
        peers = [f for f in by_relation[fact.relation] if f.subject != fact.subject]
        if shots:
            if len(peers) < shots:
                raise ValueError(f"relation {fact.relation!r} has {len(peers)} other facts, fewer than {shots} shots.")
            chosen = torch.randperm(len(peers), generator=generator)[:shots].tolist()
            heads = [" ".join(f"{peers[i].prompt} {peers[i].target_true}." for i in chosen)]
        else:
            heads = list(lead_ins)
        twins = [p for p in peers if subject_length[p.subject] == subject_length[fact.subject] and p.target_true != fact.target_true]
        for head in heads:
            prefix = f"{head} " if head else ""
            prompt = prefix + fact.prompt
            at = len(prefix) + fact.prompt.find(fact.subject)
            twin = twins[int(torch.randint(len(twins), (1,), generator=generator))] if twins else None
            corrupt = prefix + fact.template.format(twin.subject) if twin else None
            if corrupt is not None and len(encode_prompt(model, corrupt)) != len(encode_prompt(model, prompt)):
                corrupt = None  # the twin's subject merges differently in context: not aligned
            positions = token_positions(model, prompt, at, at + len(fact.subject), leading_space=True)
            items.append(RecallItem(fact.subject, fact.target_true, encode_target(model, fact.target_true)[0], prompt,
                                    tuple(positions), corrupt))
    return items


def single_token_facts(model, facts: Optional[Sequence[Fact]] = None, limit: Optional[int] = None, seed: int = 0) -> list[Fact]:
    """The first `limit` facts (capitals by default) whose answer is one token for the model."""
    facts = list(load_capitals(seed=seed).facts if facts is None else facts)
    usable = [f for f in facts if len(encode_target(model, f.target_true)) == 1][:limit]
    if len(usable) < 2:
        raise ValueError(f"{len(usable)} of {len(facts)} facts have a single-token answer for this model; at least 2 are needed.")
    return usable


@dataclass
class AnswerScores:
    probability: Float[Tensor, "n"]  # P(answer) at the last position
    logit_minus_mean: Float[Tensor, "n"]  # logit(answer) − mean logit over the vocabulary

    def summary(self) -> dict:
        return {"p_mean": float(self.probability.mean()), "logit_minus_mean": float(self.logit_minus_mean.mean())}


@torch.no_grad()
def answer_scores(model, items: Sequence[RecallItem], batch_size: int = 16) -> AnswerScores:
    """The paper's two metrics, under whatever hooks are on the model."""
    probability = torch.zeros(len(items))
    margin = torch.zeros(len(items))
    for batch, logits in last_token_logits(model, [item.prompt for item in items], batch_size):
        answers = torch.tensor([items[i].answer_id for i in batch], device=logits.device)
        rows = torch.arange(len(batch), device=logits.device)
        logits = logits.float()
        probability[batch] = logits.softmax(-1)[rows, answers].cpu()
        margin[batch] = (logits[rows, answers] - logits.mean(-1)).cpu()
    return AnswerScores(probability, margin)
