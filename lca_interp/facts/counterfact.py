"""CounterFact (Meng et al. 2022) from a Hugging Face hub id or a local JSON list.

Either of its two public schemas is detected per file from the first record:
  ROME      {"case_id", "requested_rewrite": {"prompt" (template with "{}"), "subject",
             "target_true": {"str"}, "target_new": {"str"}, "relation_id" (optional)}}
  EasyEdit  {"prompt" (the full prompt, containing the subject), "subject", "ground_truth",
             "target_new", optional "case_id", "rephrase_prompt", "locality_prompt", ...};
            the template is the prompt with the first occurrence of the subject replaced by "{}".
CounterFact's `target_new` is o_, its `target_true` (EasyEdit: `ground_truth`) is o*. A record's
relation key is its `relation_id` when it has one, else its template.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Union

from lca_interp.facts.records import Fact, FactSet
from lca_interp.paths import looks_like_path

COUNTERFACT_HUB_ID = "azhx/counterfact"
LOCAL_COUNTERFACT_HINT = "../shared/data/counterfact/counterfact.json"

_EASYEDIT_KEYS = frozenset({"subject", "prompt", "target_new", "ground_truth"})

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
    check_limit(limit)
    if on_malformed not in ("raise", "skip"):
        raise ValueError(f"on_malformed must be 'raise' or 'skip', got {on_malformed!r}.")
    path = Path(os.path.expanduser(os.fspath(source)))
    if path.exists():
        if path.is_dir():
            raise ValueError(f"{path} is a directory; pass a CounterFact JSON file.")
        return _parse_records(_read_json_list(path), str(path), limit, on_malformed)
    if not isinstance(source, str) or looks_like_path(source):
        raise FileNotFoundError(f"CounterFact file {os.fspath(source)} does not exist.")
    return _parse_records(_hub_records(source), source, limit, on_malformed)


def check_limit(limit: int | None) -> None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}.")


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


