"""Context hijacking's prompts (paper A, section 3): k hijack sentences, then the fact's prompt.

Schemes, for a fact (prompt p, true target o*, false target o_):

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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


def hijack_sentence(fact: Fact, scheme: str) -> str:
    """The sentence that is prepended k times for `fact` under `scheme`."""
    target = named_target(fact, scheme)
    if scheme.endswith("generic"):
        return f"Do not think of {target}."
    return f"It is not true that {_statement(fact, target)}."


def hijacked_prompt(fact: Fact, scheme: str, k: int) -> str:
    if k < 0:
        raise ValueError(f"k must be ≥ 0, got {k}.")
    return " ".join([hijack_sentence(fact, scheme)] * k + [fact.prompt])
