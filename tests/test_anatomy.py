"""Hijack anatomy: locating the parts of a prompt, the LLM analysis end to end (random GPT-2 and
Gemma-3-270m), and the toy's exact split of its logit difference by source."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import needs_gemma

from lca_interp import report
from lca_interp.cli import main
from lca_interp.evals.anatomy import hijack_anatomy, prompt_spans
from lca_interp.evals.toy_anatomy import toy_hijack_anatomy
from lca_interp.facts import Fact
from lca_interp.pretrained import load_model
from lca_interp.prompts import hijacked_prompt

EIFFEL = Fact.from_template("{} is located in the city of", "The Eiffel Tower", "Paris", "Chicago", case_id="eiffel")
DARRIEUX = Fact.from_template("The mother tongue of {} is", "Danielle Darrieux", "French", "English", case_id="dd")
FACTS = [EIFFEL, DARRIEUX, Fact.from_template("The capital of {} is", "France", "Paris", "Rome", case_id="fr")]


@pytest.fixture(scope="module")
def gpt2(gpt2_folder):
    return load_model(gpt2_folder)


@pytest.mark.parametrize("scheme", ["generic", "negation", "reverse-generic"])
def test_spans_decode_to_the_parts_they_name(gpt2, scheme):
    for fact in FACTS:
        text = hijacked_prompt(fact, scheme, 2)
        str_tokens = gpt2.to_str_tokens(text)
        spans = prompt_spans(gpt2, fact, scheme, 2)
        named = fact.target_true if scheme.startswith("reverse") else fact.target_false
        assert "".join(str_tokens[i] for i in spans.subject).strip() == fact.subject
        assert "".join(str_tokens[i] for i in spans.named).split() == [named, named]
        context = "".join(str_tokens[i] for i in spans.context)
        assert context == text[: len(text) - len(fact.prompt) - 1]
        assert spans.context[0] == int(gpt2.cfg.default_prepend_bos) and max(spans.context) < min(spans.subject)
    assert prompt_spans(gpt2, EIFFEL, "generic", 0).context == []


MORE_FACTS = FACTS + [Fact.from_template("{} is located in the country of", "Mount Fuji", "Japan", "Brazil", case_id="fuji"),
                      Fact.from_template("The capital of {} is", "Spain", "Madrid", "Lisbon", case_id="es"),
                      Fact.from_template("{} plays the", "Jimi Hendrix", "guitar", "violin", case_id="jh")]


def test_anatomy_chooses_heads_on_one_split_and_reports_on_the_other(gpt2, tmp_path):
    anatomy = hijack_anatomy(gpt2, MORE_FACTS, "generic", k=2, max_prepends=2, top_n=2, control_draws=5, seed=3, progress=False)
    n_layers, n_heads = gpt2.cfg.n_layers, gpt2.cfg.n_heads
    split = anatomy.split
    assert split["selection"] == split["evaluation"] == 3 and split["seed"] == 3
    assert not set(split["selection_case_ids"]) & set(split["evaluation_case_ids"])
    for measured in (anatomy.selection, anatomy.evaluation):
        assert torch.tensor(measured.mass_context).shape == (n_layers, n_heads)
        assert torch.allclose(torch.tensor(measured.dla_shift), torch.tensor(measured.dla_hijacked) - torch.tensor(measured.dla_clean))
        assert all(0 <= m <= 1 + 1e-6 for row in measured.mass_context for m in row)
    # The top heads are the selection split's largest shifts, not the evaluation split's.
    selection_shift = torch.tensor(anatomy.selection.dla_shift).flatten()
    assert [h.layer * n_heads + h.head for h in anatomy.top_heads] == selection_shift.argsort(descending=True)[:2].tolist()
    control = anatomy.control
    assert len(control["heads"]) == len(control["es"]) == 5 and all(len(d) == 2 for d in control["heads"])
    top_layers = {h.layer for h in anatomy.top_heads}
    assert all(set(d).isdisjoint(anatomy.top_heads) and {h[0] for h in d} <= top_layers for d in control["heads"])
    assert all(lo <= mid <= hi for lo, mid, hi in zip(control["es_q05"], control["es_q50"], control["es_q95"]))
    assert len(anatomy.es_baseline) == len(anatomy.es_top_ablated) == 3
    report.save(anatomy, tmp_path / "anatomy.json")
    data = json.loads((tmp_path / "anatomy.json").read_text())
    assert data["ranked_heads"][0]["head"] == str(anatomy.top_heads[0])
    page = (tmp_path / "anatomy.html").read_text()
    assert page.count("AttentionHeads") >= 3 and "<script src=" not in page  # offline: the library is inlined
    assert page.count("data:image/png;base64") == 2  # the anatomy figure and the attribution bars
    assert all(not hook.fwd_hooks for hook in gpt2.hook_dict.values())


def test_control_summary_against_a_hand_computed_case():
    from lca_interp.evals.anatomy import control_summary

    draws = [[0.8, 0.5 + i / 100] for i in range(21)]  # reductions at k=1: 0.30 … 0.10
    summary = control_summary([0.8, 0.8], [0.8, 0.05], draws)
    assert summary["es_q50"] == pytest.approx([0.8, 0.6])
    assert summary["reduction_q95"][1] == pytest.approx(0.29)
    assert summary["top_beats_q95"] == [False, True]


def test_anatomy_refuses_bad_settings(gpt2):
    with pytest.raises(ValueError, match="k must be ≥ 1"):
        hijack_anatomy(gpt2, MORE_FACTS, k=0)
    with pytest.raises(ValueError, match="top_n"):
        hijack_anatomy(gpt2, MORE_FACTS, top_n=100)
    with pytest.raises(ValueError, match="too few to select heads on"):
        hijack_anatomy(gpt2, FACTS, progress=False)  # 3 facts split 2/1


def test_toy_split_by_source_adds_up_to_its_logit_difference(make_toy, randomize):
    from lca_interp.task import LCATask

    task = LCATask(m=4, omega=0.5, beta=1.0, context_len=8)
    toy = randomize(make_toy(d_vocab=16, d_model=16, n_ctx=8))
    anatomy = toy_hijack_anatomy(toy, task, n=300, fractions=(0.0, 0.5, 1.0))
    for foreign, own, total in zip(anatomy.write_foreign, anatomy.write_own, anatomy.logit_diff):
        assert foreign + own == pytest.approx(total, abs=1e-4)
    assert anatomy.mass_foreign[0] == 0 and anatomy.uniform_foreign == pytest.approx([0, 3 / 8, 7 / 8])
    assert anatomy.memory["n_sources"] == 16 and -1 <= anatomy.memory["cosine"] <= 1


@needs_gemma
def test_gemma_anatomy_cli_on_four_facts(tmp_path, capsys):
    records = [{"case_id": i, "requested_rewrite": {"prompt": p, "subject": s, "target_true": {"str": t}, "target_new": {"str": f}}}
               for i, (p, s, t, f) in enumerate([("{} is located in the city of", "The Eiffel Tower", "Paris", "Chicago"),
                                                 ("The mother tongue of {} is", "Danielle Darrieux", "French", "English"),
                                                 ("{} is located in the country of", "Mount Fuji", "Japan", "Brazil"),
                                                 ("The capital of {} is", "Spain", "Madrid", "Lisbon")])]
    data = tmp_path / "facts.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "out"
    assert main(["hijack", "--model", "google/gemma-3-270m", "--dataset", str(data), "--max-prepends", "1",
                 "--anatomy", "--top-heads", "2", "--control-draws", "3", "--out", str(out)]) == 0
    anatomy = json.loads((out / "anatomy.json").read_text())
    assert anatomy["split"]["selection"] == anatomy["split"]["evaluation"] == 2
    assert torch.tensor(anatomy["evaluation"]["dla_shift"]).shape == (18, 4) and len(anatomy["control"]["es"]) == 3
    assert (out / "anatomy.html").exists() and (out / "anatomy.png").stat().st_size > 10_000
    assert "whose direct vote moves most toward o_" in capsys.readouterr().out


def test_the_write_a_probe_example_runs_on_a_random_gpt2(gpt2):
    import importlib.util
    from pathlib import Path

    from lca_interp.facts import load_capitals

    path = Path(__file__).resolve().parents[1] / "examples" / "write_a_probe.py"
    spec = importlib.util.spec_from_file_location("write_a_probe", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    correlation = example.subject_readers(gpt2, load_capitals(limit=12).facts)
    assert correlation.shape == (gpt2.cfg.n_layers, gpt2.cfg.n_heads)
    assert bool((correlation.abs() <= 1 + 1e-5).all()) and bool(correlation.abs().sum() > 0)


def test_toy_anatomy_cli_on_a_trained_toy(tmp_path, capsys):
    run = tmp_path / "toy"
    assert main(["train", "--m", "4", "--context-len", "8", "--d-model", "16", "--steps", "200", "--lr", "0.01",
                 "--eval-samples", "500", "--out", str(run)]) == 0
    out = tmp_path / "anatomy"
    assert main(["hijack", "--model", str(run), "--anatomy", "--out", str(out)]) == 0
    anatomy = json.loads((out / "anatomy.json").read_text())
    assert anatomy["model"] == "lca-toy" and anatomy["fractions"][0] == 0.0
    assert anatomy["flip_rate"][-1] > anatomy["flip_rate"][0]  # a fully foreign context moves the prediction
    assert (out / "anatomy.html").read_text().count("AttentionHeads") >= 3
    assert main(["hijack", "--model", str(run), "--dataset", "capitals", "--out", str(tmp_path / "x")]) == 2
    assert "is a trained LCA toy" in capsys.readouterr().err
