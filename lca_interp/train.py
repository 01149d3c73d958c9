"""Training the LCA toy: AdamW on last-position cross-entropy, fresh samples every step.

Context
-------
Every batch is a fresh draw from the task, so there is no dataset, only a seed: the batch of step
s is drawn from a generator seeded by (seed, s). That makes resuming trivial and exact: a
checkpoint needs the weights, AdamW's moment estimates and the step, nothing else. Evaluation uses
one fixed set of fresh samples from a separate stream, on which the Bayes-optimal accuracy (the
ceiling of `lca_interp.task`) is computed once and reported beside the model's.

Files (no pickle anywhere): a checkpoint is one safetensors file holding the model weights, the
optimizer state and, in its metadata, the step and the history so far, written atomically so an
interrupted run always resumes from a whole checkpoint. A finished run is `model.safetensors`,
`config.json` (task, toy and training settings plus library versions) and `metrics.json`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Int
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm

from lca_interp import artifacts
from lca_interp.config import Config
from lca_interp.task import LCATask
from lca_interp.toy import LCAToy, ToyConfig

CHECKPOINT_FILE = "checkpoint.safetensors"
_TRAIN_STREAM, _EVAL_STREAM = 0, 1


def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from a tuple of integers (e.g. (seed, stream, step)).

    The length leads the entropy because SeedSequence ignores trailing zeros: (s, 0) ≠ (s,).
    """
    entropy = [len(keys), *(int(k) for k in keys)]
    return int(np.random.SeedSequence(entropy).generate_state(2, np.uint64)[0] >> 1)


@dataclass(frozen=True)
class TrainConfig(Config):
    """AdamW settings, schedule of evaluation and checkpoints, and the data seed."""

    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 250
    eval_samples: int = 10_000
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        self.require_positive_ints("steps", "batch_size", "eval_every", "eval_samples")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be ≥ 0 (0: never), got {self.checkpoint_every}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {self.weight_decay!r}.")


@dataclass
class TrainResult:
    """The trained model and its measurements; `metrics` is what `metrics.json` holds."""

    model: LCAToy
    task: LCATask
    config: TrainConfig
    metrics: dict
    history: list[dict] = field(default_factory=list)


