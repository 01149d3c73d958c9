"""Sharded hijack runs (`evals.hijack.shards`, `lca-interp hijack --workers/--shard-size`): a run killed
with SIGKILL resumes to the uninterrupted result, Ray workers give the serial result exactly, and
shards of other settings are refused without being touched. Plus `--device` and `--dtype`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import needs_gemma
from safetensors import safe_open
from safetensors.torch import load_file

from lca_interp.cli import main

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact" / "counterfact.json"
needs_counterfact = pytest.mark.skipif(not COUNTERFACT.exists(), reason="../shared/data/counterfact is not here")

# Runs the CLI, then dies by SIGKILL (no cleanup, no finally) right after its Nth shard is written.
KILLED_AFTER = """
import os, signal, sys
import lca_interp.artifacts as artifacts
save, written = artifacts.save_tensors, []
def save_then_die(*args, **kwargs):
    save(*args, **kwargs)
    written.append(args[0])
    if len(written) == int(os.environ["KILL_AFTER_SHARDS"]):
        os.kill(os.getpid(), signal.SIGKILL)
artifacts.save_tensors = save_then_die
from lca_interp.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _argv(model: Path, out: Path, *extra: str) -> list[str]:
    return ["hijack", "--model", str(model), "--dataset", str(COUNTERFACT), "--limit", "10", "--max-prepends", "2",
            "--shard-size", "3", "--out", str(out), *extra]


def _shards(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {path.name: load_file(path) for path in sorted((out / "shards" / "plain").glob("*.safetensors"))}


def _result(out: Path) -> dict:
    """hijack.json without what differs between two runs of the same numbers (times, command)."""
    data = json.loads((out / "hijack.json").read_text())
    return {key: value for key, value in data.items() if key not in ("provenance", "seconds", "shard_seconds")}


def _assert_same_shards(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name]["log_prob"], b[name]["log_prob"]) and torch.equal(a[name]["n_tokens"], b[name]["n_tokens"])


@pytest.fixture(scope="module")
def serial(gpt2_folder, tmp_path_factory) -> Path:
    """The reference: the same run in one process, uninterrupted (one torch thread, conftest)."""
    out = tmp_path_factory.mktemp("serial")
    assert main(_argv(gpt2_folder, out)) == 0
    return out


@needs_counterfact
def test_shards_hold_the_run_in_order_and_match_one_unsharded_pass(gpt2_folder, serial):
    from lca_interp.evals.hijack.shards import HijackScoring
    from lca_interp.facts import load_facts
    from lca_interp.pretrained import load_model
    from lca_interp.scoring import efficacy_score

    shards = _shards(serial)
    assert list(shards) == ["000000-000003.safetensors", "000003-000006.safetensors", "000006-000009.safetensors",
                            "000009-000010.safetensors"]
    assert [s["log_prob"].shape for s in shards.values()] == [(3, 3, 2)] * 3 + [(3, 1, 2)]
    facts = load_facts(str(COUNTERFACT)).facts[:10]
    whole = HijackScoring("generic", 2).scores(load_model(gpt2_folder), facts)  # one pass, no shards
    assert efficacy_score(whole) == _result(serial)["efficacy_score"]
    merged = torch.cat([s["log_prob"] for s in shards.values()], dim=1)
    torch.testing.assert_close(merged, whole.log_prob, rtol=0, atol=1e-5)  # other batches: float rounding only


@needs_counterfact
def test_a_runs_finished_shards_are_read_without_scoring_and_refused_for_other_facts(gpt2_folder, serial):
    from lca_interp.evals.hijack.shards import HijackScoring, ShardPlan
    from lca_interp.facts import load_facts
    from lca_interp.facts.relations import with_relation_ids
    from lca_interp.pretrained import load_model

    facts = with_relation_ids(load_facts(str(COUNTERFACT)).facts)[:10]  # as the CLI reads them
    model, scoring = load_model(gpt2_folder), HijackScoring("generic", 2)
    plan = ShardPlan(serial / "shards", shard_size=3)
    done = plan.finished(model, facts, scoring)
    assert sorted(done) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    written = _shards(serial)
    for (start, end), (scores, seconds) in done.items():
        assert torch.equal(scores.log_prob, written[f"{start:06d}-{end:06d}.safetensors"]["log_prob"]) and seconds > 0
    with pytest.raises(ValueError, match=r"other settings \(facts, n_facts\)"):
        plan.finished(model, facts[:9], scoring)


@needs_counterfact
def test_a_run_killed_after_two_shards_resumes_to_the_uninterrupted_result(gpt2_folder, serial, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "KILL_AFTER_SHARDS": "2"}
    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER, *_argv(gpt2_folder, out)], env=env, capture_output=True,
                            text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert list(_shards(out)) == ["000000-000003.safetensors", "000003-000006.safetensors"]
    assert not (out / "hijack.json").exists() and not list(out.rglob(".*.tmp"))
    before = {path: path.stat().st_mtime_ns for path in (out / "shards" / "plain").iterdir()}

    resumed = subprocess.run([sys.executable, "-m", "lca_interp.cli", *_argv(gpt2_folder, out)], env=env,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in before.items())  # read back, not scored again
    _assert_same_shards(_shards(out), _shards(serial))
    assert _result(out) == _result(serial)
    # The seconds of the whole run: the killed run's two shards and the resumed run's two.
    seconds = []
    for path in sorted((out / "shards" / "plain").iterdir()):
        with safe_open(path, framework="pt") as handle:
            seconds.append(float(handle.metadata()["seconds"]))
    assert len(seconds) == 4 and min(seconds) > 0
    assert json.loads((out / "hijack.json").read_text())["shard_seconds"] == pytest.approx(sum(seconds))


