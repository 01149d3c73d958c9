"""How a claim of paper A is measured: the scale, the toys a claim needs, and the claim itself.

Context
-------
Jiang et al. (2024) do not publish their hyperparameters, so what is reproduced are their claims
(DESIGN.md, "Theory to implement and check numerically"). A claim is a `ClaimSpec`: the statement,
its criterion in words, the toys it needs (`ToySpec`s), a `measure` that returns plain data per
seed, and a `holds` predicate over that data. The threshold in a criterion is a module constant
that both the words and the predicate use, so the criterion is fixed before any number is seen
and `holds` is testable on made-up measurements. A claim that does not hold in our measurement
is reported as not holding.

Two ways to train a toy
-----------------------
- fixed budget: `Scale.steps` AdamW steps at `Scale.lr` (the claims about one trained toy);
- to the plateau (`ToySpec.to_plateau`), for claims that compare variants (trained vs identity
  W_V, trained vs frozen W_E): each learning rate of `Scale.plateau_lrs` is trained until held-out
  accuracy gains less than `plateau_gain` over `plateau_window` steps (or `plateau_cap` steps),
  the learning rate with the better mean validation accuracy over seeds is kept, and accuracy is
  then reported on a disjoint test draw. This is the paper's protocol (it picks the better of
  lr 0.01 and 0.001 per setting), with the stopping rule stated.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Optional

from lca_interp.task import LCATask
from lca_interp.training import TrainConfig


@dataclass(frozen=True)
class Scale:
    """Sizes of one reproduction. `d_models` must include values below and above V = 2^m."""

    name: str
    m: int
    context_lens: tuple[int, int]  # C1's two lengths; the first is the main setting
    d_main: int
    d_models: tuple[int, ...]
    length_sweep: tuple[int, ...]  # C10
    theorem_lens: tuple[int, ...]  # T1
    steps: int
    batch_size: int
    lr: float
    seeds: int
    eval_samples: int
    plateau_window: int
    plateau_eval_every: int
    plateau_cap: int
    plateau_lrs: tuple[float, ...] = (0.01, 0.001)
    plateau_gain: float = 0.005
    omega: float = 0.5
    beta: float = 1.0

    def task(self, context_len: Optional[int] = None, neighbourhood: str = "all") -> LCATask:
        return LCATask(m=self.m, omega=self.omega, beta=self.beta, context_len=context_len or self.context_lens[0],
                       neighbourhood=neighbourhood)

    def train_config(self, seed: int, lr: Optional[float] = None) -> TrainConfig:
        """The fixed budget (lr None), or training to the plateau at `lr`."""
        if lr is None:
            return TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr, eval_every=max(1, self.steps // 10),
                               eval_samples=self.eval_samples, checkpoint_every=max(1, self.steps // 2), seed=seed)
        return TrainConfig(steps=self.plateau_cap, batch_size=self.batch_size, lr=lr, eval_every=self.plateau_eval_every,
                           eval_samples=self.eval_samples, checkpoint_every=self.plateau_window, seed=seed,
                           plateau_window=self.plateau_window, plateau_gain=self.plateau_gain)


QUICK = Scale(
    name="quick", m=5, context_lens=(16, 32), d_main=24, d_models=(8, 16, 64), length_sweep=(4, 8, 16, 32),
    theorem_lens=(4, 8, 16, 32, 64, 128), steps=400, batch_size=128, lr=5e-3, seeds=2, eval_samples=4000,
    plateau_window=200, plateau_eval_every=50, plateau_cap=3000,
)
FULL = Scale(
    name="full", m=8, context_lens=(64, 128), d_main=128, d_models=(32, 64, 128, 320),
    length_sweep=(16, 32, 64, 128), theorem_lens=(8, 16, 32, 64, 128, 256, 512, 1024),
    steps=3000, batch_size=256, lr=3e-3, seeds=3, eval_samples=10_000,
    plateau_window=2000, plateau_eval_every=500, plateau_cap=40_000,
)


@dataclass(frozen=True)
class ToySpec:
    """A toy a claim needs, at the scale's sizes unless given; trained once per seed."""

    context_len: Optional[int] = None  # None: the scale's main length
    d_model: Optional[int] = None  # None: the scale's main width
    neighbourhood: str = "all"
    freeze_wv: bool = False
    freeze_embed: bool = False
    to_plateau: bool = False  # compared variants: lr chosen on validation, trained to the plateau


@dataclass(frozen=True)
class Claim:
    """One claim of the paper and what we measured."""

    id: str
    claim: str
    criterion: str
    measured: dict
    holds: bool

    def to_dict(self) -> dict:
        return {"id": self.id, "claim": self.claim, "criterion": self.criterion, "measured": self.measured,
                "holds": bool(self.holds)}


@dataclass(frozen=True)
class ClaimSpec:
    """A claim: what it says, how it is judged, which toys it needs and how it is measured."""

    id: str
    statement: str
    criterion: str
    needs: Callable[[Scale], list[ToySpec]]
    measure: Callable[..., dict]  # (Reproduction) -> measured data, JSON-ready
    holds: Callable[[dict], bool]

    def __call__(self, reproduction) -> Claim:
        measured = self.measure(reproduction)
        return Claim(self.id, self.statement, self.criterion, measured, bool(self.holds(measured)))


def no_toys(scale: Scale) -> list[ToySpec]:
    return []


def main_toy(scale: Scale) -> list[ToySpec]:
    return [ToySpec()]


def mean_sd(values: Sequence[float]) -> dict:
    values = [float(v) for v in values]
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"per_seed": values, "mean": statistics.fmean(values), "sd": sd}
