"""The command line as a user runs it: outputs written, bad input refused in one sentence."""

from __future__ import annotations

import importlib.metadata
import json

import pytest

from lca_interp.cli import main


def test_train_writes_model_config_metrics_and_figure(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--m", "4", "--context-len", "8", "--d-model", "8", "--steps", "20",
                 "--eval-samples", "500", "--neighbourhood", "hamming1", "--freeze-wv", "--out", str(out)])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "config.json", "metrics.json", "training.png"}
    assert (out / "training.png").stat().st_size > 5_000
    config = json.loads((out / "config.json").read_text())
    assert config["task"]["neighbourhood"] == "hamming1" and config["toy"]["freeze_wv"] is True
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 20 and 0 <= metrics["accuracy"] <= 1
    assert "Bayes ceiling" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [
        ["--m", "0", "--context-len", "8", "--d-model", "8"],
        ["--m", "4", "--context-len", "0", "--d-model", "8"],
        ["--m", "4", "--context-len", "8", "--d-model", "8", "--omega", "2"],
        ["--m", "4", "--context-len", "8", "--d-model", "8", "--beta", "0"],
        ["--m", "4", "--context-len", "8", "--d-model", "0"],
        ["--m", "4", "--context-len", "8", "--d-model", "8", "--steps", "0"],
        ["--m", "1", "--context-len", "8", "--d-model", "8", "--neighbourhood", "cluster1"],
        ["--m", "4", "--context-len", "8", "--d-model", "8", "--device", "tpu"],
    ],
)
def test_train_refuses_bad_input_with_one_sentence_and_no_files(tmp_path, capsys, argv):
    out = tmp_path / "run"
    assert main(["train", *argv, "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip()
    assert message.startswith("lca-interp train: error: ") and message.count("\n") == 0
    assert not out.exists()


def test_reproduce_single_claim(tmp_path, capsys):
    assert main(["reproduce", "--quick", "--seeds", "1", "--claims", "T2", "--out", str(tmp_path)]) == 0
    assert "T2  holds" in capsys.readouterr().out
    assert [c["id"] for c in json.loads((tmp_path / "claims.json").read_text())["claims"]] == ["T2"]


def test_report_redraws_every_result_from_its_json_alone(tmp_path, capsys, monkeypatch):
    assert main(["reproduce", "--quick", "--seeds", "1", "--claims", "T2", "--out", str(tmp_path / "claims")]) == 0
    assert main(["train", "--m", "3", "--context-len", "6", "--d-model", "8", "--steps", "10", "--eval-samples", "100",
                 "--out", str(tmp_path / "toy")]) == 0
    drawn = [tmp_path / "claims" / "T2.png", tmp_path / "claims" / "report.html", tmp_path / "toy" / "training.png"]
    for path in drawn:
        path.unlink()
    import lca_interp.evals.claims.zoo as zoo

    monkeypatch.setattr(zoo, "load_toy", lambda *a: pytest.fail("the report loaded a model"))
    capsys.readouterr()
    assert main(["report", str(tmp_path)]) == 0
    assert all(path.exists() for path in drawn)
    assert "redrew 2 results" in capsys.readouterr().out


def test_report_refuses_a_folder_without_results(tmp_path, capsys):
    (tmp_path / "notes.json").write_text('{"not": "a result"}')
    assert main(["report", str(tmp_path)]) == 2
    assert main(["report", str(tmp_path / "missing")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and all(line.startswith("lca-interp report: error: ") for line in errors)


def test_train_to_the_plateau_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--m", "3", "--context-len", "6", "--d-model", "8", "--steps", "3000", "--lr", "0.03",
                 "--plateau-window", "60", "--eval-samples", "300", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["plateaued"] and metrics["steps"] < 3000 and "(plateau)" in capsys.readouterr().out


def test_reproduce_unknown_claim_is_refused(tmp_path, capsys):
    assert main(["reproduce", "--quick", "--claims", "C99", "--out", str(tmp_path / "r")]) == 2
    assert "unknown claim" in capsys.readouterr().err


def test_compare_puts_two_models_side_by_side_from_their_json(gpt2_folder, tmp_path, capsys):
    records = [{"case_id": i, "requested_rewrite": {"prompt": "{} is located in the city of", "subject": s,
                "target_true": {"str": t}, "target_new": {"str": f}}}
               for i, (s, t, f) in enumerate([("The Eiffel Tower", "Paris", "Chicago"), ("Big Ben", "London", "Rome")])]
    data = tmp_path / "facts.json"
    data.write_text(json.dumps(records))
    for name in ("a", "b"):
        model = tmp_path / f"model-{name}"
        model.symlink_to(gpt2_folder, target_is_directory=True)
        for scheme in ("generic", "negation"):
            assert main(["hijack", "--model", str(model), "--dataset", str(data), "--scheme", scheme, "--max-prepends", "1",
                         "--out", str(tmp_path / f"results-{name}" / scheme)]) == 0
    out = tmp_path / "compare"
    assert main(["compare", str(tmp_path / "results-a"), str(tmp_path / "results-b"), "--out", str(out)]) == 0
    page = (out / "compare.html").read_text()
    assert str(tmp_path / "model-a") in page and str(tmp_path / "model-b") in page
    assert page.count("data:image/png;base64") == 1  # the ES panels; no recall or anatomy here
    assert (out / "es_by_scheme.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the same panels, for a README
    findings = (out / "findings.md").read_text().splitlines()
    assert findings[0] == f"| finding | {tmp_path / 'model-a'} | {tmp_path / 'model-b'} |" and len(findings) == 2 + 2
    for name, column in (("a", 1), ("b", 2)):
        for scheme in ("generic", "negation"):
            es = json.loads((tmp_path / f"results-{name}" / scheme / "hijack.json").read_text())["efficacy_score"]
            row = next(line for line in findings if f" {scheme} scheme" in line).split(" | ")
            assert row[column].startswith(f"{es[0]:.3f} → {es[-1]:.3f} (")
    assert main(["compare", str(tmp_path / "nothing"), "--out", str(out)]) == 2


def test_findings_call_a_change_only_where_the_intervals_separate_and_use_the_largest_run():
    from lca_interp.report.compare import findings

    def hijack(es, low, high):
        return {"kind": "hijack", "scheme": "generic", "n": 9, "k": [0, 1], "efficacy_score": es, "ci_low": low, "ci_high": high,
                "efficacy_score_per_token": es, "ci_low_per_token": low, "ci_high_per_token": [1.0, 1.0]}

    subset = {**hijack([0.5, 0.5], [0.0, 0.0], [1.0, 1.0]), "n": 3}  # e.g. an anatomy run's facts: not the headline
    rows = findings({"m1": {"hijack": [subset, hijack([0.2, 0.8], [0.1, 0.7], [0.3, 0.9])]},
                     "m2": {"hijack": [hijack([0.2, 0.3], [0.1, 0.2], [0.3, 0.4]), subset]}})
    assert rows == [{"finding": "paper A: ES(0) → ES(K), generic scheme",
                     "m1": "0.200 → 0.800 (rises); per token 0.200 → 0.800 (no clear change) [n = 9, K = 1]",
                     "m2": "0.200 → 0.300 (no clear change); per token 0.200 → 0.300 (no clear change) [n = 9, K = 1]"}]


def test_a_failed_write_names_the_file_and_leaves_the_previous_result_whole(gpt2_folder, tmp_path, capsys, monkeypatch):
    import errno

    import matplotlib.figure

    records = [{"case_id": 0, "requested_rewrite": {"prompt": "{} is located in the city of", "subject": "The Eiffel Tower",
                "target_true": {"str": "Paris"}, "target_new": {"str": "Chicago"}}}]
    data = tmp_path / "facts.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "out"
    argv = ["hijack", "--model", str(gpt2_folder), "--dataset", str(data), "--max-prepends", "1", "--out", str(out)]
    assert main(argv) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", disk_full)
    assert main([*argv, "--seed", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert error == f"lca-interp hijack: error: could not write {out / 'hijack.png'}: No space left on device."
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before  # old JSON and figure, no temporary files


def test_every_result_says_what_produced_it(gpt2_folder, tmp_path):
    records = [{"case_id": 0, "requested_rewrite": {"prompt": "{} is located in the city of", "subject": "The Eiffel Tower",
                "target_true": {"str": "Paris"}, "target_new": {"str": "Chicago"}}}]
    data = tmp_path / "facts.json"
    data.write_text(json.dumps(records))
    assert main(["hijack", "--model", str(gpt2_folder), "--dataset", str(data), "--max-prepends", "1", "--seed", "7",
                 "--out", str(tmp_path / "hijack")]) == 0
    assert main(["reproduce", "--quick", "--seeds", "1", "--claims", "T2", "--out", str(tmp_path / "claims")]) == 0
    assert main(["train", "--m", "3", "--context-len", "6", "--d-model", "8", "--steps", "5", "--eval-samples", "50",
                 "--out", str(tmp_path / "toy")]) == 0
    for path in [tmp_path / "hijack" / "hijack.json", tmp_path / "claims" / "claims.json", tmp_path / "toy" / "metrics.json",
                 tmp_path / "toy" / "config.json"]:
        provenance = json.loads(path.read_text())["provenance"]
        installed = importlib.metadata.version("transformer-lens")
        assert provenance["versions"]["torch"] and provenance["versions"]["transformer-lens"] == installed, path
        assert installed.startswith(("3.9", "4.")), installed
        assert "git_commit" in provenance and provenance["python"] and provenance["written"], path
    hijack = json.loads((tmp_path / "hijack" / "hijack.json").read_text())
    assert hijack["provenance"]["settings"]["seed"] == 7 and hijack["provenance"]["settings"]["scheme"] == "generic"
    assert hijack["model_source"]["prepends_bos"] is False and hijack["model_source"]["dtype"] == "float32"
    assert hijack["seconds"] > 0
