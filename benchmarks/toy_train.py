"""Training throughput of LCA toys: toy-steps per second, one at a time and batched.

What is measured
----------------
Whole training steps as `lca_interp.training` takes them (sample a fresh batch per toy, forward,
last-position cross-entropy, backward, AdamW), for n toys of one shape (seeds 0..n−1):

  textbook   one toy at a time through the hooked `LCAToy.forward(x, last_position_only=True)`
             and `torch.optim.AdamW`: how training ran before `lca_interp.toy_stack`.
  one-by-one `train` once per toy: the token-space kernel and per-toy AdamW, a stack of one.
  batched    `train_many` on all n toys: one stack, one forward and backward per step.

Reported: toy-steps/s (n × steps / seconds) and the speed-up over textbook. After timing, the
final weights are compared (max |Δ|): batched against one-by-one and against textbook; they
differ only by float round-off (batched matrix products may sum in another order). Each configuration runs `--repeats` times,
interleaved, and the median is kept; the share of CPU other processes used meanwhile is printed
because a busy machine inflates CPU timings.

    .venv/bin/python benchmarks/toy_train.py [--m 8 --context-len 64 --d-model 128
        --batch-size 256 --toys 3 6 12 --steps 100 --repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from lca_interp.task import LCATask, derive_seed
from lca_interp.toy import LCAToy, ToyConfig
from lca_interp.training import TRAIN_STREAM, Run, TrainConfig, train, train_many


def textbook(run: Run) -> LCAToy:
    model = LCAToy(run.toy)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=run.config.lr)
    for step in range(run.config.steps):
        x, y = run.task.sample(run.config.batch_size, derive_seed(run.config.seed, TRAIN_STREAM, step))
        loss = F.cross_entropy(model(x, last_position_only=True), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        jiffies = [float(v) for v in f.readline().split()[1:]]
    return (sum(jiffies) - jiffies[3] - jiffies[4]) / os.sysconf("SC_CLK_TCK")  # less idle and iowait


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--m", type=int, default=8)
    parser.add_argument("--context-len", type=int, default=64)
    parser.add_argument("--d-model", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--toys", type=int, nargs="+", default=[3, 6, 12])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()

    task = LCATask(m=args.m, context_len=args.context_len)
    rows = []
    for n in args.toys:
        runs = [Run(task, ToyConfig(d_vocab=task.vocab_size, d_model=args.d_model, n_ctx=args.context_len, seed=s),
                    TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=3e-3, eval_every=args.steps, eval_samples=256,
                                seed=s, checkpoint_every=0))
                for s in range(n)]
        implementations = {
            "textbook": lambda: [textbook(r) for r in runs],
            "one-by-one": lambda: [train(r.task, r.toy, r.config, progress=False).model for r in runs],
            "batched": lambda: [r.model for r in train_many(runs, progress=False)],
        }
        seconds: dict[str, list[float]] = {name: [] for name in implementations}
        models = {}
        machine_before, ours_before, wall_before = busy_seconds(), time.process_time(), time.perf_counter()
        for _ in range(args.repeats):
            for name, fn in implementations.items():
                began = time.perf_counter()
                models[name] = fn()
                seconds[name].append(time.perf_counter() - began)
        elapsed = time.perf_counter() - wall_before
        others = (busy_seconds() - machine_before - (time.process_time() - ours_before)) / (elapsed * os.cpu_count())
        def gap(first: str, second: str) -> float:
            return max(float((p.detach() - q.detach()).abs().max()) for a, b in zip(models[first], models[second])
                       for p, q in zip(a.parameters(), b.parameters()))

        stacked, drift = gap("batched", "one-by-one"), gap("batched", "textbook")
        base = statistics.median(seconds["textbook"])
        for name, times in seconds.items():
            median = statistics.median(times)
            rows.append({"toys": n, "implementation": name, "seconds": median, "toy_steps_per_s": n * args.steps / median,
                         "speedup_over_textbook": base / median, "max_weight_diff_vs_textbook": drift,
                         "max_weight_diff_batched_vs_one_by_one": stacked})
        print(f"n = {n}: other processes used {others:.0%} of the CPU; max |Δ weight| batched vs one-by-one "
              f"{stacked:.1e}, vs textbook {drift:.1e}")
        for row in rows[-3:]:
            print(f"  {row['implementation']:<11} {row['toy_steps_per_s']:7.1f} toy-steps/s  "
                  f"{row['speedup_over_textbook']:5.2f}× textbook")
    if args.json:
        meta = {"args": vars(args), "torch": torch.__version__, "threads": torch.get_num_threads(),
                "python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
