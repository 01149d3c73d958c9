"""`reproduce` end to end at a scale below the quick one, and every claim's criterion on made-up
numbers. The end-to-end run checks wiring, files and the exact statements (T1, T2); the other
verdicts at this size mean nothing and are not asserted."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import pytest
import torch

from lca_interp import report
from lca_interp.evals.claims import CLAIMS, QUICK
from lca_interp.evals.claims.attention import C8_MIN_REMOVED, c8_holds
from lca_interp.evals.claims.context import c9_holds, c10_holds
from lca_interp.evals.claims.embeddings import (
    C4_GAP,
    C6_MIN_R2,
    C7_SLACK,
    c4_holds,
    c5_holds,
    c6_holds,
    c7_holds,
)
from lca_interp.evals.claims.reproduce import reproduce
from lca_interp.evals.claims.theorems import T1_FINAL_ERROR, t1_holds, t2_holds
from lca_interp.evals.claims.value_matrix import C2_MAX_DROP, c1_holds, c2_holds, c3_holds
from lca_interp.task import mix_contexts


# The quick scale with shorter training: a third of its time.
TINY = replace(QUICK, name="tiny", steps=120, eval_samples=1500, plateau_window=100, plateau_cap=500)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    result = reproduce(out, TINY, seeds=1, progress=False)
    report.save(result, out / "claims.json")
    return out, result


def test_quick_reproduce_measures_every_claim(quick_run):
    out, result = quick_run
    assert [c.id for c in result.claims] == list(CLAIMS)
    written = json.loads((out / "claims.json").read_text())
    assert written["kind"] == "claims" and written["seconds"] > 0 and written["scale"]["seeds"] == 1
    assert [c["id"] for c in written["claims"]] == list(CLAIMS)
    for entry in written["claims"]:
        assert {"id", "claim", "criterion", "measured", "holds"} <= set(entry)
        assert isinstance(entry["holds"], bool) and entry["measured"]
        assert entry["holds"] == CLAIMS[entry["id"]].holds(entry["measured"])  # the verdict is the criterion's
        assert (out / f"{entry['id']}.png").stat().st_size > 5_000  # a real PNG, not a stub


def test_compared_variants_are_trained_to_the_plateau_with_the_lr_chosen_on_validation(quick_run):
    _, result = quick_run
    c4 = next(c for c in result.claims if c.id == "C4").measured
    for row in c4["by_d"].values():
        for variant in ("trained_we", "frozen_we"):
            chosen = row[variant]
            validation = {float(lr): v["mean"] for lr, v in chosen["validation_by_lr"].items()}
            assert set(validation) == set(TINY.plateau_lrs)
            assert chosen["lr"] == max(validation, key=validation.get)
            assert all(0 < s <= TINY.plateau_cap for s in chosen["steps_to_plateau"])


def test_report_is_one_offline_page_with_every_figure(quick_run):
    out, _ = quick_run
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(CLAIMS)
    assert page.count("var CircuitsVis=") == 1  # the bundle inlined once
    assert page.count("CircuitsVis.render(") == 2
    assert "minValue" in page  # the toy's attention is drawn relative to uniform
    assert not re.search(r'<script[^>]+src=|https?://[^"\s]*\.js', page)  # nothing fetched


def test_redrawing_from_the_json_alone_gives_the_same_page(quick_run, monkeypatch):
    out, _ = quick_run
    before = re.sub(r"cv-[0-9a-f]{12}", "", (out / "report.html").read_text())
    (out / "report.html").unlink()
    (out / "C1.png").unlink()
    monkeypatch.setattr("lca_interp.evals.claims.zoo.load_toy", lambda *a: pytest.fail("a toy was loaded"))
    report.redraw(out)
    assert re.sub(r"cv-[0-9a-f]{12}", "", (out / "report.html").read_text()) == before
    assert (out / "C1.png").exists()


def test_claims_that_need_no_training_hold_at_small_scale(quick_run):
    """Theorem 1 and Lemma 2 are exact statements about constructed models; they must hold."""
    _, result = quick_run
    by_id = {c.id: c for c in result.claims}
    assert by_id["T1"].holds and by_id["T2"].holds
    assert by_id["T2"].measured["identity_error"]["mean"] > 0


def test_reproduce_reuses_trained_toys(quick_run, monkeypatch):
    out, _ = quick_run
    monkeypatch.setattr("lca_interp.evals.claims.zoo.train_many", lambda *a, **k: pytest.fail("a toy was retrained"))
    again = reproduce(out, TINY, seeds=1, claim_ids=["C1", "C2"], progress=False)
    assert [c.id for c in again.claims] == ["C1", "C2"]


def test_reproduce_rejects_unknown_claims_and_bad_seeds(tmp_path):
    with pytest.raises(ValueError, match="unknown claim"):
        reproduce(tmp_path, QUICK, claim_ids=["C42"], progress=False)
    with pytest.raises(ValueError, match="seeds"):
        reproduce(tmp_path, QUICK, seeds=0, progress=False)
    assert not any(tmp_path.iterdir())


# ---------------------------------------------------------------------- criteria on made-up numbers


def ms(*values: float) -> dict:
    return {"per_seed": list(values), "mean": sum(values) / len(values), "sd": 0.0}


def test_c1_needs_a_positive_gap_at_both_lengths_and_a_larger_one_at_the_shorter():
    rows = lambda g1, g2: {"by_context_len": {"64": {"gap": ms(g1)}, "128": {"gap": ms(g2)}}}  # noqa: E731
    assert c1_holds(rows(0.05, 0.01))
    assert not c1_holds(rows(0.01, 0.05)) and not c1_holds(rows(0.05, -0.01))


def test_c2_tolerates_exactly_its_stated_drop():
    measured = lambda drop, random: {"trained": ms(0.8), "constructed": ms(0.8 - drop), "random": ms(random)}  # noqa: E731
    assert c2_holds(measured(C2_MAX_DROP / 2, 0.1))
    assert not c2_holds(measured(C2_MAX_DROP * 2, 0.1)) and not c2_holds(measured(0.0, 0.9))


def test_c3_needs_the_constructed_angle_smallest_for_every_seed():
    assert c3_holds({"constructed": ms(0.1, 0.2), "random": ms(0.3, 0.3), "gaussian_init": ms(0.5, 0.5)})
    assert not c3_holds({"constructed": ms(0.1, 0.4), "random": ms(0.3, 0.3), "gaussian_init": ms(0.5, 0.5)})


def test_c4_separates_below_and_above_v_at_its_gap():
    by_d = lambda small, large: {"V": 256, "by_d": {"64": {"gap": ms(small)}, "320": {"gap": ms(large)}}}  # noqa: E731
    assert c4_holds(by_d(C4_GAP + 0.01, C4_GAP - 0.01))
    assert not c4_holds(by_d(C4_GAP - 0.01, 0.0)) and not c4_holds(by_d(0.5, -C4_GAP - 0.01))


def test_c5_and_c8_criteria():
    assert c5_holds({"fits": [{"a": 0.5, "b": 1.0, "b0": 2.0}]})
    assert not c5_holds({"fits": [{"a": 0.5, "b": 1.0, "b0": 2.0}, {"a": -0.1, "b": 1.0, "b0": 2.0}]})
    removed = lambda r1, r2: {"cluster1": {"out_of_cluster_mass_removed": ms(r1)}, "cluster2": {"out_of_cluster_mass_removed": ms(r2)}}  # noqa: E731
    assert c8_holds(removed(C8_MIN_REMOVED, 0.9)) and not c8_holds(removed(0.9, C8_MIN_REMOVED - 0.01))


def test_c6_and_c7_thresholds():
    fit = {"a": 1.0}
    assert c6_holds({"r2_of_means": ms(C6_MIN_R2), "fits": [fit]})
    assert not c6_holds({"r2_of_means": ms(C6_MIN_R2 - 0.01), "fits": [fit]})
    assert c7_holds({"m": 8, "gap_after": [8, 8 + C7_SLACK]}) and not c7_holds({"m": 8, "gap_after": [8 + C7_SLACK + 1]})


def test_c9_c10_t1_t2_criteria():
    assert c9_holds({"flip_rate": [ms(0.0), ms(0.2), ms(0.2), ms(0.7)]})
    assert not c9_holds({"flip_rate": [ms(0.0), ms(0.3), ms(0.2)]})
    rising = {"accuracy": [ms(0.2), ms(0.4)], "bayes_accuracy": [ms(0.3), ms(0.5)]}
    assert c10_holds(rising) and not c10_holds({**rising, "bayes_accuracy": [ms(0.3), ms(0.35)]})
    assert t1_holds({"error": [ms(0.5), ms(0.1), ms(T1_FINAL_ERROR / 2)]})
    assert not t1_holds({"error": [ms(0.5), ms(0.1), ms(T1_FINAL_ERROR)]})
    assert t2_holds({"constructed_error": ms(0.0), "identity_error": ms(0.3)})
    assert not t2_holds({"constructed_error": ms(0.001), "identity_error": ms(0.3)})


def test_mix_contexts_replaces_a_prefix_and_keeps_the_last_token():
    own = torch.arange(10).repeat(2, 1)
    other = -torch.arange(10).repeat(2, 1) - 1
    mixed = mix_contexts(own, other, 0.5)
    assert mixed[0].tolist() == [-1, -2, -3, -4, 4, 5, 6, 7, 8, 9]
    assert torch.equal(mix_contexts(own, other, 0.0), own)
    assert mix_contexts(own, other, 1.0)[0, -1] == 9
    with pytest.raises(ValueError):
        mix_contexts(own, other, 1.5)
