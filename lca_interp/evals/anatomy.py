"""The anatomy of a hijack on an LLM: which heads read the hijack sentences, which write the false
answer, and what ablating them does to ES, with heads chosen on facts disjoint from the report.

Context
-------
Paper A explains context hijacking with its toy: the last position attends to context tokens and
the value matrix, an associative memory, maps each attended token to the outputs it is
associated with; mixing in tokens associated with another output moves the prediction there.
This module asks the same of an LLM with the probes of `lca_interp.hooks` (the toy's version is
`evals.toy_anatomy`). For facts with and without k hijack sentences:

- attention mass from the final position onto the hijack sentences, onto the target word they
  name, and onto the fact's subject (clean and hijacked), per layer and head;
- each head's direct logit attribution to logit(o_) − logit(o*) (first tokens), clean and
  hijacked; the shift is what the hijack changed in that head's direct vote;
- ES(k) with the `top_n` heads of largest shift mean-ablated, against a distribution of
  same-size random head sets from the same layers.

Method
------
The facts are split (seeded) into a selection half, on which the heads are ranked and the mean
activations for ablation are taken, and an evaluation half, on which every number and figure
is reported. The control is `control_draws` random sets of `top_n` heads from the top heads'
layers, each mean-ablated on the evaluation half; the claim is that the top heads lower ES more
than the 95th percentile of those draws does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lca_interp.facts import Fact
from lca_interp.hooks.attention import AttentionExample, attention_examples, attention_mass
from lca_interp.hooks.attribution import direct_logit_attribution
from lca_interp.hooks.interventions import ablate_heads, mean_head_outputs
from lca_interp.hooks.select import Head, over_batches
from lca_interp.pretrained import describe
from lca_interp.prompts import Donors, hijackable, hijacked_prompt, named_target
from lca_interp.scoring import efficacy_score, encode_target, hijack_scores, token_positions

KIND = "anatomy"

# ---------------------------------------------------------------------- where things are in a prompt


@dataclass(frozen=True)
class PromptSpans:
    """Token positions of the parts of one hijacked prompt."""

    context: list[int]  # the k hijack sentences
    named: list[int]  # every mention of the target the sentences name (o_, or o* when reversed)
    subject: list[int]  # the fact's subject, in the fact's own prompt


def prompt_spans(model, fact: Fact, scheme: str, k: int, donors: Optional[Donors] = None) -> PromptSpans:
    text = hijacked_prompt(fact, scheme, k, donors)
    context_end = len(text) - len(fact.prompt)
    named_word = " " + named_target(fact, scheme)
    named, search = [], 0
    while k and (found := text.find(named_word, search, context_end)) >= 0:
        named += token_positions(model, text, found, found + len(named_word))
        search = found + len(named_word)
    subject_at = text.find(fact.subject, context_end)
    if subject_at < 0:
        raise ValueError(f"fact {fact.case_id!r}: subject {fact.subject!r} is not in its prompt {fact.prompt!r}.")
    return PromptSpans(
        context=token_positions(model, text, 0, max(context_end - 1, 0)) if k else [],
        named=named,
        subject=token_positions(model, text, subject_at, subject_at + len(fact.subject), leading_space=True),
    )


# ---------------------------------------------------------------------- LLM anatomy


@dataclass
class HeadMeasures:
    """Per-head means (`[layer][head]`) over one split's facts."""

    mass_context: list[list[float]]
    mass_named: list[list[float]]
    mass_subject_clean: list[list[float]]
    mass_subject_hijacked: list[list[float]]
    dla_clean: list[list[float]]
    dla_hijacked: list[list[float]]
    dla_shift: list[list[float]]


@dataclass
class HijackAnatomy:
    """Heads ranked on the selection split; everything else measured on the evaluation split."""

    model: str
    scheme: str
    k: int
    split: dict  # seed, sizes and case ids of the selection and evaluation splits
    selection: HeadMeasures  # what chose the heads
    evaluation: HeadMeasures  # what is reported
    top_heads: list[Head]
    ks: list[int]
    es_baseline: list[float]  # evaluation split
    es_top_ablated: list[float]
    control: dict  # heads of each draw, their ES, quantiles, and whether the top heads beat q95
    examples: list[AttentionExample] = field(default_factory=list)  # the top heads on evaluation prompts
    example_attribution: dict = field(default_factory=dict)  # mean DLA of every component on those prompts
    model_source: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"kind": KIND, **asdict(self), "ranked_heads": self.ranked_heads()}

    def ranked_heads(self, top: int = 10) -> list[dict]:
        """Heads by their DLA shift toward o_ on the selection split, with evaluation-split numbers."""
        shift = torch.tensor(self.selection.dla_shift)
        rows, measured = [], asdict(self.evaluation)
        for index in shift.flatten().argsort(descending=True)[:top].tolist():
            l, h = divmod(index, shift.shape[1])
            rows.append({"head": str(Head(l, h)), "selection_dla_shift": self.selection.dla_shift[l][h],
                         **{name: values[l][h] for name, values in measured.items()}})
        return rows