@torch.no_grad()
def evaluate(
    model: LCAToy, x: Int[Tensor, "batch L"], y: Int[Tensor, "batch"]
) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the model's last-position prediction."""
    chunk = max(16, 2**17 // x.shape[1])  # bounds activation memory for long contexts
    correct, loss = 0.0, 0.0
    for start in range(0, len(y), chunk):
        logits = model(x[start : start + chunk], last_position_only=True)
        target = y[start : start + chunk]
        correct += (logits.argmax(-1) == target).sum().item()
        loss += F.cross_entropy(logits, target, reduction="sum").item()
    return correct / len(y), loss / len(y)


def eval_set(task: LCATask, config: TrainConfig) -> tuple[Int[Tensor, "n L"], Int[Tensor, "n"]]:
    """The fixed held-out samples of a run (a stream disjoint from the training batches)."""
    return task.sample(config.eval_samples, derive_seed(config.seed, _EVAL_STREAM))


def train(
    task: LCATask,
    toy_config: ToyConfig,
    config: TrainConfig,
    out_dir: Optional[str | Path] = None,
    progress: bool = True,
) -> TrainResult:
    """Train a fresh toy on `task`; with `out_dir`, checkpoint there and resume from it if present.

    Resuming continues from the checkpoint's step with the same batches, so an interrupted and
    resumed run ends with the weights an uninterrupted one would have.
    """
    if toy_config.d_vocab != task.vocab_size:
        raise ValueError(
            f"toy vocabulary {toy_config.d_vocab} does not match the task's V = {task.vocab_size}."
        )
    model = LCAToy(toy_config)
    params = dict(model.named_parameters())
    trainable = {name: p for name, p in params.items() if p.requires_grad}
    optimizer = torch.optim.AdamW(
        list(trainable.values()), lr=config.lr, weight_decay=config.weight_decay
    )
    start_step, history, earlier_seconds = 0, [], 0.0
    checkpoint = Path(out_dir) / CHECKPOINT_FILE if out_dir is not None else None
    # The schedule (steps, evaluation, checkpoints) may change on resume; nothing else may.
    settings = {**run_config(task, toy_config, config), "versions": None}
    schedule = {"steps": None, "eval_every": None, "checkpoint_every": None}
    settings["train"] = {**settings["train"], **schedule}
    if checkpoint is not None and checkpoint.exists():
        start_step, history, earlier_seconds = _load_checkpoint(
            checkpoint, model, optimizer, trainable, config, settings
        )

    x_eval, y_eval = eval_set(task, config)
    bayes_accuracy = task.bayes_accuracy(x_eval, y_eval)
    began = time.perf_counter()
    bar = tqdm(
        range(start_step, config.steps),
        initial=start_step,
        total=config.steps,
        desc="train",
        disable=not progress,
    )
    for step in bar:
        x, y = task.sample(config.batch_size, derive_seed(config.seed, _TRAIN_STREAM, step))
        loss = F.cross_entropy(model(x, last_position_only=True), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        done = step + 1
        if done % config.eval_every == 0 or done == config.steps:
            accuracy, eval_loss = evaluate(model, x_eval, y_eval)
            history.append(
                {"step": done, "train_loss": loss.item(), "loss": eval_loss, "accuracy": accuracy}
            )
            bar.set_postfix(loss=f"{eval_loss:.3f}", acc=f"{accuracy:.3f}", bayes=f"{bayes_accuracy:.3f}")
        periodic = config.checkpoint_every and done % config.checkpoint_every == 0
        if checkpoint is not None and (periodic or done == config.steps):
            seconds = earlier_seconds + time.perf_counter() - began
            _save_checkpoint(checkpoint, model, optimizer, trainable, done, history, seconds, settings)
    train_seconds = earlier_seconds + time.perf_counter() - began  # summed over resumed sessions

    accuracy, eval_loss = evaluate(model, x_eval, y_eval)
    metrics = {
        "accuracy": accuracy,
        "bayes_accuracy": bayes_accuracy,
        "loss": eval_loss,
        "eval_samples": config.eval_samples,
        "steps": config.steps,
        "resumed_from_step": start_step,
        "train_seconds": train_seconds,
    }
    result = TrainResult(model=model, task=task, config=config, metrics=metrics, history=history)
    if out_dir is not None:
        save_run(out_dir, result)
    return result


# ---------------------------------------------------------------------- files


def run_config(task: LCATask, toy_config: ToyConfig, config: Optional[TrainConfig]) -> dict:
    """config.json: every setting needed to rebuild the task and the model, plus provenance."""
    import transformer_lens

    from lca_interp import __version__

    return {
        "task": task.to_dict(),
        "toy": toy_config.to_dict(),
        "train": config.to_dict() if config is not None else None,
        "versions": {
            "lca_interp": __version__,
            "torch": torch.__version__,
            "transformer_lens": getattr(transformer_lens, "__version__", "unknown"),
        },
    }


def save_run(out_dir: str | Path, result: TrainResult) -> None:
    """Write model.safetensors, config.json and metrics.json (each atomically)."""
    out = Path(out_dir)
    artifacts.save_tensors(out / "model.safetensors", dict(result.model.named_parameters()))
    artifacts.write_json(out / "config.json", run_config(result.task, result.model.toy_cfg, result.config))
    artifacts.write_json(out / "metrics.json", {**result.metrics, "history": result.history})


def load_toy(run_dir: str | Path) -> tuple[LCAToy, LCATask]:
    """Rebuild a trained toy and its task from a run folder written by `save_run`."""
    run = Path(run_dir)
    config_path, weights_path = run / "config.json", run / "model.safetensors"
    for path in (config_path, weights_path):
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing; pass a folder written by `lca-interp train`.")
    try:
        config = json.loads(config_path.read_text())
        task = LCATask.from_dict(config["task"])
        model = LCAToy(ToyConfig.from_dict(config["toy"]))
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{config_path} is not a valid lca-interp run config ({error}).") from None
    _load_weights(model, load_file(weights_path), str(weights_path))
    return model, task


def _load_weights(model: LCAToy, tensors: dict[str, Tensor], source: str) -> None:
    params = dict(model.named_parameters())
    if set(tensors) != set(params):
        raise ValueError(
            f"{source} holds {sorted(tensors)} but the model expects {sorted(params)}."
        )
    with torch.no_grad():
        for name, param in params.items():
            if tensors[name].shape != param.shape:
                raise ValueError(
                    f"{source}: {name} has shape {tuple(tensors[name].shape)}, expected "
                    f"{tuple(param.shape)}."
                )
            param.copy_(tensors[name])


def _save_checkpoint(
    path: Path,
    model: LCAToy,
    optimizer: torch.optim.Optimizer,
    trainable: dict[str, torch.nn.Parameter],
    step: int,
    history: list[dict],
    train_seconds: float,
    settings: dict,
) -> None:
    tensors = {f"model.{name}": p for name, p in model.named_parameters()}
    state = optimizer.state_dict()["state"]
    for index, name in enumerate(trainable):
        for key, value in state.get(index, {}).items():
            tensors[f"optim.{name}.{key}"] = torch.as_tensor(value)
    metadata = {
        "step": str(step),
        "history": json.dumps(history),
        "train_seconds": repr(train_seconds),
        "settings": json.dumps(settings),
    }
    artifacts.save_tensors(path, tensors, metadata)


def _load_checkpoint(
    path: Path,
    model: LCAToy,
    optimizer: torch.optim.Optimizer,
    trainable: dict[str, torch.nn.Parameter],
    config: TrainConfig,
    settings: dict,
) -> tuple[int, list[dict], float]:
    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    if json.loads(metadata.get("settings", "null")) != settings:
        raise ValueError(
            f"{path} was written by a run with other settings; resume with the same settings or "
            "use another output folder."
        )
    tensors = load_file(path)
    _load_weights(
        model,
        {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")},
        str(path),
    )
    state: dict[int, dict[str, Tensor]] = {}
    for index, name in enumerate(trainable):
        prefix = f"optim.{name}."
        entries = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        if entries:
            state[index] = entries
    optimizer.load_state_dict({"state": state, "param_groups": optimizer.state_dict()["param_groups"]})
    step = int(metadata.get("step", 0))
    if step > config.steps:
        raise ValueError(f"{path} is at step {step}, past the requested {config.steps} steps.")
    return step, json.loads(metadata.get("history", "[]")), float(metadata.get("train_seconds", 0.0))
