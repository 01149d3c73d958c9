"""Batched log P(target | prompt) for multi-token targets, unembedding only what is needed.

Context
-------
Context hijacking compares P(o_ | context) with P(o* | context), where each target may span
several tokens: log P(target | prompt) = Σ_i log P(target_i | prompt, target_<i). One forward
pass over `prompt + target[:-1]` gives every factor, read at the last prompt position and the
target positions after it.

Cost
----
Gemma's vocabulary has 262,144 entries, so logits for a whole [batch, pos] grid dominate
everything else. Here the blocks and the final norm run without the unembedding
(`shared_prefixes`), the normalized stream is gathered at the positions that predict a target
token, and only those go through the unembedding and the softcap, as the model's forward
applies them. Those
positions wait until a few hundred have gathered (each unembedding reads all of W_U, 670 MB for
Gemma), then the unembedding runs one vocabulary block at a time with a running logsumexp, so
the [n, d_vocab] logits never exist whole (`next_token_log_probs`; skipped when a hook on the
unembedding must see the logits).

Requests share forward passes: attention is causal, so the activations at a sequence's positions
are the same in any longer sequence that starts with it. A request whose `prompt + target[:-1]`
is a prefix of another's (the two targets of a fact when one is a single token, or the same
request twice) is read off the longer row, so most facts cost one row instead of two.

Requests also share prefixes. Rows of one group (by default the rows of one prompt;
`hijack_requests` groups every request whose fact has the same hijack context, so all facts whose
o_ is "Chicago" are one group) mostly start like the group's longest row, its stem: "Do not think
of Chicago. Do not think of Chicago. The Eiffel Tower is in" starts with the k = 1 prompt's hijack
sentence, and with the Willis Tower's k = 2 prompt's two. Stems run first, a block of many
batches at a time, keeping their keys and values; every other row runs only the tokens after its
longest common prefix with its stem, attending to the stem's cached keys through an attention
mask that hides the slots past that prefix, at its own positions (transformers caches keys
rotated for the positions they were computed at, and the suffix gets explicit position ids), so
positions are exact. Each row then costs its own suffix
instead of its whole length, and the suffixes of a block's stems fill forwards of similar
lengths. This path runs only when no hooks are attached: a hook sees activations of whole
sequences, so under hooks every row runs whole.

Batching pads on the right. Attention is causal, so a position never sees the padding after it;
rotary positions are unchanged. Prompts are tokenized with the
model's own BOS convention (`cfg.default_prepend_bos`, which `load_model` sets to the
tokenizer's), and a target's tokens are the tail of the joint tokenization of prompt + " " +
target, exactly what the model reads when the text is written out whole.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens.utilities.activation_functions import apply_softcap

from lca_interp.facts import Fact
from lca_interp.hooks.model import attention_window, bias_or_zeros, has_final_norm
from lca_interp.prompts import Donors, check_scheme, hijack_sentences, hijacked_prompt
from lca_interp.shared_prefixes import (
    Stems,
    covering_rows,
    final_streams,
    runs_plain,
    stem_streams,
)


def encode_target(model, target: str) -> list[int]:
    """Token ids of " " + target, without BOS."""
    ids = model.to_tokens(" " + target.strip(), prepend_bos=False, truncate=False)[0].tolist()
    if not ids:
        raise ValueError(f"target {target!r} encodes to no tokens.")
    return ids


def split_joint(model, prompt_ids: list[int], prompt: str, target: str) -> list[int]:
    """The target's tokens as the model sees them after the prompt: the tail of the joint
    tokenization of prompt + " " + target (refused when the two merge across the boundary)."""
    joint = encode_prompt(model, f"{prompt} {target.strip()}")
    if joint[: len(prompt_ids)] != prompt_ids or len(joint) == len(prompt_ids):
        raise ValueError(f"{prompt!r} and its target {target!r} tokenize into tokens that cross their boundary; "
                         "the target's probability after the prompt is not defined token by token.")
    return joint[len(prompt_ids):]


def encode_prompt(model, prompt: str) -> list[int]:
    """Token ids of the prompt with the model's BOS convention. Never truncated (TL's default
    would cut to n_ctx silently); the caller checks the length."""
    return model.to_tokens(prompt, truncate=False)[0].tolist()


def token_positions(model, text: str, start: int, end: int, leading_space: bool = False) -> list[int]:
    """Token positions covering characters [start, end) of `text` (with the model's BOS).

    With `leading_space`, a space just before `start` belongs to the span (BPE tokenizers attach
    it to the word's first token). Counts the tokens of text[:start] and text[:end]; refuses when
    the tokenization of `text` does not start with that of text[:end] (a token straddling the end)."""
    if leading_space and start > 0 and text[start - 1] == " ":
        start -= 1
    upto = encode_prompt(model, text[:end])
    if encode_prompt(model, text)[: len(upto)] != upto:
        raise ValueError(f"the tokenizer merges across character {end} of {text!r}; cannot locate the span.")
    return list(range(len(encode_prompt(model, text[:start])), len(upto)))


def unembed_normalized(model, normalized: Float[Tensor, "n d_model"]) -> Float[Tensor, "n d_vocab"]:
    """Logits from the final normalized stream: the unembedding (its hooks firing) and the output
    softcap, as the model's forward applies them."""
    # TL's Unembed.forward copies W_Uᵀ to a contiguous tensor on every call (670 MB for Gemma's
    # vocabulary); the same product straight from W_U:
    unembed = model.unembed
    logits = unembed.hook_out(unembed.hook_in(normalized[:, None]) @ unembed.W_U + _unembed_bias(model))
    return apply_softcap(logits, model.cfg.output_logits_soft_cap)[:, 0]


def logits_at(
    model, residual: Float[Tensor, "batch pos d_model"], rows: Int[Tensor, "n"], positions: Int[Tensor, "n"]
) -> Float[Tensor, "n d_vocab"]:
    """Logits at chosen (row, position) pairs of a final residual stream (before the final norm)."""
    picked = residual[rows, positions][:, None]
    return unembed_normalized(model, (model.ln_final(picked) if has_final_norm(model) else picked)[:, 0])


def _unembed_bias(model) -> Tensor:
    return bias_or_zeros(model.unembed, "b_U", model.unembed.W_U.shape[1])


UNEMBED_ROWS = 256  # scored positions unembedded together
VOCAB_BLOCK_CPU = 2048  # logits of 256 positions × 2048 entries (2 MB) stay in cache while reduced


def next_token_log_probs(model, normalized: Float[Tensor, "n d_model"], next_ids: Int[Tensor, "n"]) -> Float[Tensor, "n"]:
    """log P(next_ids[i]) in float32 from final-normalized residuals, without the [n, d_vocab]
    logits: the unembedding runs a block of the vocabulary at a time (bias and softcap included)
    and a running logsumexp reduces each block while it is still in cache. On a CPU this is about
    twice as fast as forming the logits whole and reducing them (BENCHMARKS.md); the unembed hooks
    do not fire, so `score_targets` uses it only when none is attached."""
    unembed, cap, b_U = model.unembed, model.cfg.output_logits_soft_cap, _unembed_bias(model)
    vocab = unembed.W_U.shape[1]
    block = VOCAB_BLOCK_CPU if normalized.device.type == "cpu" else vocab
    running_max = torch.full((len(next_ids),), -torch.inf, device=normalized.device)
    running_sum = torch.zeros(len(next_ids), device=normalized.device)
    for start in range(0, vocab, block):
        logits = apply_softcap(torch.addmm(b_U[start : start + block], normalized, unembed.W_U[:, start : start + block]), cap).float()
        new_max = torch.maximum(running_max, logits.amax(-1))
        running_sum = running_sum * (running_max - new_max).exp() + (logits - new_max[:, None]).exp_().sum(-1)
        running_max = new_max
    target_columns = unembed.W_U[:, next_ids]  # [d_model, n]
    picked = apply_softcap((normalized * target_columns.T).sum(-1) + b_U[next_ids], cap).float()
    return picked - running_max - running_sum.log()


@torch.no_grad()
def last_token_logits(
    model, prompts: Sequence[str], batch_size: int = 16, progress: bool = False
) -> Iterator[tuple[list[int], Float[Tensor, "batch d_vocab"]]]:
    """(indices, logits at each prompt's last token) batch by batch: the next-token distribution
    without the [pos, vocab] grid."""
    encoded = [encode_prompt(model, prompt) for prompt in prompts]
    for prompt_ids in encoded:
        if len(prompt_ids) > model.cfg.n_ctx:
            raise ValueError(f"a prompt is {len(prompt_ids)} tokens, longer than the model's context of {model.cfg.n_ctx}.")
    for batch, stream in final_streams(model, encoded, batch_size, progress, desc="last-token logits"):
        last = torch.tensor([len(encoded[i]) - 1 for i in batch])
        yield batch, unembed_normalized(model, stream[torch.arange(len(batch)), last.to(stream.device)])


@dataclass
class TargetScores:
    """log P(target | prompt) of each request, summed over the target's tokens, and how many
    tokens that was: the two readings of a multi-token target's probability."""

    log_prob: Float[Tensor, "*shape"]  # float64
    n_tokens: Int[Tensor, "*shape"]
    # mixed precision (`evals.hijack.mixed`): the (k, fact) pairs scored again in float32
    rescored: Optional[Bool[Tensor, "k fact"]] = None

    def per_token(self) -> Float[Tensor, "*shape"]:
        """The mean log-probability per target token (ROME's CounterFact reading)."""
        return self.log_prob / self.n_tokens

    def view(self, *shape: int) -> "TargetScores":
        if self.rescored is not None:
            raise ValueError("scores with rescored pairs keep their [k, fact, 2] shape.")
        return TargetScores(self.log_prob.view(*shape), self.n_tokens.view(*shape))


@torch.no_grad()
def score_targets(
    model,
    prompts: Sequence[str],
    targets: Sequence[str],
    batch_size: int = 16,
    progress: bool = False,
    groups: Optional[Sequence[Hashable]] = None,
) -> TargetScores:
    """log P(targets[i] | prompts[i]) over the target's tokens, and their number, for every i.

    `batch_size` counts forward rows; requests that share a row (see the module docstring) are
    scored together. `groups` (one key per request; default: its prompt) says which requests'
    rows share a stem."""
    if len(prompts) != len(targets):
        raise ValueError(f"got {len(prompts)} prompts but {len(targets)} targets.")
    if groups is not None and len(groups) != len(prompts):
        raise ValueError(f"got {len(groups)} groups for {len(prompts)} prompts.")
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}.")
    prompt_cache: dict[str, list[int]] = {}
    encoded = []
    for i, (prompt, target) in enumerate(zip(prompts, targets)):
        if prompt not in prompt_cache:
            prompt_cache[prompt] = encode_prompt(model, prompt)
        prompt_ids = prompt_cache[prompt]
        target_ids = split_joint(model, prompt_ids, prompt, target)
        length = len(prompt_ids) + len(target_ids) - 1
        if length > model.cfg.n_ctx:
            raise ValueError(
                f"prompt {i} with its target is {length} tokens, longer than the model's context of "
                f"{model.cfg.n_ctx}; shorten it or use fewer prepended sentences."
            )
        encoded.append((prompt_ids, target_ids))
    runs, run_of = covering_rows([tuple(p + t[:-1]) for p, t in encoded])
    # Every (position, next token) pair that scores one token of request i, grouped by run.
    reads: list[list[tuple[int, int, int]]] = [[] for _ in runs]  # (request, position, token)
    for i, (prompt_ids, target_ids) in enumerate(encoded):
        reads[run_of[i]] += [(i, len(prompt_ids) - 1 + j, token) for j, token in enumerate(target_ids)]
    window = attention_window(model)  # local attention masks by slot, which holes would shift
    if not runs_plain(model) or (window is not None and 2 * max(map(len, runs)) > window):
        batches = ((batch, stream, [0] * len(batch)) for batch, stream in final_streams(model, runs, batch_size, progress))
    else:
        group_of_run: list[Hashable] = [None] * len(runs)
        for i, run in enumerate(run_of):
            group_of_run[run] = groups[i] if groups is not None else prompts[i]
        stems = Stems.of(runs, group_of_run)
        for run, stem in stems.stem_of.items():  # positions inside the shared prefix are read off the stem
            reads[stem] += [read for read in reads[run] if read[1] < stems.shared[run]]
            reads[run] = [read for read in reads[run] if read[1] >= stems.shared[run]]
        batches = stem_streams(model, runs, stems, batch_size, progress)
    result = torch.zeros(len(encoded), dtype=torch.float64)
    blockwise = not any(point.fwd_hooks for point in (model.unembed.hook_in, model.unembed.hook_out))
    pending: list[tuple[Tensor, Tensor, Tensor]] = []  # (normalized, requests, next ids) awaiting the unembedding

    def unembed_pending() -> None:
        normalized, requests, next_ids = (torch.cat(column) for column in zip(*pending))
        log_probs = next_token_log_probs(model, normalized, next_ids.to(normalized.device))
        result.index_add_(0, requests, log_probs.double().cpu())
        pending.clear()

    for batch, stream, offsets in batches:
        triples = [(row, request, position - offsets[row], token)
                   for row, run in enumerate(batch) for request, position, token in reads[run]]
        if not triples:
            continue
        rows, requests, positions, next_ids = (torch.tensor(column) for column in zip(*triples))
        if blockwise:
            # Scored positions wait until enough have gathered: every unembedding pass reads all of
            # W_U (670 MB for Gemma), which a few rows cannot pay for.
            pending.append((stream[rows.to(stream.device), positions.to(stream.device)], requests, next_ids))
            if sum(len(part[1]) for part in pending) >= UNEMBED_ROWS:
                unembed_pending()
            continue
        logits = unembed_normalized(model, stream[rows.to(stream.device), positions.to(stream.device)]).float()
        # x_t − logsumexp(x) in float32: within 3e-6 of a float64 log-softmax over Gemma's 262,144
        # entries, at a quarter of its cost.
        picked = logits[torch.arange(len(next_ids)), next_ids.to(logits.device)]
        log_probs = (picked - logits.logsumexp(-1)).double()
        result.index_add_(0, requests, log_probs.cpu())
    if pending:
        unembed_pending()
    return TargetScores(result, torch.tensor([len(t) for _, t in encoded]))


def target_log_probs(model, prompts: Sequence[str], targets: Sequence[str], batch_size: int = 16,
                     progress: bool = False) -> Float[Tensor, "n"]:
    """log P(targets[i] | prompts[i]) summed over the target's tokens, as float64 [n]."""
    return score_targets(model, prompts, targets, batch_size, progress).log_prob


def hijack_requests(
    facts: Sequence[Fact], scheme: str, max_prepends: int, donors: Optional[Donors] = None
) -> tuple[list[str], list[str], list[str]]:
    """Prompts, targets and share groups of every fact behind k = 0..max_prepends hijack sentences,
    ordered [k, fact, (true, false)]. A request's group is its fact's longest hijack context: facts
    whose contexts are the same sentences (generic: every fact whose o_ is "English") share one
    stem, so those sentences are encoded once for all of them."""
    check_scheme(scheme)
    if max_prepends < 0:
        raise ValueError(f"max_prepends must be ≥ 0, got {max_prepends}.")
    if not facts:
        raise ValueError("no facts to evaluate.")
    contexts = [" ".join(hijack_sentences(fact, scheme, max_prepends, donors)) for fact in facts]
    prompts, targets, groups = [], [], []
    for k in range(max_prepends + 1):
        for fact, context in zip(facts, contexts):
            prompt = hijacked_prompt(fact, scheme, k, donors)
            prompts += [prompt, prompt]
            targets += [fact.target_true, fact.target_false]
            groups += [context, context]
    return prompts, targets, groups


def hijack_scores(
    model, facts: Sequence[Fact], scheme: str, max_prepends: int, batch_size: int = 16, progress: bool = False,
    donors: Optional[Donors] = None,
) -> TargetScores:
    """log P(o*) and log P(o_) of every fact behind k = 0..max_prepends hijack sentences, [k, fact,
    (true, false)], scored in one `score_targets` call (under whatever hooks are on the model)."""
    prompts, targets, groups = hijack_requests(facts, scheme, max_prepends, donors)
    return score_targets(model, prompts, targets, batch_size, progress, groups).view(max_prepends + 1, len(facts), 2)


def margin(scores: TargetScores, per_token: bool = False) -> Float[Tensor, "k fact"]:
    """log P(o_) − log P(o*): summed over the targets' tokens (paper A) or, with `per_token`, of the
    mean log-probabilities per token (ROME's CounterFact code). An ES decision is its sign."""
    values = scores.per_token() if per_token else scores.log_prob
    return values[..., 1] - values[..., 0]


def flips(scores: TargetScores, per_token: bool = False) -> Float[Tensor, "k fact"]:
    """1 where the false target beats the true one, by either reading (`margin`)."""
    return (margin(scores, per_token) > 0).double()


def efficacy_score(scores: TargetScores, per_token: bool = False) -> list[float]:
    """ES(k): the fraction of facts whose false target wins, for each k."""
    return flips(scores, per_token).mean(1).tolist()