@dataclass(frozen=True)
class Split:
    selection: list[Fact]
    evaluation: list[Fact]
    seed: int

    def to_dict(self) -> dict:
        return {"seed": self.seed, "selection": len(self.selection), "evaluation": len(self.evaluation),
                "selection_case_ids": [f.case_id for f in self.selection],
                "evaluation_case_ids": [f.case_id for f in self.evaluation]}


def split_facts(facts: Sequence[Fact], selection_fraction: float = 0.5, seed: int = 0, minimum: int = 2) -> Split:
    """A seeded shuffle cut into a selection part and a disjoint evaluation part."""
    if not 0 < selection_fraction < 1:
        raise ValueError(f"selection_fraction must lie strictly between 0 and 1, got {selection_fraction}.")
    order = torch.randperm(len(facts), generator=torch.Generator().manual_seed(seed)).tolist()
    cut = round(selection_fraction * len(facts))
    selection, evaluation = [facts[i] for i in order[:cut]], [facts[i] for i in order[cut:]]
    if min(len(selection), len(evaluation)) < minimum:
        raise ValueError(f"{len(facts)} facts split {len(selection)}/{len(evaluation)} leave too few to select heads on "
                         f"and report on (at least {minimum} each); use more facts.")
    return Split(selection, evaluation, seed)


def measure_heads(model, facts: Sequence[Fact], scheme: str, k: int, batch_size: int, progress: bool,
                  donors: Optional[Donors] = None) -> HeadMeasures:
    """Attention masses and direct logit attribution of every head, averaged over `facts`."""
    clean = [hijacked_prompt(f, scheme, 0, donors) for f in facts]
    hijacked = [hijacked_prompt(f, scheme, k, donors) for f in facts]
    spans_clean = [prompt_spans(model, f, scheme, 0, donors) for f in facts]
    spans = [prompt_spans(model, f, scheme, k, donors) for f in facts]
    n = len(facts)

    def mass(prompts: list[str], positions: list[list[int]]) -> Callable[[slice], Tensor]:
        return lambda part: attention_mass(model, prompts[part], positions[part])

    masses = {
        name: over_batches(mass(prompts, [getattr(s, attr) for s in span_list]), n, batch_size, f"attention: {name}", progress).mean(0)
        for name, prompts, span_list, attr in [
            ("context", hijacked, spans, "context"), ("named", hijacked, spans, "named"),
            ("subject_clean", clean, spans_clean, "subject"), ("subject_hijacked", hijacked, spans, "subject"),
        ]
    }
    false_first = [encode_target(model, f.target_false)[0] for f in facts]
    true_first = [encode_target(model, f.target_true)[0] for f in facts]

    def dla(prompts: list[str]) -> Callable[[slice], Tensor]:
        return lambda part: direct_logit_attribution(model, prompts[part], false_first[part], true_first[part]).heads()

    dla_clean = over_batches(dla(clean), n, batch_size, "attribution: clean", progress).mean(0)
    dla_hijacked = over_batches(dla(hijacked), n, batch_size, "attribution: hijacked", progress).mean(0)
    return HeadMeasures(
        mass_context=masses["context"].tolist(), mass_named=masses["named"].tolist(),
        mass_subject_clean=masses["subject_clean"].tolist(), mass_subject_hijacked=masses["subject_hijacked"].tolist(),
        dla_clean=dla_clean.tolist(), dla_hijacked=dla_hijacked.tolist(), dla_shift=(dla_hijacked - dla_clean).tolist(),
    )


