"""Training: it learns, it is reproducible, its files round-trip, and resuming is exact."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors import safe_open

from lca_interp.runs import load_toy, save_run
from lca_interp.task import LCATask
from lca_interp.toy import ToyConfig
from lca_interp.training import TrainConfig, eval_set, evaluate, train

CHECKPOINT = "checkpoint.safetensors"


@pytest.fixture
def task() -> LCATask:
    return LCATask(m=3, omega=0.5, beta=1.0, context_len=8)


@pytest.fixture
def toy_config() -> ToyConfig:
    return ToyConfig(d_vocab=8, d_model=16, n_ctx=8, seed=0)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module, atol: float = 0.0) -> None:
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for name in pa:
        if atol == 0.0:
            assert torch.equal(pa[name], pb[name]), name
        else:
            assert (pa[name] - pb[name]).abs().max().item() <= atol, name


@pytest.mark.slow
def test_training_reaches_90_percent_of_bayes_accuracy():
    task = LCATask(m=5, omega=0.5, beta=1.0, context_len=32)
    toy_config = ToyConfig(d_vocab=32, d_model=64, n_ctx=32, seed=0)
    config = TrainConfig(
        steps=500, batch_size=128, lr=5e-3, eval_every=100, eval_samples=4000, checkpoint_every=0
    )
    result = train(task, toy_config, config, progress=False)
    metrics = result.metrics
    assert 1 / 32 < metrics["bayes_accuracy"] <= 1.0
    assert metrics["accuracy"] >= 0.9 * metrics["bayes_accuracy"], metrics
    # It learned: eval accuracy rose and the loss is far below the uniform guess, log V.
    assert result.history[-1]["accuracy"] > result.history[0]["accuracy"]
    assert metrics["loss"] < 0.6 * math.log(32)
    assert [h["step"] for h in result.history] == [100, 200, 300, 400, 500]


def test_same_seed_gives_bitwise_identical_weights(task, toy_config, quick_train_config):
    a = train(task, toy_config, quick_train_config, progress=False)
    b = train(task, toy_config, quick_train_config, progress=False)
    assert_same_weights(a.model, b.model)
    assert a.metrics["accuracy"] == b.metrics["accuracy"] and a.metrics["loss"] == b.metrics["loss"]
    assert a.history == b.history
    # Controls: another data seed, or another init seed, gives other weights.
    other_data = TrainConfig(**{**quick_train_config.to_dict(), "seed": 1})
    c = train(task, toy_config, other_data, progress=False)
    other_init = ToyConfig(**{**toy_config.to_dict(), "seed": 1})
    d = train(task, other_init, quick_train_config, progress=False)
    for other in (c, d):
        assert not torch.equal(a.model.W_E, other.model.W_E)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here: the GPU path is checked where one exists")
def test_a_toy_trains_on_the_gpu_from_the_same_data_as_on_the_cpu(task, toy_config, quick_train_config, tmp_path):
    cpu = train(task, toy_config, quick_train_config, progress=False)
    gpu = train(task, toy_config, quick_train_config, out_dir=tmp_path, progress=False, device="cuda")
    assert gpu.model.W_E.device.type == "cuda"
    assert_same_weights(cpu.model, gpu.model.cpu(), atol=1e-3)  # other kernels: float rounding only
    assert load_toy(tmp_path)[0].W_E.device.type == "cpu"  # a saved toy loads anywhere


def test_save_run_then_load_toy_round_trip(tmp_path, task, quick_train_config):
    toy_config = ToyConfig(d_vocab=8, d_model=16, n_ctx=8, freeze_wv=True, seed=4)
    result = train(task, toy_config, quick_train_config, progress=False)
    save_run(tmp_path / "run", result.model, task, quick_train_config, result.metrics)
    model, loaded_task = load_toy(tmp_path / "run")

    assert_same_weights(result.model, model)
    assert model.toy_cfg == toy_config
    assert loaded_task.to_dict() == task.to_dict()
    assert torch.equal(loaded_task.p, task.p)
    x, _ = task.sample(64, seed=123)
    assert torch.equal(model(x), result.model(x))
    assert torch.equal(model(x, last_position_only=True), result.model(x, last_position_only=True))
    # Structure survives too: tying, constant W_O, frozen flags.
    assert model.W_U.data_ptr() == model.W_E.data_ptr()
    assert torch.equal(model.W_O, torch.eye(16)[None, None])
    assert not model.blocks[0].attn.W_V.requires_grad and model.embed.W_E.requires_grad


def test_train_with_out_dir_writes_a_loadable_run_and_metrics(
    tmp_path, task, toy_config, quick_train_config
):
    out = tmp_path / "run"
    result = train(task, toy_config, quick_train_config, out_dir=out, progress=False)
    model, loaded_task = load_toy(out)
    assert_same_weights(result.model, model)

    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("accuracy", "bayes_accuracy", "loss", "steps", "train_seconds"):
        assert key in metrics, key
    assert metrics["steps"] == quick_train_config.steps
    assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 < metrics["bayes_accuracy"] <= 1.0
    assert math.isfinite(metrics["loss"]) and metrics["loss"] > 0
    assert metrics["train_seconds"] >= 0
    assert metrics["resumed_from_step"] == 0
    # The numbers are what they claim to be, recomputed from the saved files.
    x_eval, y_eval = eval_set(loaded_task, quick_train_config)
    accuracy, loss = evaluate(model, x_eval, y_eval)
    assert metrics["accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert metrics["loss"] == pytest.approx(loss, rel=1e-5)
    bayes = loaded_task.bayes_accuracy(x_eval, y_eval)
    assert metrics["bayes_accuracy"] == pytest.approx(bayes, abs=1e-12)
    assert [h["step"] for h in metrics["history"]] == [5, 10, 15, 20]

    config = json.loads((out / "config.json").read_text())
    assert config["task"] == task.to_dict()
    assert config["toy"] == toy_config.to_dict()
    assert TrainConfig.from_dict(config["train"]) == quick_train_config


def test_run_folder_holds_no_pickle(tmp_path, task, toy_config, quick_train_config):
    out = tmp_path / "run"
    train(task, toy_config, quick_train_config, out_dir=out, progress=False)
    files = sorted(p.name for p in out.rglob("*"))
    assert files == ["checkpoint.safetensors", "config.json", "metrics.json", "model.safetensors"]
    for path in out.rglob("*"):
        head = path.read_bytes()[:2]
        assert head[:1] != b"\x80" and head != b"PK", path  # pickle protocol / torch.save zip
        if path.suffix == ".safetensors":
            with safe_open(path, framework="pt") as handle:
                assert len(list(handle.keys())) > 0
        else:
            json.loads(path.read_text())


def _interrupting_sample(monkeypatch, batch_size: int, crash_at_step: int) -> None:
    """Make LCATask.sample raise when the training batch of step `crash_at_step` is drawn."""
    original = LCATask.sample
    calls = {"train": 0}

    def sample(self, n, seed):
        if n == batch_size:
            if calls["train"] == crash_at_step:
                raise RuntimeError(f"simulated crash at step {crash_at_step}")
            calls["train"] += 1
        return original(self, n, seed)

    monkeypatch.setattr(LCATask, "sample", sample)


@pytest.mark.parametrize(
    "frozen", [{}, {"freeze_wv": True}, {"freeze_embed": True}], ids=["none", "W_V", "W_E"]
)
def test_interrupted_run_resumes_to_the_uninterrupted_weights(
    tmp_path, monkeypatch, task, toy_config, quick_train_config, frozen
):
    toy_config = ToyConfig(**{**toy_config.to_dict(), **frozen})
    config = quick_train_config  # steps=20, checkpoint_every=10
    a = train(task, toy_config, config, out_dir=tmp_path / "a", progress=False)

    b_dir = tmp_path / "b"
    with monkeypatch.context() as patch:
        _interrupting_sample(patch, config.batch_size, crash_at_step=15)
        with pytest.raises(RuntimeError, match="simulated crash at step 15"):
            train(task, toy_config, config, out_dir=b_dir, progress=False)
    assert sorted(p.name for p in b_dir.iterdir()) == [CHECKPOINT]  # only the step-10 checkpoint
    with safe_open(b_dir / CHECKPOINT, framework="pt") as handle:
        assert handle.metadata()["step"] == "10"

    b = train(task, toy_config, config, out_dir=b_dir, progress=False)
    assert b.metrics["resumed_from_step"] == 10
    assert a.metrics["resumed_from_step"] == 0
    assert_same_weights(a.model, b.model, atol=1e-6)
    assert [h["step"] for h in b.history] == [h["step"] for h in a.history] == [5, 10, 15, 20]
    assert b.metrics["accuracy"] == pytest.approx(a.metrics["accuracy"], abs=1e-9)
    model_b, _ = load_toy(b_dir)
    assert_same_weights(a.model, model_b, atol=1e-6)


def test_a_run_can_be_extended_with_more_steps(tmp_path, task, toy_config, quick_train_config):
    full = train(task, toy_config, quick_train_config, progress=False)
    short = TrainConfig(**{**quick_train_config.to_dict(), "steps": 10})
    train(task, toy_config, short, out_dir=tmp_path, progress=False)
    extended = train(task, toy_config, quick_train_config, out_dir=tmp_path, progress=False)
    assert extended.metrics["resumed_from_step"] == 10
    assert_same_weights(full.model, extended.model, atol=1e-6)


def test_checkpoint_from_other_settings_is_refused(tmp_path, task, toy_config, quick_train_config):
    train(task, toy_config, quick_train_config, out_dir=tmp_path, progress=False)
    before = (tmp_path / CHECKPOINT).read_bytes()
    other_lr = TrainConfig(**{**quick_train_config.to_dict(), "lr": 1e-3})
    other_task = LCATask(m=3, omega=0.6, beta=1.0, context_len=8)
    other_toy = ToyConfig(**{**toy_config.to_dict(), "seed": 7})
    fewer_steps = TrainConfig(**{**quick_train_config.to_dict(), "steps": 10})
    for args in (
        (task, toy_config, other_lr),
        (other_task, toy_config, quick_train_config),
        (task, other_toy, quick_train_config),
        (task, toy_config, fewer_steps),  # checkpoint is past the requested end
    ):
        with pytest.raises(ValueError):
            train(*args, out_dir=tmp_path, progress=False)
    assert (tmp_path / CHECKPOINT).read_bytes() == before  # refused before touching anything


def test_load_toy_on_missing_folder_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_toy(tmp_path / "does-not-exist")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError):
        load_toy(tmp_path / "half")  # no model.safetensors


def test_vocabulary_mismatch_is_refused(task, quick_train_config):
    with pytest.raises(ValueError):
        train(task, ToyConfig(d_vocab=16, d_model=8, n_ctx=8), quick_train_config, progress=False)


@pytest.mark.parametrize(
    "kwargs",
    [dict(steps=0), dict(batch_size=-1), dict(lr=0.0), dict(lr=-1e-3), dict(weight_decay=-0.1),
     dict(checkpoint_every=-1), dict(eval_every=0), dict(eval_samples=0)],
)
def test_train_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        TrainConfig(**kwargs)


def test_integer_valued_lr_and_weight_decay_are_accepted():
    """lr = 1 and weight_decay = 0 are valid values; writing them as ints must not change that."""
    config = TrainConfig(lr=1, weight_decay=0)
    assert config.lr == 1.0 and config.weight_decay == 0.0


def test_training_time_adds_up_over_resumed_sessions(tmp_path, task, toy_config, quick_train_config):
    first = train(task, toy_config, quick_train_config, out_dir=tmp_path, progress=False)
    again = train(task, toy_config, quick_train_config, out_dir=tmp_path, progress=False)
    # Nothing left to train: the second session reports the first one's time (as of its last
    # checkpoint, so less the final checkpoint write), not ~0 s.
    assert again.metrics["resumed_from_step"] == quick_train_config.steps
    assert again.metrics["train_seconds"] >= first.metrics["train_seconds"] * 0.5
    assert torch.equal(again.model.W_E, first.model.W_E)
