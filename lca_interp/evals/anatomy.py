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
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor

from lca_interp.evals.hijack import hijacked_prompt, run_hijack
from lca_interp.facts import Fact
from lca_interp.hooks.attention import attention_mass, capture_patterns
from lca_interp.hooks.attribution import direct_logit_attribution
from lca_interp.hooks.interventions import ablate_heads, mean_head_outputs
from lca_interp.hooks.select import over_batches
from lca_interp.scoring import encode_target, token_positions

# ---------------------------------------------------------------------- where things are in a prompt


def _with_space(text: str, start: int) -> int:
    return start - 1 if start > 0 and text[start - 1] == " " else start


@dataclass(frozen=True)
class PromptSpans:
    """Token positions of the parts of one hijacked prompt."""

    context: list[int]  # the k hijack sentences
    named: list[int]  # every mention of the target the sentences name (o_, or o* when reversed)
    subject: list[int]  # the fact's subject, in the fact's own prompt


def prompt_spans(model, fact: Fact, scheme: str, k: int) -> PromptSpans:
    text = hijacked_prompt(fact, scheme, k)
    context_end = len(text) - len(fact.prompt)
    named_word = " " + (fact.target_true if scheme.startswith("reverse") else fact.target_false)
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
        subject=token_positions(model, text, _with_space(text, subject_at), subject_at + len(fact.subject)),
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
    top_heads: list[tuple[int, int]]
    control_heads: list[tuple[int, int]]
    ks: list[int]
    es_baseline: list[float]
    es_top_ablated: list[float]
    es_control_ablated: list[float]
    examples: list[str] = field(default_factory=list)
    example_targets: list[tuple[str, str]] = field(default_factory=list)  # (o_, o*) of each example

    def to_dict(self) -> dict:
        data = asdict(self)
        data["ranked_heads"] = self.ranked_heads()
        return data

    def ranked_heads(self, top: int = 10) -> list[dict]:
        """Heads by DLA shift toward o_, with their attention numbers."""
        shift = torch.tensor(self.dla_shift)
        order = shift.flatten().argsort(descending=True)[:top].tolist()
        n_heads = shift.shape[1]
        rows = []
        for index in order:
            l, h = divmod(index, n_heads)
            rows.append({"head": f"L{l}H{h}", "dla_shift": self.dla_shift[l][h], "dla_clean": self.dla_clean[l][h],
                         "dla_hijacked": self.dla_hijacked[l][h], "mass_context": self.mass_context[l][h],
                         "mass_named": self.mass_named[l][h], "mass_subject_clean": self.mass_subject_clean[l][h],
                         "mass_subject_hijacked": self.mass_subject_hijacked[l][h]})
        return rows

    def figure(self):
        from lca_interp.artifacts import pyplot

        plt = pyplot()

        fig, axes = plt.subplots(1, 4, figsize=(17, 4))
        panels = [(self.mass_context, "attention mass: last → hijack sentences", "viridis", None),
                  (self.mass_named, "attention mass: last → named target word", "viridis", None),
                  (self.dla_shift, "DLA shift toward o_ (hijacked − clean)", "RdBu_r", "symmetric")]
        for ax, (values, title, cmap, centre) in zip(axes, panels):
            data = torch.tensor(values).numpy()
            limit = float(abs(data).max()) or 1.0
            image = ax.imshow(data, cmap=cmap, aspect="auto", **({"vmin": -limit, "vmax": limit} if centre else {}))
            ax.set(xlabel="head", ylabel="layer", title=title)
            fig.colorbar(image, ax=ax, fraction=0.046)
        ax = axes[3]
        ax.plot(self.ks, self.es_baseline, marker="o", label="no ablation")
        ax.plot(self.ks, self.es_top_ablated, marker="s", label=f"top {len(self.top_heads)} DLA-shift heads ablated")
        ax.plot(self.ks, self.es_control_ablated, marker="^", label=f"{len(self.control_heads)} random heads ablated")
        ax.set(xlabel="prepended sentences k", ylabel="ES", ylim=(0, 1), xticks=self.ks, title=f"{self.scheme}, n = {self.n}")
        ax.legend(fontsize=8)
        fig.suptitle(f"{self.model}: anatomy of the {self.scheme} hijack at k = {self.k}")
        fig.tight_layout()
        return fig


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
    top = [divmod(i, n_heads) for i in shift.flatten().argsort(descending=True)[:top_n].tolist()]
    others = [i for i in range(n_heads_total) if divmod(i, n_heads) not in top]
    draw = torch.randperm(len(others), generator=torch.Generator().manual_seed(seed))[:top_n].tolist()
    control = [divmod(others[i], n_heads) for i in draw]

    means = mean_head_outputs(model, clean, top + control)  # over the clean prompts' real positions
    common = dict(scheme=scheme, max_prepends=max_prepends, batch_size=batch_size, seed=seed, progress=progress)
    baseline = list(baseline) if baseline is not None else run_hijack(model, facts, **common).efficacy_score
    with ablate_heads(model, top, mode="mean", means=means):
        top_ablated = run_hijack(model, facts, **common).efficacy_score
    with ablate_heads(model, control, mode="mean", means=means):
        control_ablated = run_hijack(model, facts, **common).efficacy_score
    as_lists = lambda t: t.tolist()  # noqa: E731
    return HijackAnatomy(
        model=model_name, scheme=scheme, k=k, n=n,
        mass_context=as_lists(masses["context"]), mass_named=as_lists(masses["named"]),
        mass_subject_clean=as_lists(masses["subject_clean"]), mass_subject_hijacked=as_lists(masses["subject_hijacked"]),
        dla_clean=as_lists(dla_clean), dla_hijacked=as_lists(dla_hijacked), dla_shift=as_lists(shift),
        top_heads=top, control_heads=control, ks=list(range(max_prepends + 1)),
        es_baseline=baseline, es_top_ablated=top_ablated, es_control_ablated=control_ablated,
        examples=hijacked[:3], example_targets=[(f.target_false, f.target_true) for f in facts[:3]],
    )


