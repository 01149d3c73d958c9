"""The trained toys of a reproduction: a folder keyed by settings, filled in batched stacks.

`Zoo` keeps each toy in `root/<name>-<hash of its settings>/` (a run folder, `lca_interp.runs`):
trained the first time, loaded afterwards, resumed from its checkpoint when a run was cut short.
`Reproduction` turns the claims' `ToySpec`s into runs at its scale, trains every missing one in
one `train_many` call (toys of one width share a stack), and hands the claims their toys: the
fixed-budget toy of a seed, or, for a spec trained to the plateau, the toys of the learning rate
chosen on validation accuracy (`Selection`).
"""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from lca_interp.evals.claims.protocol import Scale, ToySpec, mean_sd
from lca_interp.runs import load_toy, settings_of
from lca_interp.task import LCATask, derive_seed
from lca_interp.toy import LCAToy, ToyConfig
from lca_interp.training import Run, evaluate, train_many

CLAIM_STREAM = 2  # the claims' own test draws: disjoint from training batches and validation


@dataclass
class TrainedToy:
    model: LCAToy
    task: LCATask
    metrics: dict  # metrics.json: "accuracy" there is on the validation draw


class Zoo:
    def __init__(self, root: str | Path, progress: bool = True, device: Optional[str] = None):
        self.root = Path(root)
        self.progress = progress
        self.device = device  # where toys train; claims measure the saved toys on the CPU

    def folder(self, run: Run) -> Path:
        settings = settings_of(run.task, run.toy, run.config)
        digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        task, toy = run.task, run.toy
        frozen = ("-wv_identity" if toy.freeze_wv else "") + ("-we_frozen" if toy.freeze_embed else "")
        schedule = f"-plateau-lr{run.config.lr:g}" if run.config.plateau_window else ""
        name = f"m{task.m}-L{task.context_len}-d{toy.d_model}-{task.neighbourhood_name}{frozen}{schedule}-s{toy.seed}"
        return self.root / f"{name}-{digest}"

    def train_missing(self, runs: Iterable[Run]) -> None:
        """Train every run whose folder holds no finished toy, in batched stacks."""
        missing = {self.folder(r): r for r in runs if not (self.folder(r) / "metrics.json").exists()}
        if missing:
            train_many([Run(r.task, r.toy, r.config, folder) for folder, r in missing.items()], self.progress, self.device)

    def get(self, run: Run) -> TrainedToy:
        self.train_missing([run])
        folder = self.folder(run)
        model, task = load_toy(folder)
        return TrainedToy(model, task, json.loads((folder / "metrics.json").read_text()))


@dataclass
class Selection:
    """A spec trained to the plateau at each candidate lr; `toys` are those of the chosen `lr`."""

    lr: float
    toys: list[TrainedToy]  # one per seed
    validation: dict[str, dict]  # lr → mean_sd of validation accuracy over seeds

    def summary(self, test_accuracy: list[float]) -> dict:
        return {"lr": self.lr, "test_accuracy": mean_sd(test_accuracy),
                "steps_to_plateau": [t.metrics["steps"] for t in self.toys],
                "plateaued": [t.metrics["plateaued"] for t in self.toys], "validation_by_lr": self.validation}


class Reproduction:
    """One reproduction's scale and zoo: the toys the claims ask for, and their test draws."""

    def __init__(self, scale: Scale, zoo: Zoo):
        self.scale = scale
        self.zoo = zoo

    @property
    def seeds(self) -> range:
        return range(self.scale.seeds)

    def runs(self, spec: ToySpec, seed: int) -> list[Run]:
        """The runs behind one spec and seed: one fixed-budget run, or one per candidate lr."""
        task = self.scale.task(spec.context_len, spec.neighbourhood)
        toy = ToyConfig(d_vocab=task.vocab_size, d_model=spec.d_model or self.scale.d_main, n_ctx=task.context_len,
                        seed=seed, freeze_wv=spec.freeze_wv, freeze_embed=spec.freeze_embed)
        lrs: list[Optional[float]] = list(self.scale.plateau_lrs) if spec.to_plateau else [None]
        return [Run(task, toy, self.scale.train_config(seed, lr)) for lr in lrs]

    def prepare(self, specs: Iterable[ToySpec]) -> None:
        """Train every toy the specs need, for every seed, in as few stacks as their shapes allow."""
        self.zoo.train_missing([run for spec in dict.fromkeys(specs) for seed in self.seeds for run in self.runs(spec, seed)])

    def toy(self, seed: int, spec: ToySpec = ToySpec()) -> TrainedToy:
        """The fixed-budget toy of `spec` for one seed."""
        if spec.to_plateau:
            raise ValueError("a spec trained to the plateau has one toy per lr; use select().")
        return self.zoo.get(self.runs(spec, seed)[0])

    def select(self, spec: ToySpec) -> Selection:
        """The plateau-trained toys of the lr with the best mean validation accuracy over seeds."""
        by_lr = {run.config.lr: [] for run in self.runs(spec, 0)}
        for seed in self.seeds:
            for run in self.runs(spec, seed):
                by_lr[run.config.lr].append(self.zoo.get(run))
        validation = {f"{lr:g}": mean_sd([t.metrics["accuracy"] for t in toys]) for lr, toys in by_lr.items()}
        best = max(by_lr, key=lambda lr: statistics.fmean(t.metrics["accuracy"] for t in by_lr[lr]))
        return Selection(best, by_lr[best], validation)

    def compare(self, first: tuple[str, ToySpec], second: tuple[str, ToySpec]) -> dict:
        """Two variants, each at its plateau with its chosen lr: their `Selection.summary` under
        their names, and "gap", the per-seed test-accuracy difference first − second."""
        rows = {}
        for name, spec in (first, second):
            chosen = self.select(spec)
            rows[name] = chosen.summary([self.accuracy(t.model, t.task, seed) for seed, t in enumerate(chosen.toys)])
        accuracies = [rows[name]["test_accuracy"]["per_seed"] for name, _ in (first, second)]
        return {**rows, "gap": mean_sd([a - b for a, b in zip(*accuracies)])}

    def test_set(self, task: LCATask, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        return task.sample(self.scale.eval_samples, derive_seed(seed, CLAIM_STREAM, task.context_len))

    def accuracy(self, model: LCAToy, task: LCATask, seed: int) -> float:
        """Accuracy on the claims' test draw of this seed (never used to choose anything)."""
        return evaluate(model, *self.test_set(task, seed))[0]
