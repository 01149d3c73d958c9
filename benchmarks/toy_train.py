"""Training throughput of the LCA toy: TransformerLens `LCAToy` against plain PyTorch.

What is measured
----------------
Steps per second of one TRAINING step, exactly as `lca_interp.train.train` takes it:

    loss = F.cross_entropy(model(x), y); optimizer.zero_grad(set_to_none=True)
    loss.backward(); optimizer.step()          # AdamW(lr=1e-3, weight_decay=0)

for four implementations of the same function f(x) = W_Eᵀ W_V attn(W_E x) (one layer, one head,
no residual, no positions, tied unembedding, bidirectional attention, scale 1/√d):

  toy            `LCAToy(...)(x, last_position_only=True)`: TL's `Attention` parameters and hook
                 points; with one query and nobody listening to keys or values it reassociates
                 the products (score_j = u_j·(W_K q), z = (Σ_j a_j u_j) W_V).
  plain-last     a bare nn.Module doing the same arithmetic in the same order ([batch, V]).
  plain-last-kv  a bare nn.Module in the textbook order: q at the last position, k and v at all
                 positions, z = Σ_j a_j v_j. What the toy would cost without reassociating.
  plain-full     a bare nn.Module computing full bidirectional attention for every query position
                 and unembedding every position ([batch, L, V]); the loss reads the last position.
                 This is what the toy would cost without `last_position_only`.

Why
---
The package puts the paper's toy inside a `HookedTransformer` so that every TL probe runs on it
unchanged. That convenience must not make training noticeably slower: the project's target is
toy ≥ 0.9 × plain-last in steps/s. plain-last-kv and plain-full show what reassociating and
computing only the last query buy.

How
---
All four start from the toy's initial weights (checked once: identical logits, atol 1e-5), each
with its own AdamW. Batches are drawn from `LCATask` before any timing and the same batches are
fed to all four. The implementations are interleaved round-robin (the order rotates every round
so none always runs first); each round runs `--warmup` untimed steps, then `--steps` steps each
timed with time.perf_counter. Reported: the median ms/step over all timed steps, steps/s =
1000 / median, the fastest step, the spread of per-round means, and the throughput ratios
toy/plain-* (> 1 means the toy is faster). Threads are left at torch's default. Because a
busy machine inflates CPU timings (and oversubscribed OpenMP threads inflate them a lot), the
report also gives the share of the machine's CPU that other processes used meanwhile.

    .venv/bin/python benchmarks/toy_train.py [--m 8 --context-len 64 --d-model 128
        --batch-size 256 --steps 50 --warmup 10 --rounds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from lca_interp.task import LCATask
from lca_interp.toy import LCAToy, ToyConfig

IMPLEMENTATIONS = ("toy", "plain-last", "plain-last-kv", "plain-full")


class PlainLastKV(nn.Module):
    """f(x) at the last position, forming keys and values at every position (textbook order)."""

    def __init__(self, W_E: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor):
        super().__init__()
        self.W_E = nn.Parameter(W_E.detach().clone())  # [V, d]
        self.W_Q = nn.Parameter(W_Q.detach().clone())  # [d, d]
        self.W_K = nn.Parameter(W_K.detach().clone())
        self.W_V = nn.Parameter(W_V.detach().clone())
        self.scale = 1.0 / math.sqrt(W_E.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        U = self.W_E[x]  # [B, L, d]
        q = U[:, -1] @ self.W_Q  # [B, d]
        k = U @ self.W_K  # [B, L, d]
        v = U @ self.W_V  # [B, L, d]
        scores = (k @ q.unsqueeze(-1)).squeeze(-1) * self.scale  # [B, L]
        a = torch.softmax(scores, dim=-1)
        z = (a.unsqueeze(1) @ v).squeeze(1)  # [B, d] = Σ_j a_j v_j
        return z @ self.W_E.T  # [B, V]


class PlainLast(PlainLastKV):
    """f(x) at the last position in the toy's order: with one query, score_j = u_j·(W_K q) and
    z = (Σ_j a_j u_j) W_V, so no per-position key or value is formed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        U = self.W_E[x]  # [B, L, d]
        q = U[:, -1] @ self.W_Q  # [B, d]
        scores = (U @ (q @ self.W_K.T).unsqueeze(-1)).squeeze(-1) * self.scale  # [B, L]
        a = torch.softmax(scores, dim=-1)
        z = (a.unsqueeze(1) @ U).squeeze(1) @ self.W_V  # [B, d]
        return z @ self.W_E.T  # [B, V]


