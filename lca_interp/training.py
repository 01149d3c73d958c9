"""Training LCA toys: AdamW on last-position cross-entropy, fresh samples every step, many at once.

Context
-------
Every batch is a fresh draw from the task, so there is no dataset, only a seed: the batch of a
toy's step s is drawn from a generator seeded by (seed, s). That makes resuming exact: a
checkpoint needs the weights, AdamW's moments and the step, nothing else. Held-out accuracy is
measured on one fixed draw from a separate stream, beside the Bayes-optimal accuracy on the same
draw (the ceiling of `lca_interp.task`).

`train_many` trains several toys in one batched step (`lca_interp.toy_stack`): toys of one shape
(V, d, batch size) share each forward and backward, whatever their context lengths, and each keeps
its own task, seed, frozen weights, learning rate and schedule; a toy leaves the stack when it is
done. Toys due for an evaluation at the same step are evaluated in one batched pass. `train` is the
same loop with one toy. A toy trained in a stack ends with the weights it would have alone, up to
float round-off (tested).

How long to train
-----------------
`TrainConfig.steps` is a fixed budget, or, with `plateau_window`, a cap: the toy is evaluated
every `eval_every` steps (from step 0) and stops at the first evaluation whose accuracy gains less
than `plateau_gain` over the one `plateau_window` steps earlier. That is how paper A's variants are
compared at what each can reach rather than at what it reaches in a fixed number of steps.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lca_interp.config import Config
from lca_interp.devices import resolve_device
from lca_interp.runs import CHECKPOINT_FILE, load_checkpoint, save_checkpoint, save_run, settings_of
from lca_interp.task import LCATask, derive_seed
from lca_interp.toy import LCAToy, ToyConfig
from lca_interp.toy_stack import ToyStack, pad_contexts

TRAIN_STREAM, EVAL_STREAM = 0, 1


@dataclass(frozen=True)
class TrainConfig(Config):
    """AdamW settings, evaluation and checkpoint schedule, stopping rule and the data seed."""

    steps: int = 2000  # the budget, or the cap when plateau_window > 0
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 250
    eval_samples: int = 10_000
    checkpoint_every: int = 500
    seed: int = 0
    plateau_window: int = 0  # 0: train for `steps`; else stop when accuracy gains < plateau_gain over this many steps
    plateau_gain: float = 0.005

    def __post_init__(self) -> None:
        self.require_positive_ints("steps", "batch_size", "eval_every", "eval_samples")
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be ≥ 0 (0: never), got {self.checkpoint_every}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}.")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be ≥ 0, got {self.weight_decay!r}.")
        if self.plateau_window < 0 or self.plateau_window % self.eval_every:
            raise ValueError(f"plateau_window must be 0 or a multiple of eval_every ({self.eval_every}), got {self.plateau_window}.")
        if not self.plateau_gain > 0:
            raise ValueError(f"plateau_gain must be positive, got {self.plateau_gain!r}.")


@dataclass
class TrainResult:
    """The trained model and its measurements; `metrics` is what `metrics.json` holds."""

    model: LCAToy
    task: LCATask
    config: TrainConfig
    metrics: dict
    history: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Run:
    """One toy to train: its task, model and training settings, and where to keep it (or None)."""

    task: LCATask
    toy: ToyConfig
    config: TrainConfig
    out_dir: Optional[Path] = None

    def __post_init__(self) -> None:
        if self.toy.d_vocab != self.task.vocab_size:
            raise ValueError(f"toy vocabulary {self.toy.d_vocab} does not match the task's V = {self.task.vocab_size}.")

    @property
    def shape(self) -> tuple:
        """What toys must share to train in one stack (context lengths may differ: padding)."""
        return (self.task.vocab_size, self.toy.d_model, self.config.batch_size)


def eval_set(task: LCATask, config: TrainConfig) -> tuple[Int[Tensor, "n L"], Int[Tensor, "n"]]:
    """The fixed held-out draw of a run (a stream disjoint from the training batches)."""
    return task.sample(config.eval_samples, derive_seed(config.seed, EVAL_STREAM))


@torch.no_grad()
def evaluate(model: LCAToy, x: Int[Tensor, "batch L"], y: Int[Tensor, "batch"]) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of the model's last-position prediction, hooks included."""
    chunk = max(16, 2**17 // x.shape[1])  # the hooked forward holds [batch, L, d] activations
    accuracy, loss = _accuracy_and_loss(lambda start, end: model(x[start:end], last_position_only=True), y, chunk)
    return float(accuracy), float(loss)


def _accuracy_and_loss(
    logits_of: Callable[[int, int], Float[Tensor, "*toy chunk V"]], y: Int[Tensor, "*toy batch"], chunk: int
) -> tuple[Float[Tensor, "*toy"], Float[Tensor, "*toy"]]:
    """(accuracy, mean cross-entropy) over the batch axis, for one toy or a stack of toys, from the
    logits of contexts [start, end) taken `chunk` at a time (bounding activation memory)."""
    correct, loss = torch.zeros(y.shape[:-1], dtype=torch.float64), torch.zeros(y.shape[:-1], dtype=torch.float64)
    for start in range(0, y.shape[-1], chunk):
        logits, target = logits_of(start, start + chunk), y[..., start : start + chunk]
        correct += (logits.argmax(-1) == target).sum(-1).cpu()
        loss += F.cross_entropy(logits.flatten(0, -2), target.flatten(), reduction="none").view(target.shape).sum(-1).cpu()
    return correct / y.shape[-1], loss / y.shape[-1]


def plateaued(history: list[dict], window: int, gain: float) -> bool:
    """Whether the last evaluation gains less than `gain` in accuracy over the one `window`
    steps before it (False until there is such an earlier evaluation)."""
    if not history or window <= 0:
        return False
    earlier = [h["accuracy"] for h in history if h["step"] == history[-1]["step"] - window]
    return bool(earlier) and history[-1]["accuracy"] - earlier[0] < gain


def train(
    task: LCATask, toy_config: ToyConfig, config: TrainConfig, out_dir: Optional[str | Path] = None, progress: bool = True,
    device: Optional[str | torch.device] = None,
) -> TrainResult:
    """Train a fresh toy on `task`; with `out_dir`, checkpoint there and resume from it if present.

    Resuming continues from the checkpoint's step with the same batches, so an interrupted and
    resumed run ends with the weights an uninterrupted one would have. `device`: where the toy
    trains (default: the CPU); the data is drawn on the CPU, so the batches are the same anywhere.
    """
    run = Run(task, toy_config, config, Path(out_dir) if out_dir is not None else None)
    return train_many([run], progress, device)[0]


def train_many(runs: list[Run], progress: bool = True, device: Optional[str | torch.device] = None) -> list[TrainResult]:
    """Train every run, toys of the same shape together in one stack; results in `runs` order."""
    device = resolve_device(device or "cpu")
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, run in enumerate(runs):
        groups[run.shape].append(i)
    results: list[Optional[TrainResult]] = [None] * len(runs)
    for indices in groups.values():
        for i, result in zip(indices, _train_stack([runs[i] for i in indices], progress, device)):
            results[i] = result
    return results  # type: ignore[return-value]


@dataclass
class _Progress:
    """What the loop knows about one toy besides its weights."""

    run: Run
    step: int = 0
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    resumed_from: int = 0

    def done(self) -> bool:
        config = self.run.config
        return self.step >= config.steps or plateaued(self.history, config.plateau_window, config.plateau_gain)


def _train_stack(runs: list[Run], progress: bool, device: torch.device) -> list[TrainResult]:
    models = [LCAToy(run.toy).on_device(device) for run in runs]
    stack = ToyStack(models, [r.config.lr for r in runs], [r.config.weight_decay for r in runs])
    states = [_Progress(run) for run in runs]
    for i, state in enumerate(states):
        checkpoint = state.run.out_dir / CHECKPOINT_FILE if state.run.out_dir is not None else None
        if checkpoint is not None and checkpoint.exists():
            saved = load_checkpoint(checkpoint, _resume_settings(state.run), state.run.config.steps)
            stack.load(i, saved.weights, saved.optimizer)
            state.step = state.resumed_from = saved.step
            state.history, state.seconds = saved.history, saved.seconds
    pad = runs[0].task.vocab_size  # a token id no context holds (`pad_contexts`)
    evaluation = [eval_set(run.task, run.config) for run in runs]
    bayes = [run.task.bayes_accuracy(*data) for run, data in zip(runs, evaluation)]
    evaluation = [(x.to(device), y.to(device)) for x, y in evaluation]
    active = list(range(len(runs)))  # stack slot → run index

    def evaluate_slots(slots: list[int]) -> dict[int, tuple[float, float]]:
        """Held-out (accuracy, loss) of the toys in `slots`, those with equal eval sizes in one pass."""
        scores = {}
        by_size = defaultdict(list)
        for slot in slots:
            by_size[len(evaluation[active[slot]][1])].append(slot)
        for group in by_size.values():
            xs = [evaluation[active[slot]][0] for slot in group]
            y = torch.stack([evaluation[active[slot]][1] for slot in group])
            index = torch.tensor(group, device=device)

            def logits_of(start: int, end: int) -> Tensor:
                return stack.logits(pad_contexts([x[start:end] for x in xs], pad), index)

            with torch.no_grad():
                accuracy, loss = _accuracy_and_loss(logits_of, y, chunk=max(16, 2**21 // (len(group) * pad)))
            scores |= {slot: (float(a), float(l)) for slot, a, l in zip(group, accuracy, loss)}
        return scores

    def record_evaluations(slots: list[int], train_losses: Optional[Tensor] = None) -> None:
        for slot, (accuracy, loss) in evaluate_slots(slots).items():
            i = active[slot]
            train_loss = train_losses[slot].item() if train_losses is not None else None
            states[i].history.append({"step": states[i].step, "train_loss": train_loss, "accuracy": accuracy, "loss": loss})
            bar.set_postfix(acc=f"{accuracy:.3f}", bayes=f"{bayes[i]:.3f}", toys=len(active))

    def finish_done() -> None:
        nonlocal active
        finished = [slot for slot, i in enumerate(active) if states[i].done()]
        # A toy stops at an evaluation (its last step or a plateau), whose numbers are final;
        # only a toy resumed already done is evaluated here.
        unevaluated = [slot for slot in finished if not states[active[slot]].history
                       or states[active[slot]].history[-1]["step"] != states[active[slot]].step]
        final = evaluate_slots(unevaluated)
        for slot in finished:
            i = active[slot]
            accuracy, loss = final.get(slot) or (states[i].history[-1]["accuracy"], states[i].history[-1]["loss"])
            results[i] = _finish(states[i], stack.model(slot), accuracy, loss, bayes[i])
            bar.total -= runs[i].config.steps - states[i].step  # a plateau's unspent cap leaves the estimate
        if finished:
            bar.refresh()  # only then: this runs every step, and a refresh redraws at once
            active = [i for slot, i in enumerate(active) if slot not in finished]
            stack.keep([slot for slot in range(len(stack)) if slot not in finished])

    results: dict[int, TrainResult] = {}
    total = sum(run.config.steps for run in runs)
    bar = tqdm(total=total, initial=sum(s.step for s in states), desc=f"train {len(runs)} toy(s)", disable=not progress)
    # The step-0 evaluation that the plateau rule compares with.
    record_evaluations([slot for slot, i in enumerate(active) if states[i].step == 0 and runs[i].config.plateau_window])
    finish_done()
    while active:
        began = time.perf_counter()
        batches = [runs[i].task.sample(runs[i].config.batch_size, derive_seed(runs[i].config.seed, TRAIN_STREAM, states[i].step))
                   for i in active]
        x = pad_contexts([b[0] for b in batches], pad).to(device)  # [toy, batch, L]
        y = torch.stack([b[1] for b in batches]).to(device)  # [toy, batch]
        logits = stack.logits(x)
        losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)  # [toy]
        losses.sum().backward()  # toys share nothing, so each toy's gradient is its own loss's
        stack.adamw_step()
        for i in active:
            states[i].step += 1
        record_evaluations([slot for slot, i in enumerate(active)
                            if states[i].step % runs[i].config.eval_every == 0 or states[i].step == runs[i].config.steps],
                           losses.detach())
        share = (time.perf_counter() - began) / len(active)
        for slot, i in enumerate(active):
            state, config = states[i], runs[i].config
            state.seconds += share
            periodic = config.checkpoint_every and state.step % config.checkpoint_every == 0
            if state.run.out_dir is not None and (periodic or state.done()):
                save_checkpoint(state.run.out_dir / CHECKPOINT_FILE, stack.model(slot), stack.optimizer_state(slot),
                                state.step, state.history, state.seconds, _resume_settings(state.run))
        bar.update(len(active))
        finish_done()
    bar.close()
    return [results[i] for i in range(len(runs))]


def _resume_settings(run: Run) -> dict:
    """Everything a checkpoint must agree on to be resumed: all but the schedule."""
    settings = settings_of(run.task, run.toy, run.config)
    settings["train"] = {**settings["train"], "steps": None, "eval_every": None, "checkpoint_every": None}
    return settings


def _finish(state: _Progress, model: LCAToy, accuracy: float, loss: float, bayes_accuracy: float) -> TrainResult:
    config = state.run.config
    metrics = {
        "accuracy": accuracy,
        "bayes_accuracy": bayes_accuracy,
        "loss": loss,
        "eval_samples": config.eval_samples,
        "steps": state.step,
        "plateaued": plateaued(state.history, config.plateau_window, config.plateau_gain),
        "resumed_from_step": state.resumed_from,
        "train_seconds": state.seconds,  # this toy's share of its stack's wall time, over all sessions
    }
    result = TrainResult(model=model, task=state.run.task, config=config, metrics=metrics, history=state.history)
    if state.run.out_dir is not None:
        save_run(state.run.out_dir, model, state.run.task, config, {**metrics, "history": state.history})
    return result
