"""A folder of trained toys keyed by their settings, so claims that need the same model share it.

`Zoo.get(task, toy, config)` trains the toy into `root/<key>/` the first time and loads it from
there afterwards; an interrupted sweep resumes where it stopped (half-trained runs resume from
their checkpoint). The key is a hash of the settings, and each folder's `config.json` says what
it holds.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lca_interp.task import LCATask
from lca_interp.toy import LCAToy, ToyConfig
from lca_interp.train import TrainConfig, load_toy, run_config, train


@dataclass
class TrainedToy:
    model: LCAToy
    task: LCATask
    metrics: dict


class Zoo:
    def __init__(self, root: str | Path, progress: bool = True):
        self.root = Path(root)
        self.progress = progress

    def path(self, task: LCATask, toy: ToyConfig, config: TrainConfig) -> Path:
        settings = {**run_config(task, toy, config), "versions": None}
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        frozen = ("-wv_identity" if toy.freeze_wv else "") + ("-we_frozen" if toy.freeze_embed else "")
        name = f"m{task.m}-L{task.context_len}-d{toy.d_model}-{task.neighbourhood_name}{frozen}-s{toy.seed}"
        return self.root / f"{name}-{digest}"

    def get(self, task: LCATask, toy: ToyConfig, config: TrainConfig) -> TrainedToy:
        folder = self.path(task, toy, config)
        metrics_file = folder / "metrics.json"
        if metrics_file.exists():
            model, loaded_task = load_toy(folder)
            return TrainedToy(model, loaded_task, json.loads(metrics_file.read_text()))
        result = train(task, toy, config, out_dir=folder, progress=self.progress)
        return TrainedToy(result.model, task, result.metrics)
