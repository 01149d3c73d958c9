"""A trained toy's folder: its weights, settings, measurements and resumable checkpoint.

Files (no pickle anywhere), each written atomically:

- `model.safetensors`: the toy's parameters;
- `config.json`: the task, the toy and the training settings, plus library versions;
- `metrics.json`: held-out accuracy beside the Bayes ceiling, steps, time, evaluation history
  (kind "training": `lca_interp.report` draws it as `training.png`);
- `checkpoint.safetensors` while training: weights, AdamW moments and, in its metadata, the step,
  the history and the settings it was written with (a checkpoint from other settings is refused).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

from lca_interp import artifacts
from lca_interp.task import LCATask
from lca_interp.toy import LCAToy, ToyConfig

CHECKPOINT_FILE = "checkpoint.safetensors"


def settings_of(task: LCATask, toy: ToyConfig, config) -> dict:
    """Every setting needed to rebuild the task and the model and to repeat the training (the
    sampler included: the same seed draws other batches under another one)."""
    return {"task": task.to_dict(), "toy": toy.to_dict(), "train": config.to_dict() if config is not None else None,
            "sampler": task.sampler}


def run_config(task: LCATask, toy: ToyConfig, config) -> dict:
    """config.json: the settings plus what ran them (library versions, git commit, command)."""
    from lca_interp.provenance import provenance

    return {**settings_of(task, toy, config), "provenance": provenance()}


def save_run(out_dir: str | Path, model: LCAToy, task: LCATask, config, metrics: dict) -> None:
    """Write model.safetensors, config.json and metrics.json."""
    out = Path(out_dir)
    artifacts.save_tensors(out / "model.safetensors", dict(model.named_parameters()))
    artifacts.write_json(out / "config.json", run_config(task, model.toy_cfg, config))
    from lca_interp.provenance import provenance

    artifacts.write_json(out / "metrics.json", {"kind": "training", **metrics, "provenance": provenance()})


def is_run_folder(path: str | Path) -> bool:
    """Whether `path` is a folder written by `save_run` (a trained toy), not an LLM folder."""
    config = Path(path) / "config.json"
    try:
        return config.is_file() and "task" in json.loads(config.read_text())
    except (OSError, ValueError):
        return False


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
    _copy_weights(model, load_file(weights_path), str(weights_path))
    return model, task


def _copy_weights(model: LCAToy, tensors: dict[str, Tensor], source: str) -> None:
    params = dict(model.named_parameters())
    if set(tensors) != set(params):
        raise ValueError(f"{source} holds {sorted(tensors)} but the model expects {sorted(params)}.")
    with torch.no_grad():
        for name, param in params.items():
            if tensors[name].shape != param.shape:
                raise ValueError(f"{source}: {name} has shape {tuple(tensors[name].shape)}, expected {tuple(param.shape)}.")
            param.copy_(tensors[name])


# ---------------------------------------------------------------------- checkpoints


@dataclass
class Checkpoint:
    step: int
    history: list[dict]
    seconds: float
    weights: dict[str, Tensor]
    optimizer: dict[str, Tensor]  # "{parameter}.{exp_avg, exp_avg_sq, step}"


def save_checkpoint(path: Path, model: LCAToy, optimizer: dict[str, Tensor], step: int, history: list[dict],
                    seconds: float, settings: dict) -> None:
    tensors = {f"model.{name}": p for name, p in model.named_parameters()}
    tensors |= {f"optim.{key}": value for key, value in optimizer.items()}
    metadata = {"step": str(step), "history": json.dumps(history), "train_seconds": repr(seconds),
                "settings": json.dumps(settings)}
    artifacts.save_tensors(path, tensors, metadata)


def load_checkpoint(path: Path, settings: dict, max_step: Optional[int] = None) -> Checkpoint:
    """A checkpoint written with `settings`; anything else is refused in one sentence."""
    with safe_open(path, framework="pt") as handle:
        metadata = handle.metadata() or {}
    if json.loads(metadata.get("settings", "null")) != settings:
        raise ValueError(f"{path} was written by a run with other settings; resume with the same settings or use another output folder.")
    step = int(metadata.get("step", 0))
    if max_step is not None and step > max_step:
        raise ValueError(f"{path} is at step {step}, past the requested {max_step} steps.")
    tensors = load_file(path)
    weights = {k.removeprefix("model."): v for k, v in tensors.items() if k.startswith("model.")}
    model = LCAToy(ToyConfig.from_dict(settings["toy"]))
    _copy_weights(model, weights, str(path))
    optimizer = {k.removeprefix("optim."): v for k, v in tensors.items() if k.startswith("optim.")}
    return Checkpoint(step, json.loads(metadata.get("history", "[]")), float(metadata.get("train_seconds", 0.0)),
                      weights, optimizer)
