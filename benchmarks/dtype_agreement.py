"""bfloat16 against float32 on hijack scoring: speed, and how often the ES decisions agree.

What is measured
----------------
The first `--limit` CounterFact records are scored at k = 0..K (generic scheme) once with the
model in float32 and once in bfloat16, each as a sharded run (`evals.hijack.ShardPlan`) under
`--out/<model>/<dtype>`, so an interrupted benchmark resumes. Speed is (prompt, target) pairs scored per
second of shard time (each shard records its own seconds, so resumed shards still count at the
speed they ran). Agreement is over every (record, k): whether P(o_) > P(o*) comes out the same in
both dtypes, by both readings (summed and per-token log-probabilities); ES(k) is printed for both.
Issue 12 allows bfloat16 for the full-CounterFact runs where agreement is ≥ 99.5%.

`--bfloat16-matmul` says how bfloat16's matrix products are computed (the rest of the model runs in
bfloat16 either way): `native` is PyTorch's own kernel; `emulated` computes each product from its
bfloat16 inputs in float32 and rounds it to bfloat16 once. That is the arithmetic of a GPU's tensor
cores and of a CPU with BF16 instructions: the product of two bfloat16 numbers is exact in float32
and the sums accumulate in float32, so only the order of the sums differs, as it does between any
two kernels. On a CPU without BF16 instructions PyTorch's native bfloat16 products are 5–8× slower
than float32 ones, while `emulated` runs at float32's speed. Give both to compare them with each
other as well as with float32 (use a small --limit: native is the slow one).

`--float32-from SHARDS` reads the float32 side from a finished run's shards instead of scoring it:
the shards of `results/counterfact_full/<model>/generic-float32/shards`, whose settings (model,
dtype, every fact, scheme, k, batch size) are checked as a resumed run checks them. Its float32
speed is then the speed those shards ran at.

`--mixed` adds a mixed-precision run (`lca-interp hijack --dtype mixed`, `evals.hijack.mixed`): its
margin bound is calibrated on CounterFact's last `--calibration-records` records (disjoint from the
first `--limit`), and it prints the bound, the pairs scored again in float32, and its speed with and
without the calibration's seconds. `--bfloat16-matmul` with no value skips the bfloat16 run. `--mixed-from SHARDS` reads the mixed side
from a `--dtype mixed` run over every record but the calibration's (`results/counterfact_full/<model>/
generic-mixed/shards`), as `--float32-from` reads float32.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dtype_agreement.py \\
        --model google/gemma-3-270m --limit 2000 [--max-prepends 4] [--out out/bench-dtype] \\
        [--float32-from results/counterfact_full/gemma-3-270m/generic-float32/shards] \\
        [--bfloat16-matmul [native] [emulated]] [--mixed]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import time
from itertools import combinations
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from lca_interp.evals.hijack import HijackScoring, ShardPlan
from lca_interp.evals.hijack.mixed import MarginBound, calibrate, calibration_facts
from lca_interp.evals.hijack.shards import merged
from lca_interp.facts import load_facts
from lca_interp.facts.relations import with_relation_ids
from lca_interp.pretrained import load_model
from lca_interp.scoring import TargetScores, efficacy_score, flips

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact" / "counterfact.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="google/gemma-3-270m")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--max-prepends", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("out/bench-dtype"))
    parser.add_argument("--float32-from", type=Path, help="a full run's shards folder to read float32 from")
    parser.add_argument("--mixed-from", type=Path, help="with --mixed: a `--dtype mixed` run's shards folder to read it from")
    parser.add_argument("--bfloat16-matmul", nargs="*", choices=("native", "emulated"), default=["native"],
                        help="how bfloat16's matrix products are computed (see above); none: no bfloat16 run")
    parser.add_argument("--mixed", action="store_true", help="also score in mixed precision (`--dtype mixed`)")
    parser.add_argument("--calibration-records", type=int, default=200, help="mixed: the last N records calibrate")
    args = parser.parse_args()
    every_fact = with_relation_ids(load_facts(str(COUNTERFACT)).facts)  # as `lca-interp hijack` reads them
    facts = every_fact[: args.limit]
    scoring = HijackScoring("generic", args.max_prepends, args.batch_size)
    scores, speed = {}, {}
    variants = ["float32", *(VARIANTS[matmul] for matmul in dict.fromkeys(args.bfloat16_matmul))] + ["mixed"] * args.mixed
    for variant in variants:
        dtype = variant.split("-")[0]
        folder = args.out / args.model.split("/")[-1] / variant
        model = load_model(args.model, device="cpu", dtype=dtype)
        if dtype == "mixed" and args.mixed_from:  # the run's own bound, as its shards were written with
            written = json.loads((args.mixed_from.parent / "hijack.json").read_text())["precision"]
            bound, calibration_seconds = MarginBound(**written["margin_bound"]), 0.0
        if dtype == "mixed" and not args.mixed_from:
            began = time.perf_counter()
            calibration, described = calibration_facts(every_fact, facts, args.calibration_records, "CounterFact")
            bound = calibrate(model, calibration, "generic", args.max_prepends, args.batch_size, described=described)
            calibration_seconds = time.perf_counter() - began
        if dtype == "mixed":
            mixed_scoring = dataclasses.replace(scoring, margin_bound=bound)
            scores[variant], seconds = _stored(ShardPlan(args.mixed_from), model, every_fact[: len(every_fact) - args.calibration_records],
                                               mixed_scoring, args.limit) if args.mixed_from else \
                ShardPlan(folder).scores(model, facts, mixed_scoring)
            rescored = scores[variant].rescored
            print(f"mixed: margin bound {bound.summed:.3f} nats summed, {bound.per_token:.3f} per token (largest errors "
                  f"{bound.largest_error:.3f}, {bound.largest_error_per_token:.3f} on {bound.calibration_pairs} pairs of "
                  f"{bound.calibration}, × {bound.safety:g}); calibration took {calibration_seconds:.1f} s; rescored "
                  f"{int(rescored.sum())} of {rescored.numel()} (fact, k) pairs ({rescored.double().mean():.1%}; by k "
                  f"{', '.join(str(v) for v in rescored.sum(1).tolist())}); with the calibration "
                  f"{scores[variant].log_prob.numel() / (seconds + calibration_seconds):.1f} pairs/s")
        elif dtype == "float32" and args.float32_from:
            scores[variant], seconds = _stored(ShardPlan(args.float32_from), model, every_fact, scoring, args.limit)
        else:
            with Bfloat16ProductsInFloat32() if variant.endswith("emulated") else contextlib.nullcontext():
                scores[variant], seconds = ShardPlan(folder).scores(model, facts, scoring)
        speed[variant] = scores[variant].log_prob.numel() / seconds
        del model
    print(f"{args.model}, {len(facts)} CounterFact records, generic scheme, k = 0..{args.max_prepends}, "
          f"batch {args.batch_size}, torch threads {torch.get_num_threads()}")
    for variant in scores:
        es = ", ".join(f"{v:.3f}" for v in efficacy_score(scores[variant]))
        print(f"  {variant:<18} {speed[variant]:6.1f} (prompt, target) pairs/s "
              f"({speed[variant] / speed['float32']:.2f}× float32); ES {es}")
    for first, second in combinations(scores, 2):
        print(f"  {second} against {first}:")
        for per_token in (False, True):
            same = flips(scores[first], per_token) == flips(scores[second], per_token)
            reading = "per-token" if per_token else "summed"
            print(f"    {reading} ES decisions that agree: {same.double().mean().item():.4%} of {same.numel()}, "
                  f"{int((~same).sum())} differ (by k: {', '.join(f'{v:.4f}' for v in same.double().mean(1).tolist())})")
        gap = (scores[second].log_prob - scores[first].log_prob).abs()
        print(f"    |Δ log P|: median {gap.median().item():.4f}, max {gap.max().item():.3f}")


# The folder (and name) of each bfloat16 variant's run.
VARIANTS = {"native": "bfloat16", "emulated": "bfloat16-emulated"}


class Bfloat16ProductsInFloat32(TorchDispatchMode):
    """While active, every matrix product of bfloat16 tensors is computed in float32 from the same
    bfloat16 inputs and rounded to bfloat16 once (`--bfloat16-matmul emulated`, above). Linear
    layers and einsums reach the dispatcher as these four ops; everything else runs untouched."""

    PRODUCTS = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default,
                torch.ops.aten.bmm.default, torch.ops.aten.baddbmm.default}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        tensors = [arg for arg in args if isinstance(arg, torch.Tensor)]
        if func in self.PRODUCTS and all(tensor.dtype == torch.bfloat16 for tensor in tensors):
            widened = [arg.float() if isinstance(arg, torch.Tensor) else arg for arg in args]
            return func(*widened, **(kwargs or {})).to(torch.bfloat16)
        return func(*args, **(kwargs or {}))

def _stored(plan: ShardPlan, model, every_fact, scoring: HijackScoring, limit: int) -> tuple[TargetScores, float]:
    """The first `limit` facts' scores from a finished run over `every_fact`, and the seconds of the
    shards that hold them (a shard that runs past `limit` is cut, its seconds in proportion)."""
    done = plan.finished(model, every_fact, scoring)
    spans = sorted(span for span in done if span[0] < limit)
    if [start for start, _ in spans] != list(range(0, limit, plan.shard_size)) or spans[-1][1] < limit:
        raise SystemExit(f"{plan.folder} does not hold shards covering facts 0..{limit}: score them first.")
    scores, seconds = merged(done, spans)
    (start, end), last_seconds = spans[-1], done[spans[-1]][1]
    seconds -= last_seconds * (end - limit) / (end - start)
    rescored = scores.rescored[:, :limit] if scores.rescored is not None else None
    return TargetScores(scores.log_prob[:, :limit], scores.n_tokens[:, :limit], rescored), seconds


if __name__ == "__main__":
    main()
