"""The work a trained zoo of LCA toys holds, against the time it took: how near the machine it ran.

What is measured
----------------
A zoo (`lca-interp reproduce --out DIR` keeps one in DIR/runs) records for every toy its settings
and the steps it trained. The least work a toy needed is its steps × the FLOPs of one training step
(forward and backward, counted by `torch.utils.flop_counter` on that toy's own kernel, so the
gradients of frozen weights are not counted) plus its evaluations × eval_samples × the FLOPs of a
forward. Beside the total this prints the machine's matrix-product rate, measured here on
batched products of the toys' own sizes, and so the shortest time the zoo could have trained in;
with `--wall-seconds` (the reproduction's wall time) also the rate it ran at and its share of the
machine's.

    .venv/bin/python benchmarks/zoo_work.py out/reproduce-full/runs [--wall-seconds S]
        [--matmul-gflops R] [--json PATH]
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lca_interp import artifacts
from lca_interp.toy import LCAToy, ToyConfig
from lca_interp.toy_stack import ToyStack


@functools.cache
def step_flops(toy: ToyConfig, batch_size: int, context_len: int) -> tuple[int, int]:
    """(FLOPs of one training step, FLOPs of a forward per context) of one toy, as counted."""
    stack = ToyStack([LCAToy(toy)], [1e-3], [0.0])
    x = torch.randint(toy.d_vocab, (1, batch_size, context_len))
    with FlopCounterMode(display=False) as train_count:
        F.cross_entropy(stack.logits(x)[0], x[0, :, 0]).backward()
    with torch.no_grad(), FlopCounterMode(display=False) as forward_count:
        stack.logits(x)
    return train_count.get_total_flops(), forward_count.get_total_flops() // batch_size


def matmul_rate(d_vocab: int = 256, d_model: int = 128, batch_size: int = 256, toys: int = 12, repeats: int = 50) -> float:
    """FLOP/s of batched [toys, batch, d] × [toys, d, V] products, with torch's threads."""
    a, b = torch.randn(toys, batch_size, d_model), torch.randn(toys, d_model, d_vocab)
    for _ in range(5):
        a @ b
    began = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * toys * batch_size * d_model * d_vocab * repeats / (time.perf_counter() - began)


def zoo_work(runs_dir: Path) -> list[dict]:
    """One row per finished toy: its shape, schedule, steps, evaluations and least-work FLOPs."""
    rows = []
    for metrics_path in sorted(runs_dir.glob("*/metrics.json")):
        metrics = json.loads(metrics_path.read_text())
        config = json.loads((metrics_path.parent / "config.json").read_text())
        toy, train = ToyConfig.from_dict(config["toy"]), config["train"]
        per_step, per_context = step_flops(toy, train["batch_size"], config["task"]["context_len"])
        evaluations = len(metrics.get("history", []))
        rows.append({"toy": metrics_path.parent.name, "d_model": toy.d_model, "context_len": config["task"]["context_len"],
                     "frozen": "+".join(name for name, on in (("W_E", toy.freeze_embed), ("W_V", toy.freeze_wv)) if on) or "none",
                     "schedule": "plateau" if train["plateau_window"] else "fixed", "lr": train["lr"],
                     "steps": metrics["steps"], "evaluations": evaluations,
                     "flops": metrics["steps"] * per_step + evaluations * train["eval_samples"] * per_context,
                     "train_seconds": metrics["train_seconds"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a zoo folder (DIR/runs of `lca-interp reproduce --out DIR`)")
    parser.add_argument("--wall-seconds", type=float, help="the wall time the zoo took to train (and measure)")
    parser.add_argument("--matmul-gflops", type=float, help="the machine's rate, measured elsewhere (default: measured here, "
                        "which needs the machine to itself)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    if not args.runs.is_dir():
        parser.error(f"{args.runs} is not a folder.")
    rows = zoo_work(args.runs)
    if not rows:
        parser.error(f"{args.runs} holds no finished toy (no */metrics.json).")
    rate = args.matmul_gflops * 1e9 if args.matmul_gflops else matmul_rate()
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        groups[(row["d_model"], row["frozen"], row["schedule"])].append(row)
    total_flops, total_steps = sum(r["flops"] for r in rows), sum(r["steps"] for r in rows)
    print(f"{'d':>4} {'frozen':>7} {'schedule':>8} {'toys':>5} {'toy-steps':>10} {'TFLOP':>8} {'share':>6}")
    for (d, frozen, schedule), members in sorted(groups.items()):
        flops = sum(r["flops"] for r in members)
        print(f"{d:>4} {frozen:>7} {schedule:>8} {len(members):>5} {sum(r['steps'] for r in members):>10,} "
              f"{flops / 1e12:>8.1f} {flops / total_flops:>6.1%}")
    summary = {"toys": len(rows), "toy_steps": total_steps, "tflop": total_flops / 1e12,
               "matmul_gflops": rate / 1e9, "threads": torch.get_num_threads(),
               "minutes_at_matmul_rate": total_flops / rate / 60}
    print(f"{len(rows)} toys, {total_steps:,} toy-steps, {total_flops / 1e12:.1f} TFLOP; matrix products run at "
          f"{rate / 1e9:.0f} GFLOP/s here ({torch.get_num_threads()} threads): at least "
          f"{summary['minutes_at_matmul_rate']:.1f} min")
    if args.wall_seconds:
        summary |= {"wall_seconds": args.wall_seconds, "toy_steps_per_second": total_steps / args.wall_seconds,
                    "achieved_gflops": total_flops / args.wall_seconds / 1e9,
                    "share_of_matmul_rate": total_flops / args.wall_seconds / rate}
        print(f"in {args.wall_seconds / 60:.1f} min: {summary['toy_steps_per_second']:.0f} toy-steps/s, "
              f"{summary['achieved_gflops']:.0f} GFLOP/s, {summary['share_of_matmul_rate']:.0%} of the matrix-product rate")
    if args.json:
        artifacts.write_json(args.json, {"summary": summary, "toys": rows, "machine": platform.processor() or platform.machine(),
                                         "torch": torch.__version__, "command": "benchmarks/zoo_work.py " + str(args.runs)})


if __name__ == "__main__":
    main()
