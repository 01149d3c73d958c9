"""Wikidata relation ids for CounterFact records, through ROME's known_1000 prompt templates.

Our copy of CounterFact has no `relation_id`, but every record's prompt template is a phrasing of
one relation, and ROME's known_1000 lists templates with their relation ids: "{} is a twin city
of" is P190. A CounterFact template takes the relation known_1000 gives it; one that known_1000
gives several relations (e.g. "{} is located in": P276 12 times, P131 3 times) takes the one it
gives most often, and one with a tie ("{} is developed by": P176 and P178, 30 each) stays
unmapped, like the templates known_1000 does not have. On the shared copies this maps 132 of
CounterFact's 218 templates (14,578 of 21,919 records); the three tied templates hold 510 more.
Unmapped facts keep their template as their relation key.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Union

from lca_interp.facts.records import Fact

LOCAL_KNOWN_1000_HINT = "../shared/data/known_1000.json"


@dataclass(frozen=True)
class RelationMap:
    """template → relation id, and the known_1000 votes behind each template's id."""

    relation_of: dict[str, str]
    votes: dict[str, dict[str, int]]  # every known_1000 template's relation ids and their counts
    source: str

    def apply(self, facts: list[Fact]) -> list[Fact]:
        """The facts with `relation` set to their template's relation id where it has one."""
        return [replace(f, relation=self.relation_of[f.template]) if f.template in self.relation_of else f for f in facts]

    def to_dict(self) -> dict:
        return {"source": self.source, "templates_mapped": len(self.relation_of),
                "ambiguous": {t: v for t, v in self.votes.items() if len(v) > 1}}


def load_relation_map(path: Union[str, os.PathLike] = LOCAL_KNOWN_1000_HINT) -> RelationMap:
    """The template → relation map from a known_1000 JSON file (list of records with `template`
    and `relation_id`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; pass ROME's known_1000.json (e.g. {LOCAL_KNOWN_1000_HINT}).")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(r["template"].strip(), r["relation_id"].strip()) for r in records]
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise ValueError(f"{path} is not a known_1000 file: a list of records with template and relation_id ({error}).") from None
    votes: dict[str, Counter] = defaultdict(Counter)
    for template, relation in pairs:
        votes[template][relation] += 1
    relation_of = {}
    for template, counts in votes.items():
        (first, n_first), *rest = counts.most_common()
        if not rest or rest[0][1] < n_first:  # a strict majority; ties stay unmapped
            relation_of[template] = first
    return RelationMap(relation_of, {t: dict(c) for t, c in votes.items()}, str(path))


def with_relation_ids(facts: list[Fact], known_1000: Union[str, os.PathLike, None] = None,
                      required: bool = False) -> list[Fact]:
    """`facts` with their Wikidata relation ids from known_1000's templates: from `known_1000`, else
    from the local copy (`LOCAL_KNOWN_1000_HINT`) when it is there. A missing file raises only when
    named or `required` (the relation scheme needs the ids; ES needs none)."""
    path = Path(known_1000 or LOCAL_KNOWN_1000_HINT)
    if known_1000 is not None or required or path.exists():
        return load_relation_map(path).apply(facts)
    return facts


KNOWN = "known"  # `select_relation`'s name for every fact that has a Wikidata relation id


def is_relation_id(relation: str) -> bool:
    return relation[:1] == "P" and relation[1:].isdigit()


def select_relation(facts: list[Fact], relation: str) -> list[Fact]:
    """The facts of one relation id, or of every relation id with `KNOWN` ("known"); an id no
    fact has is refused, naming the ones there are."""
    chosen = [f for f in facts if (is_relation_id(f.relation) if relation == KNOWN else f.relation == relation)]
    if not chosen:
        known = sorted({f.relation for f in facts if is_relation_id(f.relation)}, key=lambda r: int(r[1:]))
        raise ValueError(f"no fact has relation {relation!r}; the facts' relation ids are {', '.join(known) or 'none'}.")
    return chosen