@needs_counterfact
def test_two_ray_workers_give_the_serial_result_exactly(gpt2_folder, serial, tmp_path):
    pytest.importorskip("ray")
    out = tmp_path / "ray"
    assert main(_argv(gpt2_folder, out, "--workers", "2")) == 0
    _assert_same_shards(_shards(out), _shards(serial))
    assert _result(out) == _result(serial)
    for path in (out / "shards" / "plain").iterdir():
        with safe_open(path, framework="pt") as handle:
            assert handle.metadata()["threads"] == "1"  # one CPU per actor


@needs_counterfact
def test_a_cluster_that_refuses_the_client_names_ray_token_auth(gpt2_folder, tmp_path, monkeypatch, capsys):
    """Ray 2.60's `ray start --head` asks clients for a token; without RAY_AUTH_MODE=token the
    join only says it failed to connect, so the error says what to set."""
    ray = pytest.importorskip("ray")

    def refused(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")

    monkeypatch.setattr(ray, "init", refused)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert main(_argv(gpt2_folder, tmp_path / "out", "--workers", "2", "--ray-address", "127.0.0.1:6390")) == 2
    assert ("lca-interp hijack: error: Failed to connect to Ray cluster at 127.0.0.1:6390; a cluster started with "
            "`ray start --head` asks clients for its token: set RAY_AUTH_MODE=token.\n") in capsys.readouterr().err


@needs_counterfact
def test_shards_of_other_settings_are_refused_and_left_as_they_were(gpt2_folder, serial, capsys):
    before = {path: path.read_bytes() for path in serial.rglob("*") if path.is_file()}
    assert main(_argv(gpt2_folder, serial, "--max-prepends", "1")) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"lca-interp hijack: error: {serial / 'shards' / 'plain' / '000000-000003.safetensors'} was "
                            "written by a run with other settings (max_prepends); rerun with the same settings")
    assert {path: path.read_bytes() for path in serial.rglob("*") if path.is_file()} == before


@pytest.mark.parametrize("flags, message", [
    (["--workers", "0"], "workers must be ≥ 1, got 0."),
    (["--shard-size", "0"], "the shard size must be ≥ 1 fact, got 0."),
    (["--device", "tpu"], "unknown device 'tpu': pass cpu, cuda, cuda:N or mps."),
    pytest.param(["--device", "cuda"], "device 'cuda' was asked for but torch sees no CUDA GPU here; pass --device cpu.",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_bad_scale_flags_get_one_sentence_and_write_nothing(gpt2_folder, tmp_path, capsys, flags, message):
    data = tmp_path / "facts.json"
    data.write_text(json.dumps([{"case_id": 0, "requested_rewrite": {
        "prompt": "{} is located in the city of", "subject": "The Eiffel Tower", "target_true": {"str": "Paris"},
        "target_new": {"str": "Chicago"}}}]))
    out = tmp_path / "out"
    assert main(["hijack", "--model", str(gpt2_folder), "--dataset", str(data), "--out", str(out), *flags]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"lca-interp hijack: error: {message}"
    assert not out.exists()


def test_bfloat16_runs_end_to_end_close_to_float32_and_says_so(gpt2_folder, tmp_path):
    data = tmp_path / "facts.json"
    data.write_text(json.dumps([{"case_id": 0, "requested_rewrite": {
        "prompt": "{} is located in the city of", "subject": "The Eiffel Tower", "target_true": {"str": "Paris"},
        "target_new": {"str": "Chicago"}}}]))
    log_probs = {}
    for dtype in ("float32", "bfloat16"):
        assert main(["hijack", "--model", str(gpt2_folder), "--dataset", str(data), "--max-prepends", "1", "--dtype", dtype,
                     "--device", "cpu", "--out", str(tmp_path / dtype)]) == 0
        result = json.loads((tmp_path / dtype / "hijack.json").read_text())
        assert result["model_source"]["dtype"] == dtype and result["model_source"]["device"] == "cpu"
        log_probs[dtype] = load_file(tmp_path / dtype / "shards" / "plain" / "000000-000001.safetensors")["log_prob"]
    assert not torch.equal(log_probs["bfloat16"], log_probs["float32"])  # it did run in bfloat16
    torch.testing.assert_close(log_probs["bfloat16"], log_probs["float32"], rtol=0.02, atol=0.0)


@needs_counterfact
@needs_gemma
def test_the_committed_full_counterfact_shards_still_match_their_run(gemma):
    """`results/counterfact_full` resumes from its committed shards: settings added since (mixed
    precision's bound) must not make them another run's."""
    from lca_interp.evals.hijack import HijackScoring, ShardPlan
    from lca_interp.facts import load_facts
    from lca_interp.facts.relations import with_relation_ids

    folder = Path(__file__).resolve().parents[1] / "results" / "counterfact_full" / "gemma-3-270m" / "generic-float32" / "shards"
    facts = with_relation_ids(load_facts(str(COUNTERFACT)).facts)
    done = ShardPlan(folder).finished(gemma, facts, HijackScoring("generic", 4))
    assert len(done) == 110 and sorted(done)[-1] == (21800, len(facts))