def hijack_anatomy(
    model,
    facts: Sequence[Fact],
    scheme: str = "generic",
    k: int = 1,
    max_prepends: int = 3,
    top_n: int = 3,
    batch_size: int = 16,
    model_name: str = "",
    seed: int = 0,
    progress: bool = True,
    donors: Optional[Donors] = None,
    selection_fraction: float = 0.5,
    control_draws: int = 20,
) -> HijackAnatomy:
    """Attention, DLA and ablation anatomy of one hijack scheme at k prepended sentences, heads
    chosen on one split of the facts and everything reported on the other (see Method)."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1 (the anatomy compares prompts with and without hijack sentences), got {k}.")
    if control_draws < 1:
        raise ValueError(f"control_draws must be ≥ 1, got {control_draws}.")
    facts, _ = hijackable(facts, scheme, donors)
    if not facts:
        raise ValueError("no facts to analyse.")
    began = time.perf_counter()
    cfg = model.cfg
    if not 1 <= top_n < cfg.n_heads * cfg.n_layers // 2:
        raise ValueError(f"top_n must lie in 1..{cfg.n_heads * cfg.n_layers // 2 - 1} (leaving room for the control), got {top_n}.")
    split = split_facts(facts, selection_fraction, seed)
    selection = measure_heads(model, split.selection, scheme, k, batch_size, progress, donors)
    evaluation = measure_heads(model, split.evaluation, scheme, k, batch_size, progress, donors)
    shift = torch.tensor(selection.dla_shift)
    top = [Head(*divmod(i, cfg.n_heads)) for i in shift.flatten().argsort(descending=True)[:top_n].tolist()]
    candidates = [Head(layer, h) for layer in sorted({head.layer for head in top}) for h in range(cfg.n_heads)
                  if Head(layer, h) not in top]
    if len(candidates) < top_n:  # the top heads fill their layers: draw from every other head
        candidates = [Head(*divmod(i, cfg.n_heads)) for i in range(cfg.n_layers * cfg.n_heads) if Head(*divmod(i, cfg.n_heads)) not in top]
    generator = torch.Generator().manual_seed(seed)
    draws = [[candidates[i] for i in torch.randperm(len(candidates), generator=generator)[:top_n].tolist()]
             for _ in range(control_draws)]
    # Mean activations from the selection split's clean prompts, real tokens only.
    means = mean_head_outputs(model, [hijacked_prompt(f, scheme, 0, donors) for f in split.selection], top + candidates)

    def es() -> list[float]:
        return efficacy_score(hijack_scores(model, split.evaluation, scheme, max_prepends, batch_size, progress, donors))

    baseline = es()
    with ablate_heads(model, top, mode="mean", means=means):
        top_ablated = es()
    control_es = []
    for heads in tqdm(draws, desc="control draws", disable=not progress):
        with ablate_heads(model, heads, mode="mean", means=means):
            control_es.append(es())
    control = control_summary(baseline, top_ablated, control_es)
    shown = split.evaluation[:3]
    prompts = [hijacked_prompt(f, scheme, k, donors) for f in shown]
    false_first = [encode_target(model, f.target_false)[0] for f in shown]
    true_first = [encode_target(model, f.target_true)[0] for f in shown]
    attribution = direct_logit_attribution(model, prompts, false_first, true_first)
    return HijackAnatomy(
        model=model_name, scheme=scheme, k=k, split=split.to_dict(), selection=selection, evaluation=evaluation,
        top_heads=top, ks=list(range(max_prepends + 1)), es_baseline=baseline, es_top_ablated=top_ablated,
        control={"heads": draws, "distinct_sets": len({tuple(sorted(d)) for d in draws}), **control},
        examples=attention_examples(model, prompts, top, targets=false_first),
        example_attribution={"prompts": prompts, "targets": [[f.target_false, f.target_true] for f in shown],
                             **attribution.to_dict()},
        model_source=describe(model), seconds=time.perf_counter() - began,
    )


def control_summary(baseline: list[float], top_ablated: list[float], control_es: list[list[float]]) -> dict:
    """The control's ES quantiles per k, and whether ablating the top heads lowers ES more than
    the 95th percentile of the random draws' reductions does."""
    control = torch.tensor(control_es, dtype=torch.float64)  # [draw, k]
    reduction = torch.tensor(baseline, dtype=torch.float64) - control
    top_reduction = torch.tensor(baseline, dtype=torch.float64) - torch.tensor(top_ablated, dtype=torch.float64)
    q = lambda t, p: torch.quantile(t, p, dim=0).tolist()  # noqa: E731
    return {"es": control_es, "es_q05": q(control, 0.05), "es_q50": q(control, 0.5), "es_q95": q(control, 0.95),
            "reduction_q95": q(reduction, 0.95), "top_reduction": top_reduction.tolist(),
            "top_beats_q95": (top_reduction > torch.quantile(reduction, 0.95, dim=0)).tolist()}
