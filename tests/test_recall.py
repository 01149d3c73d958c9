"""Paper B's measurements: the regression on synthetic data, the mitigations' exactness, the
patching shortcut against the plain intervention. The whole study on Gemma-3-270m is checked on
the demo's run of it (tests/test_demo.py)."""

from __future__ import annotations

import json

import pytest
import torch

from lca_interp.cli import main
from lca_interp.evals.recall.heads import argument_passing_heads
from lca_interp.evals.recall.items import recall_items
from lca_interp.evals.recall.mlp import regress_on_vectors
from lca_interp.facts import load_capitals
from lca_interp.hooks.interventions import patch_activation
from lca_interp.hooks.mitigations import mitigation
from lca_interp.pretrained import load_model


@pytest.fixture(scope="module")
def gpt2(gpt2_folder):
    return load_model(gpt2_folder)


def test_regression_recovers_known_coefficients_and_intercept():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, 16, generator=gen, dtype=torch.float64)
    coefficients = torch.tensor([0.0, -0.5, 1.0, 2.5, 0.3], dtype=torch.float64)
    intercept = torch.randn(16, generator=gen, dtype=torch.float64) * 3
    y = torch.einsum("nkd,k->nd", x, coefficients) + intercept
    exact = regress_on_vectors(y, x)
    assert torch.allclose(exact.coefficients, coefficients, atol=1e-10)
    assert torch.allclose(exact.intercept, intercept, atol=1e-10) and exact.r_squared == pytest.approx(1.0)
    noisy = regress_on_vectors(y + 0.1 * torch.randn(y.shape, generator=gen, dtype=torch.float64), x)
    assert torch.allclose(noisy.coefficients, coefficients, atol=0.02) and 0.98 < noisy.r_squared < 1


def test_recall_items_are_aligned_and_well_formed(gpt2):
    facts = load_capitals().facts
    items = recall_items(gpt2, facts, limit=10)
    assert len(items) == 30  # three lead-ins
    for item in items:
        assert len(gpt2.to_tokens(" " + item.answer, prepend_bos=False)[0]) == 1
        tokens = gpt2.to_str_tokens(gpt2.to_tokens(item.prompt)[0])
        assert "".join(tokens[i] for i in item.subject_positions).strip() == item.subject
        if item.corrupt_prompt is not None:
            assert gpt2.to_tokens(item.corrupt_prompt).shape == gpt2.to_tokens(item.prompt).shape
            assert item.subject not in item.corrupt_prompt
    few = recall_items(gpt2, facts, shots=3, limit=10)
    assert len(few) == 10 and all(item.prompt.count(". ") >= 3 for item in few)
    with pytest.raises(ValueError, match="shots"):
        recall_items(gpt2, facts, shots=-1)


def test_batched_head_patching_equals_one_head_at_a_time(gpt2):
    items = [i for i in recall_items(gpt2, load_capitals().facts, limit=8, lead_ins=("",)) if i.corrupt_prompt][:3]
    scores = {s.head: s.patch_effect for s in argument_passing_heads(gpt2, items, progress=False)}
    for layer, head in [(0, 1), (1, 3)]:
        drops = []
        for item in items:
            clean, corrupt = gpt2.to_tokens(item.prompt), gpt2.to_tokens(item.corrupt_prompt)
            _, cache = gpt2.run_with_cache(corrupt)
            name = f"blocks.{layer}.attn.hook_z"
            with torch.no_grad():
                base = gpt2(clean)[0, -1].softmax(-1)[item.answer_id]
                with patch_activation(gpt2, name, cache[name], positions=-1, heads=[head]):
                    patched = gpt2(clean)[0, -1].softmax(-1)[item.answer_id]
            drops.append(float(base - patched))
        assert scores[f"L{layer}H{head}"] == pytest.approx(sum(drops) / len(drops), abs=1e-7)


def test_masking_the_final_layer_leaves_earlier_layers_alone(gpt2):
    tokens = gpt2.to_tokens("The capital of France is")
    _, plain = gpt2.run_with_cache(tokens)
    with mitigation(gpt2, "masked"):
        logits, masked = gpt2.run_with_cache(tokens)
    assert torch.equal(plain["blocks.0.hook_resid_post"], masked["blocks.0.hook_resid_post"])
    assert not torch.equal(plain["blocks.1.hook_attn_out"], masked["blocks.1.hook_attn_out"])
    assert torch.allclose(masked["blocks.1.attn.hook_pattern"][0, :, -1, -1], torch.ones(gpt2.cfg.n_heads))


def test_subtracting_a_zero_intercept_changes_nothing(gpt2):
    tokens = gpt2.to_tokens("The capital of France is")
    with torch.no_grad():
        plain = gpt2(tokens)
        with mitigation(gpt2, "intercept", torch.zeros(gpt2.cfg.d_model)):
            same = gpt2(tokens)
        with mitigation(gpt2, "intercept", torch.ones(gpt2.cfg.d_model)):
            moved = gpt2(tokens)
    assert torch.equal(plain, same) and not torch.allclose(plain, moved)
    assert all(not hook.fwd_hooks for hook in gpt2.hook_dict.values())
    with pytest.raises(ValueError, match="unknown mitigation"):
        mitigation(gpt2, "prayer")
    with pytest.raises(ValueError, match="needs the final MLP's intercept"):
        mitigation(gpt2, "both")
    with pytest.raises(ValueError, match="intercept must have shape"):
        mitigation(gpt2, "both", torch.zeros(3))
    unused = mitigation(gpt2, "both", torch.zeros(gpt2.cfg.d_model))  # hooks attach on entry only
    assert all(not hook.fwd_hooks for hook in gpt2.hook_dict.values())
    with pytest.raises(RuntimeError, match="inside"):
        with unused:
            assert any(hook.fwd_hooks for hook in gpt2.hook_dict.values())
            raise RuntimeError("inside")
    assert all(not hook.fwd_hooks for hook in gpt2.hook_dict.values())


def test_hijack_with_a_mitigation_reports_both(gpt2_folder, tmp_path, capsys):
    records = [{"case_id": 0, "requested_rewrite": {"prompt": "The capital of {} is", "subject": "France",
                "target_true": {"str": "Paris"}, "target_new": {"str": "Rome"}}}]
    data = tmp_path / "facts.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "out"
    assert main(["hijack", "--model", str(gpt2_folder), "--dataset", str(data), "--max-prepends", "1",
                 "--mitigation", "masked", "both", "--out", str(out)]) == 0
    written = json.loads((out / "hijack.json").read_text())
    assert list(written["mitigations"]) == ["masked", "both"]
    assert all(len(m["efficacy_score"]) == 2 for m in written["mitigations"].values())
    printed = capsys.readouterr().out
    assert "with the masked mitigation" in printed and "with the both mitigation" in printed


def test_recall_cli_on_a_local_model_folder(gpt2_folder, tmp_path, capsys):
    out = tmp_path / "recall"
    assert main(["recall", "--model", str(gpt2_folder), "--limit", "6", "--shots", "2", "--out", str(out)]) == 0
    result = json.loads((out / "recall.json").read_text())
    assert result["n"] == 9 and result["shots"] == 2 and len(result["heads"]) == 2 * 4
    assert main(["recall", "--model", str(gpt2_folder), "--limit", "1", "--out", str(tmp_path / "bad")]) == 2
    assert "--limit must be ≥ 2" in capsys.readouterr().err