def write_anatomy(model, anatomy: HijackAnatomy, out_dir: str | Path) -> Path:
    """`out_dir/anatomy.json`, `anatomy.png`, and `anatomy.html`: the figure, the ranked heads,
    and circuitsvis attention of the top heads on example prompts, offline."""
    from lca_interp import artifacts, report

    out = Path(out_dir)
    artifacts.write_json(out / "anatomy.json", anatomy.to_dict())
    artifacts.save_figure(out / "anatomy.png", anatomy.figure())

    views = []
    by_layer: dict[int, list[int]] = {}
    for layer, head in anatomy.top_heads:
        by_layer.setdefault(layer, []).append(head)
    for prompt in anatomy.examples:
        patterns = [capture_patterns(model, prompt, layers=layer, heads=heads)[layer][0] for layer, heads in by_layer.items()]
        views.append(report.View(
            heading=f"top heads on: {prompt}",
            element="AttentionHeads",
            props={"attention": torch.cat(patterns), "tokens": model.to_str_tokens(model.to_tokens(prompt)[0]),
                   "attentionHeadNames": [f"L{l}H{h}" for l, heads in by_layer.items() for h in heads]},
        ))
    attribution = direct_logit_attribution(model, anatomy.examples, [t[0] for t in anatomy.example_targets],
                                           [t[1] for t in anatomy.example_targets])
    bars = report.figure_html(attribution.figure(title="direct logit attribution to logit(o_) − logit(o*), example prompts"),
                              "largest direct contributions")
    es = lambda values: ", ".join(f"{v:.3f}" for v in values)  # noqa: E731
    report.write_page(out / "anatomy.html", f"Hijack anatomy: {anatomy.model}, {anatomy.scheme}, k = {anatomy.k}", [
        f"<p>{anatomy.n} facts. ES(k) for k = {anatomy.ks}: baseline {es(anatomy.es_baseline)}; top "
        f"{len(anatomy.top_heads)} heads {', '.join(f'L{l}H{h}' for l, h in anatomy.top_heads)} mean-ablated "
        f"{es(anatomy.es_top_ablated)}; random heads {', '.join(f'L{l}H{h}' for l, h in anatomy.control_heads)} "
        f"ablated {es(anatomy.es_control_ablated)}.</p>",
        report.png_html(out / "anatomy.png", "attention and DLA by head; ES with ablations"),
        report.table_html(anatomy.ranked_heads()),
        bars,
        *views,
    ])
    return out / "anatomy.json"


# ---------------------------------------------------------------------- the toy


@dataclass
class ToyAnatomy:
    """Hijacking the LCA toy by mixing in another output's context, per mixed fraction."""

    fractions: list[float]
    n: int
    mass_foreign: list[float]  # attention mass of the last position on the foreign tokens
    uniform_foreign: list[float]  # the share of foreign tokens: what uniform attention would give
    write_foreign: list[float]  # mean contribution of foreign tokens to logit(y') − logit(y)
    write_own: list[float]  # ... of the own tokens (t_L included)
    logit_diff: list[float]  # the toy's mean logit(y') − logit(y)
    flip_rate: list[float]  # predicts y'
    memory: dict = field(default_factory=dict)  # W_E W_V W_Eᵀ against Eq 5.1's Hamming-1 map

    def to_dict(self) -> dict:
        return asdict(self)

    def figure(self):
        from lca_interp.artifacts import pyplot

        plt = pyplot()

        fig, (ax_mass, ax_write) = plt.subplots(1, 2, figsize=(10, 3.6))
        ax_mass.plot(self.fractions, self.mass_foreign, marker="o", label="attention on foreign tokens")
        ax_mass.plot(self.fractions, self.uniform_foreign, linestyle="--", label="uniform attention")
        ax_mass.plot(self.fractions, self.flip_rate, marker="s", label="predicts the foreign output")
        ax_mass.set(xlabel="fraction of context from another output", ylabel="mass / rate", ylim=(0, 1))
        ax_mass.legend(fontsize=8)
        ax_write.plot(self.fractions, self.write_foreign, marker="o", label="foreign tokens")
        ax_write.plot(self.fractions, self.write_own, marker="s", label="own tokens")
        ax_write.plot(self.fractions, self.logit_diff, marker="^", label="total (the toy's logit diff)")
        ax_write.axhline(0, color="black", linewidth=0.6)
        ax_write.set(xlabel="fraction of context from another output", ylabel="logit(y') − logit(y)",
                     title="what the value matrix writes, by source")
        ax_write.legend(fontsize=8)
        fig.suptitle(f"LCA toy hijacked by mixed contexts (n = {self.n})")
        fig.tight_layout()
        return fig


