"""Context hijacking's prompts (paper A, section 3): k hijack sentences, then the fact's prompt.

Schemes, for a fact (prompt p, true target o*, false target o_):

- `generic`:          "Do not think of {o_}." — names the false target while negating it.
- `negation`:         a factually true sentence about the false target in the fact's own relation,
                      "It is not true that {p} {o_}.", e.g. "It is not true that the Eiffel Tower
                      is located in the city of Chicago."
- `relation`:         factually true sentences from other facts of the same relation whose
                      true answer is o_ (paper A's relation-based scheme): for "The mother tongue
                      of Danielle Darrieux is" with o_ = English, "The mother tongue of Barack
                      Obama is English." Needs `Donors` built from a fact set with relation ids
                      (`facts.relations`); a fact with no donor cannot be hijacked this way.
- `reverse-generic`, `reverse-negation`: the same with o* ("Do not think of Paris."), which
                      should lower ES instead.

How the negation is built: CounterFact's 218 prompt templates do not share a verb position, so
inserting "not" into each would need a parser and would fail on some. Wrapping the completed
statement in "It is not true that ... ." is grammatical for every template. The statement's first
letter is lower-cased only when the template starts with a fixed word (not the subject), so
"The Eiffel Tower ..." keeps its capital and "The mother tongue of ..." becomes "the mother ...".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

from lca_interp.options import SCHEMES

if TYPE_CHECKING:  # prompts are plain strings; nothing here needs the fact loaders
    from lca_interp.facts import Fact


def _statement(fact: Fact, target: str) -> str:
    text = f"{fact.prompt} {target}"
    if not fact.template.startswith("{}") and text[:1].isupper():
        text = text[0].lower() + text[1:]
    return text


def check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}.")
    return scheme


def named_target(fact: Fact, scheme: str) -> str:
    """The target the scheme's sentence names: o_, or o* for the reverse schemes."""
    return fact.target_true if check_scheme(scheme).startswith("reverse") else fact.target_false


@dataclass(frozen=True)
class Donors:
    """True statements of a fact set, by (relation, answer): what the `relation` scheme prepends."""

    statements: dict[tuple[str, str], list[tuple[str, str]]]  # → [(subject, "prompt answer.")]

    @classmethod
    def of(cls, facts: Iterable[Fact]) -> "Donors":
        statements: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for fact in facts:
            statements[(fact.relation, fact.target_true)].append((fact.subject, f"{fact.prompt} {fact.target_true}."))
        return cls(dict(statements))

    def for_fact(self, fact: Fact) -> list[str]:
        """True statements of the fact's relation whose answer is its false target (other subjects)."""
        return [text for subject, text in self.statements.get((fact.relation, fact.target_false), []) if subject != fact.subject]


def hijack_sentences(fact: Fact, scheme: str, k: int, donors: Optional[Donors] = None) -> list[str]:
    """The k sentences prepended to `fact` under `scheme` (the relation scheme cycles through its
    donors when it has fewer than k)."""
    if k < 0:
        raise ValueError(f"k must be ≥ 0, got {k}.")
    target = named_target(fact, scheme)
    if scheme == "relation":
        if donors is None:
            raise ValueError("the relation scheme needs Donors built from a fact set with relation ids.")
        found = donors.for_fact(fact)
        if not found:
            raise ValueError(f"no other fact of relation {fact.relation!r} has {target!r} as its answer.")
        return [found[i % len(found)] for i in range(k)]
    if scheme.endswith("generic"):
        return [f"Do not think of {target}."] * k
    return [f"It is not true that {_statement(fact, target)}."] * k


def hijack_sentence(fact: Fact, scheme: str, donors: Optional[Donors] = None) -> str:
    """The first sentence prepended to `fact` under `scheme`."""
    return hijack_sentences(fact, scheme, 1, donors)[0]


def hijacked_prompt(fact: Fact, scheme: str, k: int, donors: Optional[Donors] = None) -> str:
    return " ".join([*hijack_sentences(fact, scheme, k, donors), fact.prompt])


def hijackable(facts: Iterable[Fact], scheme: str, donors: Optional[Donors] = None) -> tuple[list[Fact], int]:
    """The facts `scheme` can hijack, and how many it cannot (relation facts without a donor)."""
    facts = list(facts)
    if check_scheme(scheme) != "relation":
        return facts, 0
    if donors is None:
        raise ValueError("the relation scheme needs Donors built from a fact set with relation ids.")
    kept = [f for f in facts if donors.for_fact(f)]
    return kept, len(facts) - len(kept)
