"""Hijack scoring in shards: resumable, and spread over Ray workers.

Scoring all of CounterFact at k = 0..4 takes hours; a run killed halfway should lose minutes, and a
machine with more cores (or a Ray cluster) should be used whole. So a run's facts are cut into
shards of consecutive facts. Each finished shard's scores (log P of both targets at every k, and
the targets' token counts) are written atomically to `FOLDER/<variant>/<first>-<end>.safetensors`
with the settings that produced them, its thread count and its seconds. Rerunning the same
command reads the finished shards and scores only the rest; a shard written under other settings (model, dtype, facts, scheme, k,
batch size, shard size, mitigation) is refused, never mixed in or overwritten.

Shards are scored in this process (`workers=1`) or by Ray actors that each load the model once:
`ray.init(num_cpus=workers)` starts a local Ray instance, `ray_address` joins a cluster (whose
nodes have this package installed). Whoever scores it, a shard runs the same code on the same facts
in the same batches, so the merged scores equal a serial run's. BLAS rounds differently with the
number of threads (log P moves by ~1e-5), so each shard records the threads it ran with.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import tqdm

from lca_interp import artifacts
from lca_interp.facts import Fact
from lca_interp.evals.hijack.mixed import MarginBound, mixed_hijack_scores
from lca_interp.hooks.mitigations import mitigation
from lca_interp.pretrained import describe
from lca_interp.prompts import Donors
from lca_interp.scoring import TargetScores, hijack_scores


@dataclass(frozen=True)
class HijackScoring:
    """What to score for each fact: the hijack scheme, k = 0..max_prepends, and paper B's
    mitigation (None: the model as it is) with the final MLP's intercept it may need."""

    scheme: str
    max_prepends: int
    batch_size: int = 16
    donors: Optional[Donors] = None
    mitigation: Optional[str] = None
    intercept: Optional[Tensor] = None
    margin_bound: Optional[MarginBound] = None  # mixed precision (`mixed`): bfloat16 first, near ties in float32

    def __post_init__(self) -> None:
        if self.margin_bound is not None and self.mitigation is not None:
            raise ValueError("mixed precision scores the model as it is; score mitigations in float32 or bfloat16.")

    def scores(self, model, facts: Sequence[Fact], progress: bool = False) -> TargetScores:
        """[k, fact, (true, false)] log-probabilities and target lengths."""
        if self.margin_bound is not None:
            return mixed_hijack_scores(model, facts, self.scheme, self.max_prepends, self.margin_bound, self.batch_size,
                                       progress, self.donors)
        with mitigation(model, self.mitigation, self.intercept):
            return hijack_scores(model, facts, self.scheme, self.max_prepends, self.batch_size, progress, self.donors)

    def settings(self) -> dict:
        """Everything here that changes a score, as JSON (donors and intercept as digests)."""
        return {"scheme": self.scheme, "max_prepends": self.max_prepends, "batch_size": self.batch_size,
                "mitigation": self.mitigation,
                "donors": _digest(sorted((list(key), value) for key, value in self.donors.statements.items()))
                if self.donors is not None else None,
                "intercept": hashlib.sha256(self.intercept.detach().cpu().double().numpy().tobytes()).hexdigest()
                if self.intercept is not None else None,
                # only where set, so shards written before mixed precision existed still match
                **({"margin_bound": asdict(self.margin_bound)} if self.margin_bound is not None else {})}