class PlainFull(PlainLastKV):
    """f(x) at every position: [B, L, L] attention and [B, L, V] logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        U = self.W_E[x]  # [B, L, d]
        q = U @ self.W_Q
        k = U @ self.W_K
        v = U @ self.W_V
        a = torch.softmax((q @ k.transpose(1, 2)) * self.scale, dim=-1)  # [B, Lq, Lk]
        return (a @ v) @ self.W_E.T  # [B, L, V]


def build(args: argparse.Namespace) -> dict[str, tuple[nn.Module, Callable]]:
    """The four models (sharing the toy's initial weights) and their loss functions."""
    V = 2**args.m
    toy = LCAToy(ToyConfig(d_vocab=V, d_model=args.d_model, n_ctx=args.context_len, seed=args.seed))
    attn = toy.blocks[0].attn
    weights = (toy.embed.W_E, attn.W_Q[0], attn.W_K[0], attn.W_V[0])
    last, last_kv, full = PlainLast(*weights), PlainLastKV(*weights), PlainFull(*weights)
    return {
        "toy": (toy, lambda x, y: F.cross_entropy(toy(x, last_position_only=True), y)),
        "plain-last": (last, lambda x, y: F.cross_entropy(last(x), y)),
        "plain-last-kv": (last_kv, lambda x, y: F.cross_entropy(last_kv(x), y)),
        "plain-full": (full, lambda x, y: F.cross_entropy(full(x)[:, -1], y)),
    }


def check_same_function(models: dict, x: torch.Tensor) -> float:
    """All four give the toy's last-position logits; returns the largest difference."""
    with torch.no_grad():
        reference = models["toy"][0](x, last_position_only=True)
        others = {
            "plain-last": models["plain-last"][0](x),
            "plain-last-kv": models["plain-last-kv"][0](x),
            "plain-full": models["plain-full"][0](x)[:, -1],
        }
    worst = 0.0
    for name, logits in others.items():
        diff = float((logits - reference).abs().max())
        if not torch.allclose(logits, reference, atol=1e-5, rtol=0):
            raise AssertionError(f"{name} logits differ from the toy's by {diff:.2e} (> 1e-5).")
        worst = max(worst, diff)
    return worst


def cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) clock ticks of the whole machine from /proc/stat; None off Linux."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return total - idle, total


