"""Mixed-precision hijack scoring (`evals.hijack.mixed`, `lca-interp hijack --dtype mixed`): bfloat16
first, float32 exactly where a margin is within the calibrated bound of a tie."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lca_interp.cli import main
from lca_interp.evals.hijack.mixed import MarginBound, calibrate, margins, mixed_hijack_scores, near_ties
from lca_interp.facts import load_facts
from lca_interp.pretrained import load_model
from lca_interp.scoring import flips, hijack_scores

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact" / "counterfact.json"
pytestmark = pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data/counterfact is not here")


@pytest.fixture(scope="module")
def mixed(gpt2_folder):
    return load_model(gpt2_folder, device="cpu", dtype="mixed")


@pytest.fixture(scope="module")
def facts():
    return load_facts(str(COUNTERFACT)).facts[:12]


def _bound(summed: float, per_token: float) -> MarginBound:
    return MarginBound(summed, per_token, summed, per_token, 1.0, 0, "by hand")


def test_a_mixed_model_is_float32_with_a_bfloat16_twin_and_says_so(mixed):
    assert mixed.W_E.dtype == torch.float32 and mixed.bfloat16_twin.W_E.dtype == torch.bfloat16
    assert mixed.lca_interp_source["dtype"] == "mixed" and mixed.bfloat16_twin.lca_interp_source["dtype"] == "bfloat16"


def test_pairs_near_a_tie_get_float32_scores_and_the_rest_keep_bfloat16s(mixed, facts):
    fast = hijack_scores(mixed.bfloat16_twin, facts, "generic", 2)
    exact = hijack_scores(mixed, facts, "generic", 2)
    summed, per_token = margins(fast)
    bound = _bound(float(summed.abs().median()), float(per_token.abs().median()))
    scores = mixed_hijack_scores(mixed, facts, "generic", 2, bound)
    near = (summed.abs() <= bound.summed) | (per_token.abs() <= bound.per_token)
    assert 0 < int(near.sum()) < near.numel() and torch.equal(scores.rescored, near)
    # float32's numbers (scored in other batches, so to float32 round-off)
    torch.testing.assert_close(scores.log_prob[near], exact.log_prob[near], rtol=0, atol=1e-4)
    assert torch.equal(scores.log_prob[~near], fast.log_prob[~near])
    assert torch.equal(scores.n_tokens, exact.n_tokens)
    everything = mixed_hijack_scores(mixed, facts, "generic", 2, _bound(math.inf, math.inf))
    assert everything.rescored.all()
    torch.testing.assert_close(everything.log_prob, exact.log_prob, rtol=0, atol=1e-4)


def test_the_bound_is_the_safety_factor_times_the_largest_margin_error(mixed, facts):
    bound = calibrate(mixed, facts, "generic", 2, safety=3.0, described="the first 12 records")
    errors = [(f - e).abs().max() for f, e in zip(margins(hijack_scores(mixed.bfloat16_twin, facts, "generic", 2)),
                                                  margins(hijack_scores(mixed, facts, "generic", 2)))]
    assert bound.largest_error == pytest.approx(float(errors[0])) and bound.summed == pytest.approx(3 * float(errors[0]))
    assert bound.per_token == pytest.approx(3 * float(errors[1])) and bound.calibration_pairs == 3 * len(facts)
    assert bound.largest_error > 0  # bfloat16 did round
    # Where the bound covers every error, mixed decides as float32 does, by both readings.
    scores, exact = mixed_hijack_scores(mixed, facts, "generic", 2, bound), hijack_scores(mixed, facts, "generic", 2)
    for per_token in (False, True):
        assert torch.equal(flips(scores, per_token), flips(exact, per_token))
    with pytest.raises(ValueError, match="safety factor must be ≥ 1"):
        calibrate(mixed, facts, "generic", 2, safety=0.5)


def test_near_ties_reads_either_margin(mixed, facts):
    scores = hijack_scores(mixed, facts[:4], "generic", 1)
    summed, per_token = margins(scores)
    only_summed = near_ties(scores, _bound(float(summed.abs().max()), -1.0))
    only_per_token = near_ties(scores, _bound(-1.0, float(per_token.abs().max())))
    assert only_summed.all() and only_per_token.all() and not near_ties(scores, _bound(-1.0, -1.0)).any()
    scores.log_prob[0, 1, 0] = math.nan  # an overflow is scored again, never decided
    assert near_ties(scores, _bound(-1.0, -1.0)).flatten().tolist() == [False, True] + [False] * (scores.log_prob[..., 0].numel() - 2)


def test_a_model_without_a_twin_is_refused(gpt2_folder, facts):
    plain = load_model(gpt2_folder, device="cpu")
    with pytest.raises(ValueError, match="dtype='mixed'"):
        mixed_hijack_scores(plain, facts, "generic", 1, _bound(1.0, 1.0))


def test_the_cli_calibrates_on_records_it_does_not_report_and_records_what_it_rescored(gpt2_folder, tmp_path, capsys):
    out = tmp_path / "mixed"
    argv = ["hijack", "--model", str(gpt2_folder), "--dataset", str(COUNTERFACT), "--limit", "8", "--max-prepends", "2",
            "--dtype", "mixed", "--device", "cpu", "--calibration-records", "10", "--shard-size", "4", "--out", str(out)]
    assert main(argv) == 0
    result = json.loads((out / "hijack.json").read_text())
    precision = result["precision"]
    assert result["model_source"]["dtype"] == "mixed" and precision["scored_in"] == "mixed"
    assert precision["margin_bound"]["calibration"].startswith("the last 10 records of") and precision["pairs"] == 24
    shards = [load_file(path) for path in sorted((out / "shards" / "plain").glob("*.safetensors"))]
    rescored = torch.cat([shard["rescored"] for shard in shards], dim=1)
    assert precision["rescored_pairs"] == int(rescored.sum()) and precision["rescored_by_k"] == rescored.sum(1).tolist()
    bound = MarginBound(**precision["margin_bound"])
    assert bound.summed == pytest.approx(bound.safety * bound.largest_error) and bound.calibration_pairs == 30
    assert main(argv) == 0  # a rerun resumes from the shards (same calibration, same settings)
    assert json.loads((out / "hijack.json").read_text())["efficacy_score"] == result["efficacy_score"]
    # The calibration records may not be reported.
    assert main([*argv[:5], "--max-prepends", "1", "--dtype", "mixed", "--device", "cpu", "--out", str(tmp_path / "all")]) == 2
    assert "calibrate mixed precision and cannot be reported too" in capsys.readouterr().err


def test_mitigations_of_a_mixed_run_are_scored_in_float32_and_say_so(gpt2_folder, tmp_path):
    out = tmp_path / "mitigated"
    assert main(["hijack", "--model", str(gpt2_folder), "--dataset", str(COUNTERFACT), "--limit", "3", "--max-prepends", "1",
                 "--dtype", "mixed", "--device", "cpu", "--calibration-records", "3", "--mitigation", "masked",
                 "--out", str(out)]) == 0
    result = json.loads((out / "hijack.json").read_text())
    assert result["precision"]["scored_in"] == "mixed" and result["mitigations"]["masked"]["precision"] == {"scored_in": "float32"}


def test_mixed_precision_cannot_score_under_a_mitigation():
    from lca_interp.evals.hijack import HijackScoring

    with pytest.raises(ValueError, match="mixed precision scores the model as it is"):
        HijackScoring("generic", 1, mitigation="masked", margin_bound=_bound(1.0, 1.0))


def test_a_mixed_results_figure_says_how_much_float32_rescored():
    from lca_interp.report.hijack import _precision_note

    assert "12.5% of (fact, k) rescored in float32" in _precision_note({"precision": {"scored_in": "mixed", "pairs": 8,
                                                                                       "rescored_pairs": 1}})
    assert _precision_note({"precision": {"scored_in": "float32"}}) == "" and _precision_note({}) == ""
