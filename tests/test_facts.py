"""Fact datasets: the shared CounterFact copy, both file schemas, malformed records, capitals.

No network: HF_HUB_OFFLINE is set here and, because huggingface_hub and datasets read it once at
import (conftest imports them first, through transformer_lens), also patched into their constants
in the one test that touches the hub.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json  # noqa: E402
import re  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from lca_interp.facts import (  # noqa: E402
    Fact,
    FactSet,
    load_capitals,
    load_counterfact,
    load_facts,
)

SHARED_COUNTERFACT = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact" / "counterfact.json"
)


# ---------------------------------------------------------------------- helpers


def rome(
    case_id,
    subject="Danielle Darrieux",
    template="The mother tongue of {} is",
    true="French",
    new="English",
    **extra,
) -> dict:
    """A ROME-schema record (the shared file's schema)."""
    rewrite = {
        "prompt": template,
        "subject": subject,
        "target_true": {"str": true},
        "target_new": {"str": new},
        **extra,
    }
    return {"case_id": case_id, "requested_rewrite": rewrite}


def easyedit(
    case_id,
    subject="Danielle Darrieux",
    prompt="The mother tongue of Danielle Darrieux is",
    true="French",
    new="English",
    **extra,
) -> dict:
    """An EasyEdit-schema record: the full prompt, ground_truth = o*, target_new = o_."""
    return {
        "case_id": case_id,
        "subject": subject,
        "prompt": prompt,
        "ground_truth": true,
        "target_new": new,
        "rephrase_prompt": "unused",
        "locality_prompt": "unused",
        **extra,
    }


def write(tmp_path: Path, records, name: str = "facts.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(records), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def shared_records() -> list:
    if not SHARED_COUNTERFACT.exists():
        pytest.skip(f"{SHARED_COUNTERFACT} is absent")
    return json.loads(SHARED_COUNTERFACT.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def shared_facts(shared_records) -> FactSet:
    return load_counterfact(SHARED_COUNTERFACT)


# ---------------------------------------------------------------------- the shared CounterFact copy


def test_shared_counterfact_loads_every_record(shared_records, shared_facts):
    assert len(shared_facts) == len(shared_records) == 21_919
    assert shared_facts.skipped == []
    first, rewrite = shared_facts[0], shared_records[0]["requested_rewrite"]
    assert first.subject == rewrite["subject"]
    assert first.target_true == rewrite["target_true"]["str"].strip()
    assert first.target_false == rewrite["target_new"]["str"].strip()
    assert first.template == rewrite["prompt"]
    assert first.prompt == rewrite["prompt"].format(rewrite["subject"])
    assert first.case_id == shared_records[0]["case_id"]
    assert [f.case_id for f in shared_facts] == [r["case_id"] for r in shared_records]


def test_shared_counterfact_facts_are_consistent(shared_facts):
    for fact in shared_facts:
        assert fact.subject in fact.prompt
        assert fact.template.count("{}") == 1
        assert fact.relation == fact.template  # no relation_id in this copy: grouped by template
        assert fact.target_true == fact.target_true.strip() != ""
        assert fact.target_false == fact.target_false.strip() != ""
        assert fact.target_true != fact.target_false
    groups = shared_facts.by_relation()
    assert len(groups) > 10
    assert sum(len(g) for g in groups.values()) == len(shared_facts)
    assert all("{}" in key for key in groups)
    assert shared_facts.to_dict() == {
        "source": str(SHARED_COUNTERFACT),
        "n": 21_919,
        "skipped": 0,
        "n_relations": len(groups),
    }


def test_limit_takes_the_first_facts(shared_facts):
    first = load_counterfact(SHARED_COUNTERFACT, limit=7)
    assert list(first) == shared_facts[:7]
    assert load_facts(str(SHARED_COUNTERFACT), limit=3).facts == shared_facts[:3]


@pytest.mark.parametrize("limit", [0, -1, True])
def test_bad_limit_is_refused(tmp_path, limit):
    with pytest.raises(ValueError, match="limit"):
        load_counterfact(write(tmp_path, [rome(0)]), limit=limit)


# ---------------------------------------------------------------------- the two file schemas


def test_rome_and_easyedit_schemas_give_identical_facts(tmp_path):
    cases = [
        ("Danielle Darrieux", "The mother tongue of {} is", "French", "English"),
        ("Eiffel Tower", "The {} is located in the city of", " Paris", "Rome "),
        ("Toko Yasuda", "{}, who plays", "guitar", "piano"),
    ]
    rome_records = [rome(i, s, t, a, b) for i, (s, t, a, b) in enumerate(cases)]
    rome_path = write(tmp_path, rome_records, "r.json")
    easy_path = write(
        tmp_path,
        [easyedit(i, s, t.replace("{}", s), a, b) for i, (s, t, a, b) in enumerate(cases)],
        "e.json",
    )
    from_rome, from_easy = load_counterfact(rome_path), load_counterfact(easy_path)
    assert from_rome.facts == from_easy.facts
    eiffel = from_rome[1]
    assert eiffel == Fact(
        prompt="The Eiffel Tower is located in the city of",
        subject="Eiffel Tower",
        target_true="Paris",
        target_false="Rome",
        relation="The {} is located in the city of",
        template="The {} is located in the city of",
        case_id=1,
    )


def test_easyedit_template_replaces_the_first_occurrence_only(tmp_path):
    prompt = "Paris Hilton, not Paris the city, lives in"
    record = easyedit(0, subject="Paris", prompt=prompt, true="Los Angeles", new="London")
    (fact,) = load_counterfact(write(tmp_path, [record]))
    assert fact.template == "{} Hilton, not Paris the city, lives in"
    assert fact.prompt == record["prompt"]


def test_relation_id_is_the_relation_key_when_present(tmp_path):
    facts = load_counterfact(write(tmp_path, [rome(0, relation_id="P103"), rome(1)]))
    assert [f.relation for f in facts] == ["P103", "The mother tongue of {} is"]
    easy = load_counterfact(write(tmp_path, [easyedit(0, relation_id="P103")], "e.json"))
    assert easy[0].relation == "P103"


def test_easyedit_without_case_ids_uses_the_index(tmp_path):
    records = [easyedit(0), easyedit(0)]
    for record in records:
        del record["case_id"]
    assert [f.case_id for f in load_counterfact(write(tmp_path, records))] == [0, 1]


# ---------------------------------------------------------------------- malformed records

MALFORMED_ROME = {
    "missing subject": (
        {"case_id": 7, "requested_rewrite": {k: v for k, v in rome(7)["requested_rewrite"].items()
                                             if k != "subject"}},
        "subject is missing",
    ),
    "empty subject": (rome(7, subject="  "), "subject is empty"),
    "empty target_true": (rome(7, true=""), "target_true is empty"),
    "blank target_new": (rome(7, new="   "), "target_new is empty"),
    "template without {}": (rome(7, template="The mother tongue is"), "has no '{}'"),
    "template with two {}": (rome(7, template="{} and {} speak"), "exactly one '{}'"),
    "no requested_rewrite object": ({"case_id": 7, "requested_rewrite": "x"}, "not an object"),
    "non-string target": (rome(7, true=3), "target_true is not a string"),
    "targets equal": (rome(7, true="French", new=" French"), "both 'French'"),
    "list record": ([1, 2], "JSON list, not an object"),
    "string record": ("The mother tongue of Danielle Darrieux is French", "JSON str"),
}
MALFORMED_EASYEDIT = {
    "missing subject": (
        {k: v for k, v in easyedit(7).items() if k != "subject"},
        "subject is missing",
    ),
    "subject not in prompt": (easyedit(7, subject="Marie Curie"), "does not occur in the prompt"),
    "empty ground_truth": (easyedit(7, true=" "), "ground_truth is empty"),
    "empty target_new": (easyedit(7, new=""), "target_new is empty"),
    "prompt with {}": (easyedit(7, prompt="{} Danielle Darrieux is"), "already contains '{}'"),
    "null record": (None, "JSON NoneType"),
}
MALFORMED = [("rome", rome, name, *case) for name, case in MALFORMED_ROME.items()] + [
    ("easyedit", easyedit, name, *case) for name, case in MALFORMED_EASYEDIT.items()
]


@pytest.mark.parametrize(
    "schema, make, name, bad, reason", MALFORMED, ids=[f"{m[0]}: {m[2]}" for m in MALFORMED]
)
def test_malformed_record_raises_or_is_counted(tmp_path, schema, make, name, bad, reason):
    path = write(tmp_path, [make(0), bad, make(2)])
    label = "record 1 (case_id 7)" if isinstance(bad, dict) else "record 1"
    with pytest.raises(ValueError, match=re.escape(f"{label} is malformed")) as info:
        load_counterfact(path)
    assert reason in str(info.value)
    skipping = load_counterfact(path, on_malformed="skip")
    assert [f.case_id for f in skipping] == [0, 2]
    assert len(skipping.skipped) == 1
    assert skipping.skipped[0][0] == label and reason in skipping.skipped[0][1]
    assert skipping.to_dict()["skipped"] == 1


def test_skip_counts_records_read_before_the_limit(tmp_path):
    path = write(tmp_path, [rome(0), rome(1, true=""), rome(2), rome(3, new=""), rome(4)])
    assert [f.case_id for f in load_counterfact(path, limit=2, on_malformed="skip")] == [0, 2]
    assert len(load_counterfact(path, limit=2, on_malformed="skip").skipped) == 1
    assert len(load_counterfact(path, on_malformed="skip").skipped) == 2
    assert [f.case_id for f in load_counterfact(path, limit=1)] == [0]  # stops before record 1
    with pytest.raises(ValueError, match="record 1"):
        load_counterfact(path, limit=2)


def test_mixed_schemas_raise_even_when_skipping(tmp_path):
    path = write(tmp_path, [rome(0), easyedit(1)])
    for on_malformed in ("raise", "skip"):
        with pytest.raises(ValueError, match=r"mixes schemas: record 1 \(case_id 1\)"):
            load_counterfact(path, on_malformed=on_malformed)


def test_unknown_schema_names_the_record(tmp_path):
    with pytest.raises(ValueError, match=r"record 0 \(case_id 0\) has keys .* match neither"):
        load_counterfact(write(tmp_path, [{"case_id": 0, "question": "q", "answer": "a"}]))


def test_bad_on_malformed_is_refused(tmp_path):
    with pytest.raises(ValueError, match="on_malformed"):
        load_counterfact(write(tmp_path, [rome(0)]), on_malformed="ignore")


# ---------------------------------------------------------------------- files and sources


def test_non_json_file_is_refused(tmp_path):
    path = tmp_path / "facts.json"
    path.write_text("case_id,prompt\n0,The mother tongue of {} is\n", encoding="utf-8")
    with pytest.raises(ValueError, match="facts.json is not a JSON file"):
        load_counterfact(path)


@pytest.mark.parametrize("data, kind", [({"records": []}, "dict"), (3, "int"), ([], "empty")])
def test_json_that_is_not_a_list_of_records_is_refused(tmp_path, data, kind):
    with pytest.raises(ValueError, match=rf"facts\.json holds .*{kind}"):
        load_counterfact(write(tmp_path, data))


def test_directory_is_refused(tmp_path):
    with pytest.raises(ValueError, match="is a directory"):
        load_counterfact(tmp_path)


@pytest.mark.parametrize("name", ["missing.json", "sub/dir/missing", "./missing"])
def test_missing_path_raises_file_not_found(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_counterfact(name)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_counterfact(tmp_path / name)


def test_hub_offline_points_to_the_local_file(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    for load in (lambda: load_counterfact("azhx/counterfact"), lambda: load_facts("counterfact")):
        with pytest.raises(ValueError, match="counterfact/counterfact.json") as info:
            load()
        assert "azhx/counterfact" in str(info.value)
        assert str(info.value).count(". ") == 0  # one sentence


def test_hub_rows_are_read_like_rome_records(monkeypatch):
    """The hub copy's rows are ROME records with relation_id and target ids (no network here)."""
    import datasets

    rows = [rome(0, relation_id="P103"), rome(1, true="", relation_id="P103"), rome(2)]
    rows[0]["requested_rewrite"]["target_true"]["id"] = "Q150"
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return rows

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    facts = load_facts("counterfact", on_malformed="skip")
    assert calls == [("azhx/counterfact", "train")]
    assert facts.source == "azhx/counterfact"
    assert [(f.case_id, f.relation, f.target_true) for f in facts] == [
        (0, "P103", "French"),
        (2, "The mother tongue of {} is", "French"),
    ]
    assert facts.skipped == [("record 1 (case_id 1)", "target_true is empty")]


# ---------------------------------------------------------------------- Fact itself


def test_fact_strips_targets_and_checks_its_prompt():
    fact = Fact.from_template("The capital of {} is", "France", " Paris ", "Rome\n")
    assert (fact.target_true, fact.target_false, fact.relation) == (
        "Paris", "Rome", "The capital of {} is")
    with pytest.raises(ValueError, match="not the template"):
        Fact("The capital of Spain is", "France", "Paris", "Rome", "r", "The capital of {} is", 0)
    with pytest.raises(ValueError, match="target_false is empty"):
        Fact.from_template("The capital of {} is", "France", "Paris", " ")


# ---------------------------------------------------------------------- capitals


@pytest.fixture(scope="module")
def capitals() -> FactSet:
    return load_capitals(seed=0)


def test_capitals(capitals):
    assert len(capitals) > 150
    by_country = {f.subject: f for f in capitals}
    france = by_country["France"]
    assert (france.target_true, france.prompt, france.relation) == (
        "Paris", "The capital of France is", "capital")
    assert [f.subject for f in capitals] == sorted(f.subject for f in capitals)
    true_capitals = {f.target_true for f in capitals}
    for fact in capitals:
        assert fact.target_false != fact.target_true
        assert fact.target_false in true_capitals  # some other country's capital
        assert fact.template == "The capital of {} is"
    assert all(reason == "no capital" for _, reason in capitals.skipped)
    assert capitals.to_dict()["n_relations"] == 1


def test_capitals_false_targets_follow_the_seed(capitals):
    again = load_capitals(seed=0)
    other = load_capitals(seed=1)
    assert [f.target_false for f in again] == [f.target_false for f in capitals]
    assert [f.target_true for f in other] == [f.target_true for f in capitals]
    assert sum(a.target_false != b.target_false for a, b in zip(capitals, other)) > 10
    assert load_capitals(seed=0, limit=5).facts == capitals[:5]
    assert load_facts("capitals", seed=1).facts == other.facts