@dataclass(frozen=True)
class ShardPlan:
    """Where shards go and who scores them.

    Args:
        folder: the run's shard folder (the CLI uses OUT/shards).
        shard_size: facts per shard.
        workers: 1 scores in this process; more start that many Ray actors.
        ray_address: a running Ray cluster to join instead of starting a local instance.
        model: what each Ray actor passes to `load_model` (a model name or local folder); the
            actors take the dtype and device of the model handed to `scores`.
    """

    folder: Path
    shard_size: int = 200
    workers: int = 1
    ray_address: Optional[str] = None
    model: Optional[str] = None

    def __post_init__(self) -> None:
        if self.shard_size < 1:
            raise ValueError(f"the shard size must be ≥ 1 fact, got {self.shard_size}.")
        if self.workers < 1:
            raise ValueError(f"workers must be ≥ 1, got {self.workers}.")
        if self.uses_ray and not self.model:
            raise ValueError("Ray workers load the model themselves: give the plan the model's name or folder.")

    @property
    def uses_ray(self) -> bool:
        return self.workers > 1 or self.ray_address is not None

    def spans(self, n_facts: int) -> list[tuple[int, int]]:
        return [(start, min(start + self.shard_size, n_facts)) for start in range(0, n_facts, self.shard_size)]

    def variant_folder(self, scoring: HijackScoring) -> Path:
        """Where the shards of `scoring`'s variant (the model as it is, or a mitigation) go."""
        return self.folder / (scoring.mitigation or "plain")

    def settings(self, model, facts: Sequence[Fact], scoring: HijackScoring) -> dict:
        """What every shard of this run is written with, and checked against when read."""
        return {**scoring.settings(), "shard_size": self.shard_size, "n_facts": len(facts),
                "facts": _digest([asdict(fact) for fact in facts]), "model": _model_settings(model)}

    def finished(self, model, facts: Sequence[Fact], scoring: HijackScoring) -> dict[tuple[int, int], tuple[TargetScores, float]]:
        """The shards this run has finished so far, by (first, end) fact, with their seconds; scores
        nothing. Shards of other settings are refused, as `scores` refuses them."""
        return _finished_shards(self.variant_folder(scoring), self.settings(model, facts, scoring))

    def scores(self, model, facts: Sequence[Fact], scoring: HijackScoring, progress: bool = True) -> tuple[TargetScores, float]:
        """The scores `scoring.scores(model, facts)` gives, shard by shard, resuming from (and
        adding to) the shards already in the folder; and the seconds all shards took, summed (on
        every worker, and in every earlier run that a resumed run continues)."""
        variant, settings = self.variant_folder(scoring), self.settings(model, facts, scoring)
        spans = self.spans(len(facts))
        done = _finished_shards(variant, settings)
        todo = [span for span in spans if span not in done]
        bar = tqdm(total=len(facts), initial=sum(end - start for start, end in done), unit="record",
                   desc=f"shards ({scoring.mitigation or 'plain'})", disable=not progress)
        scored = _score_in_ray(self, model, facts, scoring, todo) if self.uses_ray and todo else \
            ((span, *_timed(scoring, model, facts[span[0]:span[1]])) for span in todo)
        for (start, end), shard, seconds in scored:
            metadata = {"settings": json.dumps(settings), "threads": str(1 if self.uses_ray else torch.get_num_threads()),
                        "seconds": repr(seconds)}
            tensors = {"log_prob": shard.log_prob, "n_tokens": shard.n_tokens}
            if shard.rescored is not None:
                tensors["rescored"] = shard.rescored
            artifacts.save_tensors(_shard_path(variant, start, end), tensors, metadata)
            done[(start, end)] = shard, seconds
            bar.update(end - start)
        bar.close()
        return merged(done, spans)


def merged(shards: dict[tuple[int, int], tuple[TargetScores, float]], spans: Sequence[tuple[int, int]]) -> tuple[TargetScores, float]:
    """The scores of `spans`' shards joined in that order, and their seconds summed."""
    parts = [shards[span][0] for span in spans]
    rescored = torch.cat([part.rescored for part in parts], dim=1) if all(p.rescored is not None for p in parts) else None
    return (TargetScores(torch.cat([part.log_prob for part in parts], dim=1), torch.cat([part.n_tokens for part in parts], dim=1),
                         rescored), sum(shards[span][1] for span in spans))


def _timed(scoring: HijackScoring, model, facts: Sequence[Fact]) -> tuple[TargetScores, float]:
    """A shard's scores and the seconds they took (kept with the shard: a resumed run's speed)."""
    began = time.perf_counter()
    scores = scoring.scores(model, facts)
    return scores, time.perf_counter() - began


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def _model_settings(model) -> dict:
    source = describe(model)
    return {key: source.get(key) for key in ("name", "source", "sha256", "dtype", "device", "prepends_bos", "processing")}


