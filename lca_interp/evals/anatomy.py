"""The anatomy of a hijack: which heads read the hijack sentences, which write the false answer,
and what ablating them does to ES — on a pretrained LLM and, the same way, on the LCA toy.

Context
-------
Paper A explains context hijacking with its toy: the last position attends to context tokens and
the value matrix, an associative memory, maps each attended token to the outputs it is
associated with; mixing in tokens associated with another output moves the prediction there.
This module runs the same probes (`hooks.attention`, `hooks.attribution`,
`hooks.interventions`, `hooks.circuits`) on both halves.

On an LLM, for facts with and without k hijack sentences:

- attention mass from the final position onto the hijack sentences, onto the target word they
  name, and onto the fact's subject (clean and hijacked), per layer and head;
- each head's direct logit attribution to logit(o_) − logit(o*) (first tokens), clean and
  hijacked; the shift is what the hijack changed in that head's direct vote;
- ES(k) with the `top_n` heads of largest DLA shift mean-ablated (means over the clean prompts'
  positions), against the same number of random other heads as a control.

On the toy, for contexts whose first part comes from another output y': the attention mass the
last position puts on the foreign tokens, and the exact split of the logit difference
logit(y') − logit(y) into what the foreign and the own tokens write through W_E W_V W_Eᵀ.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Optional

import torch
from torch import Tensor

from lca_interp.facts import Fact
from lca_interp.hooks.attention import AttentionExample, attention_examples, attention_mass
from lca_interp.hooks.attribution import direct_logit_attribution
from lca_interp.hooks.interventions import ablate_heads, mean_head_outputs
from lca_interp.hooks.select import Head, over_batches
from lca_interp.prompts import hijacked_prompt, named_target
from lca_interp.scoring import efficacy_score, encode_target, hijack_scores, token_positions

KIND = "anatomy"

# ---------------------------------------------------------------------- where things are in a prompt


@dataclass(frozen=True)
class PromptSpans:
    """Token positions of the parts of one hijacked prompt."""

    context: list[int]  # the k hijack sentences
    named: list[int]  # every mention of the target the sentences name (o_, or o* when reversed)
    subject: list[int]  # the fact's subject, in the fact's own prompt


def prompt_spans(model, fact: Fact, scheme: str, k: int) -> PromptSpans:
    text = hijacked_prompt(fact, scheme, k)
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
class HijackAnatomy:
    """Per-head measurements ([layer][head] lists) and the ablation result for one scheme and k."""

    model: str
    scheme: str
    k: int
    n: int
    mass_context: list[list[float]]
    mass_named: list[list[float]]
    mass_subject_clean: list[list[float]]
    mass_subject_hijacked: list[list[float]]
    dla_clean: list[list[float]]
    dla_hijacked: list[list[float]]
    dla_shift: list[list[float]]
    top_heads: list[Head]
    control_heads: list[Head]
    ks: list[int]
    es_baseline: list[float]
    es_top_ablated: list[float]
    es_control_ablated: list[float]
    examples: list[AttentionExample] = field(default_factory=list)  # the top heads on the first hijacked prompts
    example_attribution: dict = field(default_factory=dict)  # mean DLA of every component on those prompts

    def to_dict(self) -> dict:
        return {"kind": KIND, **asdict(self), "ranked_heads": self.ranked_heads()}

    def ranked_heads(self, top: int = 10) -> list[dict]:
        """Heads by DLA shift toward o_, with their attention numbers."""
        shift = torch.tensor(self.dla_shift)
        rows = []
        for index in shift.flatten().argsort(descending=True)[:top].tolist():
            l, h = divmod(index, shift.shape[1])
            rows.append({"head": str(Head(l, h)), "dla_shift": self.dla_shift[l][h], "dla_clean": self.dla_clean[l][h],
                         "dla_hijacked": self.dla_hijacked[l][h], "mass_context": self.mass_context[l][h],
                         "mass_named": self.mass_named[l][h], "mass_subject_clean": self.mass_subject_clean[l][h],
                         "mass_subject_hijacked": self.mass_subject_hijacked[l][h]})
        return rows


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
    baseline: Optional[Sequence[float]] = None,
) -> HijackAnatomy:
    """Attention, DLA and ablation anatomy of one hijack scheme at k prepended sentences.

    `baseline`: ES(k) for k = 0..max_prepends without ablation when the caller already has it
    (`run_hijack` on the same facts and scheme); measured here otherwise."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1 (the anatomy compares prompts with and without hijack sentences), got {k}.")
    if not facts:
        raise ValueError("no facts to analyse.")
    n_heads_total = model.cfg.n_layers * model.cfg.n_heads
    if not 1 <= top_n <= n_heads_total // 2:
        raise ValueError(f"top_n must lie in 1..{n_heads_total // 2} (half the model's heads, leaving room for the control), got {top_n}.")
    if baseline is not None and len(baseline) != max_prepends + 1:
        raise ValueError(f"baseline has {len(baseline)} values; ES for k = 0..{max_prepends} needs {max_prepends + 1}.")
    facts = list(facts)
    clean = [hijacked_prompt(f, scheme, 0) for f in facts]
    hijacked = [hijacked_prompt(f, scheme, k) for f in facts]
    spans_clean = [prompt_spans(model, f, scheme, 0) for f in facts]
    spans = [prompt_spans(model, f, scheme, k) for f in facts]
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
    shift = dla_hijacked - dla_clean
    n_heads = model.cfg.n_heads
    top = [Head(*divmod(i, n_heads)) for i in shift.flatten().argsort(descending=True)[:top_n].tolist()]
    others = [i for i in range(n_heads_total) if Head(*divmod(i, n_heads)) not in top]
    draw = torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:top_n].tolist()
    control = [Head(*divmod(others[i], n_heads)) for i in draw]

    means = mean_head_outputs(model, clean, top + control)  # over the clean prompts' real positions

    def es() -> list[float]:
        return efficacy_score(hijack_scores(model, facts, scheme, max_prepends, batch_size, progress))

    baseline = list(baseline) if baseline is not None else es()
    with ablate_heads(model, top, mode="mean", means=means):
        top_ablated = es()
    with ablate_heads(model, control, mode="mean", means=means):
        control_ablated = es()
    shown = facts[:3]
    attribution = direct_logit_attribution(model, hijacked[:3], false_first[:3], true_first[:3])
    as_lists = lambda t: t.tolist()  # noqa: E731
    return HijackAnatomy(
        model=model_name, scheme=scheme, k=k, n=n,
        mass_context=as_lists(masses["context"]), mass_named=as_lists(masses["named"]),
        mass_subject_clean=as_lists(masses["subject_clean"]), mass_subject_hijacked=as_lists(masses["subject_hijacked"]),
        dla_clean=as_lists(dla_clean), dla_hijacked=as_lists(dla_hijacked), dla_shift=as_lists(shift),
        top_heads=top, control_heads=control, ks=list(range(max_prepends + 1)),
        es_baseline=baseline, es_top_ablated=top_ablated, es_control_ablated=control_ablated,
        examples=attention_examples(model, hijacked[:3], top, targets=false_first[:3]),
        example_attribution={"prompts": hijacked[:3], "targets": [[f.target_false, f.target_true] for f in shown],
                             **attribution.to_dict()},
    )