def run_steps(loss_fn, optimizer, batches, timed: bool) -> list[float]:
    times = []
    for x, y in batches:
        start = time.perf_counter()
        loss = loss_fn(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if timed:
            times.append(time.perf_counter() - start)
    return times


def benchmark(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    task = LCATask(args.m, context_len=args.context_len)
    models = build(args)
    # Every batch is drawn before any timing; all implementations see the same ones every round.
    gen = torch.Generator().manual_seed(args.seed + 1)
    batches = [task.sample(args.batch_size, gen) for _ in range(args.warmup + args.steps)]
    warmup_batches, timed_batches = batches[: args.warmup], batches[args.warmup :]
    max_diff = check_same_function(models, batches[0][0])

    optimizers = {
        name: torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3,
                                weight_decay=0.0)
        for name, (model, _) in models.items()
    }
    machine_before, own_before = cpu_jiffies(), time.process_time()
    step_times: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    round_means: dict[str, list[float]] = {name: [] for name in IMPLEMENTATIONS}
    for r in range(args.rounds):
        shift = r % len(IMPLEMENTATIONS)
        order = IMPLEMENTATIONS[shift:] + IMPLEMENTATIONS[:shift]
        for name in order:
            loss_fn = models[name][1]
            run_steps(loss_fn, optimizers[name], warmup_batches, timed=False)
            gc.collect()
            times = run_steps(loss_fn, optimizers[name], timed_batches, timed=True)
            step_times[name] += times
            round_means[name].append(statistics.fmean(times))
        print(f"  round {r + 1}/{args.rounds}: "
              + ", ".join(f"{n} {1e3 * round_means[n][-1]:.2f} ms" for n in IMPLEMENTATIONS),
              file=sys.stderr)

    # Share of the machine's CPU time used by OTHER processes while this ran: near 0 on a quiet
    # machine. Anything well above 0 means the timings are inflated by contention.
    other_share = None
    machine_after, own_cpu = cpu_jiffies(), time.process_time() - own_before
    if machine_before is not None and machine_after is not None:
        busy = machine_after[0] - machine_before[0]
        total = machine_after[1] - machine_before[1]
        ticks = os.sysconf("SC_CLK_TCK")
        other_share = max(0.0, (busy - own_cpu * ticks) / total) if total else None

    results = {}
    for name in IMPLEMENTATIONS:
        median_ms = 1e3 * statistics.median(step_times[name])
        results[name] = {
            "median_ms_per_step": median_ms,
            "steps_per_s": 1e3 / median_ms,
            "min_ms_per_step": 1e3 * min(step_times[name]),
            "round_mean_ms_min": 1e3 * min(round_means[name]),
            "round_mean_ms_max": 1e3 * max(round_means[name]),
            "timed_steps": len(step_times[name]),
        }
    toy = results["toy"]["steps_per_s"]
    return {
        "settings": {
            "m": args.m, "vocab_size": 2**args.m, "context_len": args.context_len,
            "d_model": args.d_model, "batch_size": args.batch_size, "steps": args.steps,
            "warmup": args.warmup, "rounds": args.rounds, "seed": args.seed,
        },
        "machine": {
            "torch": torch.__version__, "python": platform.python_version(),
            "platform": platform.platform(), "processor": platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        },
        "other_processes_cpu_share": other_share,
        "max_logit_diff_at_init": max_diff,
        "results": results,
        # Throughput ratios (steps/s of the toy over steps/s of the other): > 1 means toy faster.
        "ratio_toy_over_plain_last": toy / results["plain-last"]["steps_per_s"],
        "ratio_toy_over_plain_last_kv": toy / results["plain-last-kv"]["steps_per_s"],
        "ratio_toy_over_plain_full": toy / results["plain-full"]["steps_per_s"],
    }


def print_table(report: dict) -> None:
    s = report["settings"]
    print(f"LCA toy training throughput: m={s['m']} (V={s['vocab_size']}), L={s['context_len']}, "
          f"d={s['d_model']}, batch={s['batch_size']}; {s['rounds']} rounds x {s['steps']} timed "
          f"steps (+{s['warmup']} warm-up); torch {report['machine']['torch']}, "
          f"{report['machine']['torch_threads']} threads")
    print(f"{'implementation':<14} {'median ms/step':>15} {'steps/s':>9} {'min ms/step':>12} "
          f"{'round means (ms)':>18}")
    for name, r in report["results"].items():
        spread = f"{r['round_mean_ms_min']:.2f}-{r['round_mean_ms_max']:.2f}"
        print(f"{name:<14} {r['median_ms_per_step']:>15.2f} {r['steps_per_s']:>9.1f} "
              f"{r['min_ms_per_step']:>12.2f} {spread:>18}")
    print(f"toy / plain-last throughput: {report['ratio_toy_over_plain_last']:.3f}  "
          f"(target ≥ 0.9)")
    print(f"toy / plain-last-kv throughput: {report['ratio_toy_over_plain_last_kv']:.3f}")
    print(f"toy / plain-full throughput: {report['ratio_toy_over_plain_full']:.3f}")
    print(f"max |logit difference| at init: {report['max_logit_diff_at_init']:.1e}")
    share = report["other_processes_cpu_share"]
    if share is not None:
        print(f"CPU used by other processes meanwhile: {100 * share:.0f}% of the machine"
              + ("  (WARNING: contended machine, absolute timings inflated)" if share > 0.05 else ""))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--m", type=int, default=8, help="latents; vocabulary V = 2^m")
    parser.add_argument("--context-len", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    for name in ("m", "context_len", "d_model", "batch_size", "steps", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be ≥ 1")
    if args.warmup < 0:
        parser.error("--warmup must be ≥ 0")

    report = benchmark(args)
    print_table(report)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