def _shard_path(folder: Path, start: int, end: int) -> Path:
    return folder / f"{start:06d}-{end:06d}.safetensors"


def _finished_shards(folder: Path, settings: dict) -> dict[tuple[int, int], tuple[TargetScores, float]]:
    """The shards in `folder` with their seconds, each checked against `settings`; another run's
    shard is refused."""
    done = {}
    for path in sorted(folder.glob("*.safetensors")):
        try:
            start, end = (int(part) for part in path.stem.split("-"))
            with safe_open(path, framework="pt") as handle:
                metadata = handle.metadata() or {}
            written, seconds = json.loads(metadata.get("settings", "null")), float(metadata.get("seconds", "nan"))
            tensors = load_file(path)
        except (ValueError, SafetensorError, OSError) as error:
            raise ValueError(f"{path} is not a readable shard ({error}); delete it to score it again.") from None
        if written != settings:
            differ = sorted(key for key in settings if (written or {}).get(key) != settings[key])
            raise ValueError(f"{path} was written by a run with other settings ({', '.join(differ)}); rerun with the "
                             "same settings or use another --out.")
        done[(start, end)] = TargetScores(tensors["log_prob"], tensors["n_tokens"], tensors.get("rescored")), seconds
    return done


class _ShardScorer:
    """A Ray actor: loads the model once, then scores the shards it is given."""

    def __init__(self, model: str, device: str, dtype: str):
        from lca_interp.pretrained import load_model

        self.model = load_model(model, device=device, dtype=dtype)

    def score(self, facts: list[Fact], scoring: HijackScoring) -> tuple[TargetScores, float]:
        return _timed(scoring, self.model, facts)


def _score_in_ray(plan: ShardPlan, model, facts: Sequence[Fact], scoring: HijackScoring,
                  todo: list[tuple[int, int]]) -> Iterator[tuple[tuple[int, int], TargetScores]]:
    """Score `todo` on `plan.workers` Ray actors, yielding each shard as it finishes."""
    try:
        import ray
    except ImportError:
        raise ValueError("--workers and --ray-address need Ray: pip install 'lca-interp[cluster]'.") from None
    source = describe(model)
    started = not ray.is_initialized()
    if started:
        local = {} if plan.ray_address else {"num_cpus": plan.workers, "_system_config": {"worker_niceness": 0}}
        # Ray runs workers at niceness 15 by default; here they are the run, not background work.
        try:  # "local": a fresh instance even where `ray start` left a cluster running on this machine
            ray.init(address=plan.ray_address or "local", include_dashboard=False, log_to_driver=False, configure_logging=False, **local)
        except ConnectionError as error:
            # Ray 2.60's `ray start --head` turns on token auth; a client without it only sees "failed to connect".
            hint = "" if os.environ.get("RAY_AUTH_MODE") else (
                "; a cluster started with `ray start --head` asks clients for its token: set RAY_AUTH_MODE=token")
            raise ConnectionError(f"{str(error).rstrip('.')}{hint}.") from None
    try:
        gpus = 1 / plan.workers if str(source.get("device", "cpu")).startswith("cuda") else 0
        actor = ray.remote(num_cpus=1, num_gpus=gpus)(_ShardScorer)
        actors = [actor.remote(plan.model, source.get("device", "cpu"), source.get("dtype", "float32"))
                  for _ in range(min(plan.workers, len(todo)))]
        scoring_ref = ray.put(scoring)
        queue, running = list(todo), {}

        def give(worker) -> None:
            span = queue.pop(0)
            running[worker.score.remote(list(facts[span[0]:span[1]]), scoring_ref)] = (span, worker)

        for worker in actors:
            give(worker)
        while running:
            [ready], _ = ray.wait(list(running), num_returns=1)
            span, worker = running.pop(ready)
            scores, seconds = ray.get(ready)
            if queue:
                give(worker)
            yield span, scores, seconds
    finally:
        if started:
            ray.shutdown()