@torch.no_grad()
def toy_hijack_anatomy(model, task, n: int = 2000, fractions: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.0), seed: int = 0) -> ToyAnatomy:
    """The LLM anatomy's questions asked of the toy, exactly: the last position's attention a_j
    and the token map M = W_E W_V W_Eᵀ (W_O = I, no biases, no residual) give
    logit(y') − logit(y) = Σ_j a_j (M[x_j, y'] − M[x_j, y]), split here by source."""
    from lca_interp.evals.lca import mix_contexts
    from lca_interp.hooks.circuits import full_ov_circuit, memory_score, toy_reference_map

    x_own, y_own = task.sample(n, seed=seed)
    x_other, y_other = task.sample(n, seed=seed + 1)
    keep = y_own != y_other
    x_own, y_own, x_other, y_other = x_own[keep], y_own[keep], x_other[keep], y_other[keep]
    memory = full_ov_circuit(model, 0, 0, torch.arange(task.vocab_size))  # [V, V]
    length = task.context_len
    result = {name: [] for name in ("mass_foreign", "uniform_foreign", "write_foreign", "write_own", "logit_diff", "flip_rate")}
    for fraction in fractions:
        mixed = mix_contexts(x_own, x_other, fraction)
        foreign = torch.zeros_like(mixed, dtype=torch.bool)
        foreign[:, : int(fraction * (length - 1))] = True
        pattern = capture_patterns(model, mixed)[0][:, 0, -1]  # [batch, key]
        writes = pattern * (memory[mixed, y_other[:, None]] - memory[mixed, y_own[:, None]])  # [batch, key]
        logits = model(mixed, last_position_only=True)
        rows = torch.arange(len(y_own))
        result["mass_foreign"].append(float((pattern * foreign).sum(-1).mean()))
        result["uniform_foreign"].append(float(foreign.float().mean()))
        result["write_foreign"].append(float((writes * foreign).sum(-1).mean()))
        result["write_own"].append(float((writes * ~foreign).sum(-1).mean()))
        result["logit_diff"].append(float((logits[rows, y_other] - logits[rows, y_own]).mean()))
        result["flip_rate"].append(float((logits.argmax(-1) == y_other).float().mean()))
    return ToyAnatomy(fractions=list(fractions), n=len(y_own), **result,
                      memory=memory_score(memory, toy_reference_map(task)).to_dict())


def write_toy_anatomy(model, task, anatomy: ToyAnatomy, out_dir: str | Path, n_views: int = 3, seed: int = 0) -> Path:
    """`out_dir/anatomy.json`, `anatomy.png` and `anatomy.html` (with the toy's attention on
    half-mixed contexts) for the toy."""
    from lca_interp import artifacts, report
    from lca_interp.evals.lca import mix_contexts

    out = Path(out_dir)
    artifacts.write_json(out / "anatomy.json", {"model": "lca-toy", "task": task.to_dict(), **anatomy.to_dict()})
    artifacts.save_figure(out / "anatomy.png", anatomy.figure())
    x_own, y_own = task.sample(n_views, seed=seed)
    x_other, _ = task.sample(n_views, seed=seed + 1)
    report.write_page(out / "anatomy.html", "LCA toy hijacked by mixed contexts", [
        "<p>The first half of each context below comes from another output's context; the heading "
        "names the own output and the toy's prediction.</p>",
        report.png_html(out / "anatomy.png", "attention on foreign tokens and what they write"),
        report.table_html([dict(fraction=f, mass_foreign=m, uniform=u, write_foreign=wf, write_own=wo, flip_rate=r)
                           for f, m, u, wf, wo, r in zip(anatomy.fractions, anatomy.mass_foreign, anatomy.uniform_foreign,
                                                         anatomy.write_foreign, anatomy.write_own, anatomy.flip_rate)]),
        *report.toy_attention_views(model, task, mix_contexts(x_own, x_other, 0.5), y_own),
    ])
    return out / "anatomy.json"
