"""Relation ids for CounterFact through known_1000's templates, and the relation hijack scheme."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lca_interp.cli import main
from lca_interp.facts import Fact, load_counterfact
from lca_interp.facts.relations import load_relation_map, select_relation
from lca_interp.prompts import Donors, hijack_sentences, hijackable, hijacked_prompt

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_known(tmp_path, rows) -> Path:
    path = tmp_path / "known.json"
    path.write_text(json.dumps([{"template": t, "relation_id": r, "subject": "x"} for t, r in rows]))
    return path


def test_templates_take_their_majority_relation_and_ties_stay_unmapped(tmp_path):
    known = write_known(tmp_path, [("{} is in", "P276"), ("{} is in", "P276"), ("{} is in", "P131"),
                                   ("{} is developed by", "P176"), ("{} is developed by", "P178"),
                                   ("{} speaks", "P1412")])
    mapping = load_relation_map(known)
    assert mapping.relation_of == {"{} is in": "P276", "{} speaks": "P1412"}
    facts = [Fact.from_template("{} is in", "Rome", "Italy", "France"), Fact.from_template("{} is developed by", "iOS", "Apple", "Google")]
    mapped = mapping.apply(facts)
    assert [f.relation for f in mapped] == ["P276", "{} is developed by"]
    assert select_relation(mapped, "known") == mapped[:1]  # every fact with a relation id, and only those


def test_bad_known_1000_files_and_relation_ids_get_one_sentence(tmp_path):
    with pytest.raises(FileNotFoundError, match="known_1000"):
        load_relation_map(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('[{"template": "{} x"}]')
    with pytest.raises(ValueError, match="not a known_1000 file"):
        load_relation_map(tmp_path / "bad.json")
    facts = [Fact.from_template("{} speaks", "Ann", "French", "German", relation="P1412")]
    with pytest.raises(ValueError, match="no fact has relation 'P999'; the facts' relation ids are P1412"):
        select_relation(facts, "P999")


def test_relation_sentences_are_true_facts_of_the_same_relation_about_the_false_target():
    darrieux = Fact.from_template("The mother tongue of {} is", "Danielle Darrieux", "French", "English", relation="P103")
    obama = Fact.from_template("The mother tongue of {} is", "Barack Obama", "English", "Swahili", relation="P103")
    blair = Fact.from_template("{} speaks", "Tony Blair", "English", "Welsh", relation="P103")
    other_relation = Fact.from_template("{} was born in", "Joe", "English", "Paris", relation="P19")
    donors = Donors.of([darrieux, obama, blair, other_relation])
    assert hijack_sentences(darrieux, "relation", 3, donors) == [
        "The mother tongue of Barack Obama is English.", "Tony Blair speaks English.", "The mother tongue of Barack Obama is English."]
    assert hijacked_prompt(darrieux, "relation", 0, donors) == darrieux.prompt
    assert hijackable([darrieux, obama], "relation", donors) == ([darrieux], 1)  # nobody's answer is Swahili
    with pytest.raises(ValueError, match="needs Donors"):
        hijacked_prompt(darrieux, "relation", 1)


@pytest.mark.skipif(not (SHARED / "known_1000.json").exists(), reason="../shared/data is not beside the checkout")
def test_counterfact_maps_132_templates_and_p190_has_its_210_records():
    mapping = load_relation_map(SHARED / "known_1000.json")
    facts = mapping.apply(load_counterfact(SHARED / "counterfact" / "counterfact.json").facts)
    with_id = [f for f in facts if f.relation[:1] == "P" and f.relation[1:].isdigit()]
    assert len({f.template for f in with_id}) == 132 and len(with_id) == 14_578
    assert len(select_relation(facts, "P190")) == 210


@pytest.mark.skipif(not (SHARED / "known_1000.json").exists(), reason="../shared/data is not beside the checkout")
def test_an_unknown_relation_on_the_command_line_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["hijack", "--model", "gpt2", "--dataset", str(SHARED / "counterfact" / "counterfact.json"),
                 "--relation", "P999", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("lca-interp hijack: error: no fact has relation 'P999'") and "\n" not in error
    assert not out.exists()
