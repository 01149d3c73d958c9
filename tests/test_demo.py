"""`lca-interp demo`, run once on fewer facts than `make demo` uses, and paper B's whole study on
Gemma-3-270m as the demo runs it: every output written, and the recall measurements' properties
(fitted and scored on disjoint countries, heads ranked by patching, the final layer's lens)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from conftest import _offline_model, needs_gemma

from lca_interp.cli import main

pytestmark = needs_gemma


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(printed):
        patch.setattr("lca_interp.demo.DEMO_CAPITALS_LIMIT", 10)
        patch.setattr("lca_interp.demo.DEMO_RECALL", dict(limit=8, shots=2))
        # the models this process loaded (the demo asks for the best device, the CPU here, in float32)
        patch.setattr("lca_interp.demo.load_model", lambda name, device=None, dtype="float32": _offline_model(name))
        assert main(["demo", "--out", str(out), "--steps", "20"]) == 0
    return out, printed.getvalue()


def test_demo_writes_its_outputs(demo):
    out, printed = demo
    for name in ["toy/model.safetensors", "toy/metrics.json", "toy/training.png", "attention.html",
                 "claims/claims.json", "claims/report.html", "hijack/gemma-3-270m/hijack.json", "hijack/gemma-3-270m/hijack.png",
                 "hijack/SmolLM2-135M-Instruct/hijack.json", "toy_anatomy/anatomy.html", "recall/recall.json",
                 "recall/recall.html", "compare.html", "demo.json"]:
        assert (out / name).exists(), name
    summary = json.loads((out / "demo.json").read_text())
    assert summary["metrics"]["bayes_accuracy"] > summary["metrics"]["accuracy"]
    assert {c["id"] for c in summary["claims"]} == {"T1", "T2", "C2", "C3", "C9"}
    for hijack in summary["hijack"].values():  # generic scheme on both offline models
        assert hijack["dataset"] == "capitals" and hijack["n"] == 10 and hijack["k"] == [0, 1, 2, 3]
        assert hijack["efficacy_score"][3] > hijack["efficacy_score"][0] + 0.2
    assert summary["recall"]["n"] == 12 and 0 < summary["recall"]["baseline_p"] < 1
    assert "google/gemma-3-270m: ES (generic, capitals" in printed and "recall (paper B)" in printed
    assert "HuggingFaceTB/SmolLM2-135M-Instruct: ES (generic, capitals" in printed


def test_recall_study_on_gemma_with_a_few_countries(demo):
    out, _ = demo
    result = json.loads((out / "recall" / "recall.json").read_text())
    for key in ["model", "n", "shots", "baseline_p", "masked_p", "intercept_p", "both_p", "heads", "mlp_decomposition"]:
        assert key in result
    fit, evaluation = result["split"]["fit"], result["split"]["evaluation"]
    assert len(fit) == len(evaluation) == 4 and not set(fit) & set(evaluation)  # fitted and scored apart
    assert result["n"] == 12 and result["shots"] == 2 and 0.02 < result["baseline_p"] < 1
    assert all(0 < h["correlation_p"] <= 1 for h in result["heads"])
    by_layer = result["anti_overconfidence"]["mlp_vs_mean_logits_correlation_by_layer"]
    assert len(by_layer) == 18 and by_layer[-1] == result["anti_overconfidence"]["final_mlp_vs_mean_logits_correlation"]
    assert len(result["heads"]) == 18 * 4 and result["heads"][0]["patch_effect"] > 0.02
    assert list(result["head_memory"]) == [h["head"] for h in result["heads"][:3]]
    lens = result["anti_overconfidence"]
    assert lens["p_answer_by_stage"][-1] == pytest.approx(result["baseline_p"], rel=1e-3)
    assert max(lens["final_heads_mass_on_first_token"]) > 0.5  # a final-layer head parks on BOS
    assert (out / "recall" / "recall.png").stat().st_size > 10_000
