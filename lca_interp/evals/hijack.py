"""Context hijacking (paper A, section 3): does prepended context flip a model's factual recall?

Context
-------
For a fact (prompt p, true target o*, false target o_), prepend k copies of a hijack sentence
and compare the full multi-token probabilities P(o_ | context + p) and P(o* | context + p). The
efficacy score ES(k) is the fraction of facts with P(o_) > P(o*). Schemes:

- `generic`:          "Do not think of {o_}." — names the false target while negating it.
- `negation`:         a factually true sentence about the false target in the fact's own relation,
                      "It is not true that {p} {o_}.", e.g. "It is not true that the Eiffel Tower
                      is located in the city of Chicago."
- `reverse-generic`, `reverse-negation`: the same with o* ("Do not think of Paris."), which
                      should lower ES instead.

How the negation is built: CounterFact's 218 prompt templates do not share a verb position, so
inserting "not" into each would need a parser and would fail on some. Wrapping the completed
statement in "It is not true that ... ." is grammatical for every template. The statement's first
letter is lower-cased only when the template starts with a fixed word (not the subject), so
"The Eiffel Tower ..." keeps its capital and "The mother tongue of ..." becomes "the mother ...".

ES(k) comes with a percentile bootstrap 95% interval over facts (seeded), per-relation ES, and the
mean probabilities of both targets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch

from lca_interp.facts import Fact
from lca_interp.scoring import target_log_probs

SCHEMES = ("generic", "negation", "reverse-generic", "reverse-negation")


def _statement(fact: Fact, target: str) -> str:
    text = f"{fact.prompt} {target}"
    if not fact.template.startswith("{}") and text[:1].isupper():
        text = text[0].lower() + text[1:]
    return text


def hijack_sentence(fact: Fact, scheme: str) -> str:
    """The sentence that is prepended k times for `fact` under `scheme`."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}.")
    target = fact.target_true if scheme.startswith("reverse") else fact.target_false
    if scheme.endswith("generic"):
        return f"Do not think of {target}."
    return f"It is not true that {_statement(fact, target)}."


def hijacked_prompt(fact: Fact, scheme: str, k: int) -> str:
    return " ".join([hijack_sentence(fact, scheme)] * k + [fact.prompt])


@dataclass
class HijackResult:
    """ES(k) and friends for one model, dataset and scheme. Lists are indexed like `k`."""

    model: str
    dataset: str
    scheme: str
    n: int
    k: list[int]
    efficacy_score: list[float]
    ci_low: list[float]
    ci_high: list[float]
    p_true_mean: list[float]
    p_false_mean: list[float]
    by_relation: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, out_dir: str | Path, compare: Optional[dict[str, "HijackResult"]] = None, **extra) -> Path:
        """Write `out_dir/hijack.json` (the fields above plus `extra`, and `compare`'s results
        under "mitigations") and `out_dir/hijack.png`."""
        from lca_interp import artifacts

        out = Path(out_dir)
        if compare:
            extra["mitigations"] = {name: result.to_dict() for name, result in compare.items()}
        artifacts.write_json(out / "hijack.json", {**self.to_dict(), **extra})
        artifacts.save_figure(out / "hijack.png", self.figure(compare))
        return out / "hijack.json"

    def summary(self) -> str:
        es = ", ".join(f"k={k}: {v:.3f}" for k, v in zip(self.k, self.efficacy_score))
        return f"ES ({self.scheme}, {self.dataset}, n = {self.n}): {es}"

    def figure(self, compare: Optional[dict[str, "HijackResult"]] = None):
        """ES(k) with its interval and the mean probabilities; `compare` adds the same curves of
        other runs (e.g. under a mitigation), dashed."""
        from lca_interp.artifacts import pyplot

        plt = pyplot()

        fig, (ax_es, ax_p) = plt.subplots(1, 2, figsize=(10, 3.6))
        ax_es.plot(self.k, self.efficacy_score, marker="o", label="ES")
        ax_es.fill_between(self.k, self.ci_low, self.ci_high, alpha=0.25, label="95% bootstrap CI")
        ax_es.set(xlabel="prepended sentences k", ylabel="efficacy score  P(o_) > P(o*)", ylim=(0, 1),
                  xticks=self.k, title=f"{self.model}: {self.scheme} on {self.dataset} (n = {self.n})")
        ax_es.legend()
        ax_p.plot(self.k, self.p_true_mean, marker="o", label="mean P(o*)")
        ax_p.plot(self.k, self.p_false_mean, marker="s", label="mean P(o_)")
        for name, other in (compare or {}).items():
            ax_es.plot(other.k, other.efficacy_score, linestyle="--", marker=".", label=f"ES, {name}")
            ax_p.plot(other.k, other.p_true_mean, linestyle="--", label=f"P(o*), {name}")
            ax_p.plot(other.k, other.p_false_mean, linestyle=":", label=f"P(o_), {name}")
        if compare:
            ax_es.legend(fontsize=7)
            ax_p.legend(fontsize=7)
        ax_p.set(xlabel="prepended sentences k", ylabel="probability", xticks=self.k)
        ax_p.legend()
        fig.tight_layout()
        return fig


def run_hijack(
    model,
    facts: Sequence[Fact],
    scheme: str = "generic",
    max_prepends: int = 3,
    batch_size: int = 16,
    model_name: str = "",
    dataset_name: str = "",
    seed: int = 0,
    n_bootstrap: int = 1000,
    progress: bool = True,
) -> HijackResult:
    """Score every fact with k = 0..max_prepends hijack sentences; both targets, one batch run."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}.")
    if max_prepends < 0:
        raise ValueError(f"max_prepends must be ≥ 0, got {max_prepends}.")
    if not facts:
        raise ValueError("no facts to evaluate.")
    ks = list(range(max_prepends + 1))
    prompts, targets = [], []
    for k in ks:
        for fact in facts:
            prompt = hijacked_prompt(fact, scheme, k)
            prompts += [prompt, prompt]
            targets += [fact.target_true, fact.target_false]
    scores = target_log_probs(model, prompts, targets, batch_size=batch_size, progress=progress)
    scores = scores.view(len(ks), len(facts), 2)  # [k, fact, (true, false)]
    flipped = (scores[..., 1] > scores[..., 0]).double()  # [k, fact]
    low, high = _bootstrap(flipped, n_bootstrap, seed)
    probabilities = scores.exp()
    by_relation = {}
    for relation in dict.fromkeys(f.relation for f in facts):
        rows = torch.tensor([i for i, f in enumerate(facts) if f.relation == relation])
        by_relation[relation] = {"n": len(rows), "efficacy_score": flipped[:, rows].mean(1).tolist()}
    return HijackResult(
        model=model_name,
        dataset=dataset_name,
        scheme=scheme,
        n=len(facts),
        k=ks,
        efficacy_score=flipped.mean(1).tolist(),
        ci_low=low,
        ci_high=high,
        p_true_mean=probabilities[..., 0].mean(1).tolist(),
        p_false_mean=probabilities[..., 1].mean(1).tolist(),
        by_relation=by_relation,
    )


def _bootstrap(flipped: torch.Tensor, n_bootstrap: int, seed: int) -> tuple[list[float], list[float]]:
    """Percentile 95% interval of ES(k), resampling facts with replacement (same draws for all k)."""
    n = flipped.shape[1]
    draws = torch.randint(n, (n_bootstrap, n), generator=torch.Generator().manual_seed(seed))
    means = flipped[:, draws].mean(-1)  # [k, n_bootstrap]
    return torch.quantile(means, 0.025, dim=1).tolist(), torch.quantile(means, 0.975, dim=1).tolist()
