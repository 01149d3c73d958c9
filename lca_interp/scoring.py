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
everything else. Here the blocks run with `stop_at_layer`, the residual stream is gathered at
the positions that predict a target token, and only those go through `ln_final`, the
unembedding and the softcap, exactly as `HookedTransformer.forward` applies them. Those
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
mask that hides the slots past that prefix (TransformerLens rotates keys when they are read and
derives positions from the mask, so positions are exact). Each row then costs its own suffix
instead of its whole length, and the suffixes of a block's stems fill forwards of similar
lengths. This path runs only when no hooks are attached: a hook sees activations of whole
sequences, so under hooks every row runs whole.

Batching pads on the right. Attention is causal, so a position never sees the padding after it
and no attention mask is needed; rotary positions are unchanged. Prompts are tokenized with the
model's own BOS convention (`cfg.default_prepend_bos`, which `load_model` sets to the
tokenizer's), and a target's tokens are the tail of the joint tokenization of prompt + " " +
target, exactly what the model reads when the text is written out whole.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.utilities.activation_functions import apply_softcap

from lca_interp.facts import Fact
from lca_interp.prompts import Donors, check_scheme, hijack_sentences, hijacked_prompt


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


def final_normalized(
    model, residual: Float[Tensor, "batch pos d_model"], rows: Int[Tensor, "n"], positions: Int[Tensor, "n"]
) -> Float[Tensor, "n 1 d_model"]:
    """The final residual stream (`stop_at_layer=n_layers`) at chosen (row, position) pairs,
    through `ln_final`: what the unembedding reads."""
    picked = residual[rows, positions][:, None]
    return model.ln_final(picked) if model.cfg.normalization_type is not None else picked


def logits_at(
    model, residual: Float[Tensor, "batch pos d_model"], rows: Int[Tensor, "n"], positions: Int[Tensor, "n"]
) -> Float[Tensor, "n d_vocab"]:
    """Logits at chosen (row, position) pairs of a final residual stream (`stop_at_layer=n_layers`),
    through `ln_final`, the unembedding and the output softcap as `HookedTransformer.forward` does."""
    # TL's Unembed.forward copies W_Uᵀ to a contiguous tensor on every call (670 MB for Gemma's
    # vocabulary); the same product straight from W_U, with the unembed hooks still firing:
    unembed = model.unembed
    logits = unembed.hook_out(unembed.hook_in(final_normalized(model, residual, rows, positions)) @ unembed.W_U + unembed.b_U)
    return apply_softcap(logits, model.cfg.output_logits_soft_cap)[:, 0]


UNEMBED_ROWS = 256  # scored positions unembedded together
VOCAB_BLOCK_CPU = 2048  # logits of 256 positions × 2048 entries (2 MB) stay in cache while reduced


def next_token_log_probs(model, normalized: Float[Tensor, "n d_model"], next_ids: Int[Tensor, "n"]) -> Float[Tensor, "n"]:
    """log P(next_ids[i]) in float32 from final-normalized residuals, without the [n, d_vocab]
    logits: the unembedding runs a block of the vocabulary at a time (bias and softcap included)
    and a running logsumexp reduces each block while it is still in cache. On a CPU this is about
    twice as fast as forming the logits whole and reducing them (BENCHMARKS.md); the unembed hooks
    do not fire, so `score_targets` uses it only when none is attached."""
    unembed, cap = model.unembed, model.cfg.output_logits_soft_cap
    vocab = unembed.W_U.shape[1]
    block = VOCAB_BLOCK_CPU if normalized.device.type == "cpu" else vocab
    running_max = torch.full((len(next_ids),), -torch.inf, device=normalized.device)
    running_sum = torch.zeros(len(next_ids), device=normalized.device)
    for start in range(0, vocab, block):
        logits = apply_softcap(torch.addmm(unembed.b_U[start : start + block], normalized, unembed.W_U[:, start : start + block]), cap).float()
        new_max = torch.maximum(running_max, logits.amax(-1))
        running_sum = running_sum * (running_max - new_max).exp() + (logits - new_max[:, None]).exp_().sum(-1)
        running_max = new_max
    target_columns = unembed.W_U[:, next_ids]  # [d_model, n]
    picked = apply_softcap((normalized * target_columns.T).sum(-1) + unembed.b_U[next_ids], cap).float()
    return picked - running_max - running_sum.log()


def final_residuals(
    model, sequences: Sequence[Sequence[int]], batch_size: int, progress: bool = False, desc: str = "score"
) -> Iterator[tuple[list[int], Float[Tensor, "batch pos d_model"]]]:
    """(indices, final residual stream) for right-padded batches of token sequences, longest
    first so each batch pads little and the first shows the peak memory. The blocks run with
    `stop_at_layer`: no logits are formed here."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress):
        batch = order[start : start + batch_size]
        tokens, _ = _padded([sequences[i] for i in batch], _pad_id(model), model.cfg.device)
        yield batch, model(tokens, stop_at_layer=model.cfg.n_layers)


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
    for batch, residual in final_residuals(model, encoded, batch_size, progress, desc="last-token logits"):
        last = torch.tensor([len(encoded[i]) - 1 for i in batch])
        yield batch, logits_at(model, residual, torch.arange(len(batch)), last)


def covering_rows(sequences: Sequence[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], list[int]]:
    """The sequences that must run, and for each input the index of the run that contains it as a
    prefix. In lexicographic order everything that starts with `s` directly follows `s`, so `s`
    is covered iff its successor starts with it, and then by whatever covers the successor."""
    unique = sorted(set(sequences))
    runs: list[tuple[int, ...]] = []
    run_of: dict[tuple[int, ...], int] = {}
    for i in reversed(range(len(unique))):
        sequence = unique[i]
        after = unique[i + 1] if i + 1 < len(unique) else None
        if after is not None and after[: len(sequence)] == sequence:
            run_of[sequence] = run_of[after]
        else:
            run_of[sequence] = len(runs)
            runs.append(sequence)
    return runs, [run_of[s] for s in sequences]


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


@dataclass
class Stems:
    """Which runs start each group (`stems`) and, for every other run, its stem and the length of
    the prefix it shares with it (`shared`, ≥ 1). A run with no shared prefix is a stem itself."""

    stems: list[int]
    stem_of: dict[int, int]
    shared: dict[int, int]

    @classmethod
    def of(cls, runs: Sequence[tuple[int, ...]], group_of_run: Sequence[object]) -> "Stems":
        groups: dict[object, list[int]] = {}
        for run, group in enumerate(group_of_run):
            groups.setdefault(group, []).append(run)
        stems, stem_of, shared = [], {}, {}
        for members in groups.values():
            stem = max(members, key=lambda r: len(runs[r]))
            stems.append(stem)
            for run in members:
                if run != stem:
                    n = common_prefix(runs[run], runs[stem])
                    if n == 0:
                        stems.append(run)
                    else:
                        stem_of[run], shared[run] = stem, n
        return cls(stems, stem_of, shared)


def hooks_attached(model) -> bool:
    return any(point.fwd_hooks for point in model.hook_dict.values())


def _padded(sequences: Sequence[Sequence[int]], pad: int, device) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
    """Right-padded tokens and their attention mask (1 on real tokens)."""
    tokens = torch.full((len(sequences), max(map(len, sequences))), pad, dtype=torch.long)
    mask = torch.zeros_like(tokens)
    for row, sequence in enumerate(sequences):
        tokens[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    return tokens.to(device), mask.to(device)


def _pad_id(model) -> int:
    return model.tokenizer.pad_token_id if getattr(model.tokenizer, "pad_token_id", None) is not None else 0


def even_chunks(items: Sequence, cap: int) -> list[Sequence]:
    """`items` in the fewest consecutive chunks of at most `cap`, sizes differing by at most one: no small
    last chunk, whose forward would cost almost as much as a full one (reading every weight)."""
    count = math.ceil(len(items) / cap)
    if count == 0:
        return []
    size, longer = divmod(len(items), count)  # the first `longer` chunks hold one more
    starts = [i * size + min(i, longer) for i in range(count + 1)]
    return [items[a:b] for a, b in zip(starts, starts[1:])]


STEMS_PER_BLOCK = 16  # × batch_size: stems whose keys and values are kept at once


def stem_residuals(
    model, runs: Sequence[tuple[int, ...]], stems: Stems, batch_size: int, progress: bool = False, desc: str = "score"
) -> Iterator[tuple[list[int], Float[Tensor, "batch pos d_model"], list[int]]]:
    """(runs, final residual stream, offset of each row's first token in its run): a block of stems
    runs whole, batch by batch, keeping their keys and values; then every run that shares a prefix
    with one of those stems runs from the end of that prefix, with that stem's cache masked to the
    prefix. Blocks span many batches so followers of different stems fill their forwards alike."""
    from transformer_lens.cache.key_value_cache import TransformerLensKeyValueCache
    from transformer_lens.cache.key_value_cache_entry import TransformerLensKeyValueCacheEntry

    pad, device = _pad_id(model), model.cfg.device
    followers: dict[int, list[int]] = {}
    for run, stem in stems.stem_of.items():
        followers.setdefault(stem, []).append(run)
    order = sorted(stems.stems, key=lambda r: -len(runs[r]))
    bar = tqdm(total=len(runs), desc=desc, disable=not progress)
    for block in even_chunks(order, STEMS_PER_BLOCK * batch_size):
        width = len(runs[block[0]])  # the block's longest stem
        keys, values = [], []  # per stem batch, per layer: [batch, width, kv_heads, d_head]
        for batch in even_chunks(block, batch_size):
            tokens, mask = _padded([runs[r] for r in batch], pad, device)
            cache = TransformerLensKeyValueCache.init_cache(model.cfg, device, len(batch))
            yield batch, model(tokens, stop_at_layer=model.cfg.n_layers, attention_mask=mask, past_kv_cache=cache), [0] * len(batch)
            bar.update(len(batch))
            widen = (0, 0, 0, 0, 0, width - tokens.shape[1])
            keys.append([torch.nn.functional.pad(e.past_keys, widen) for e in cache.entries])
            values.append([torch.nn.functional.pad(e.past_values, widen) for e in cache.entries])
        keys = [torch.cat(layer) for layer in zip(*keys)]
        values = [torch.cat(layer) for layer in zip(*values)]
        row_of_stem = {stem: row for row, stem in enumerate(block)}
        rest = sorted((r for stem in block for r in followers.get(stem, [])), key=lambda r: -(len(runs[r]) - stems.shared[r]))
        # Suffixes are short, so more of them fit in one forward at the same cost.
        for chunk in even_chunks(rest, 4 * batch_size):
            rows = torch.tensor([row_of_stem[stems.stem_of[r]] for r in chunk], device=device)
            seen = max(stems.shared[r] for r in chunk)  # cached slots past every shared prefix are never read
            visible = torch.zeros(len(chunk), seen, dtype=torch.long, device=device)
            for i, r in enumerate(chunk):
                visible[i, : stems.shared[r]] = 1
            entries = [TransformerLensKeyValueCacheEntry(k[rows, :seen], v[rows, :seen], frozen=True) for k, v in zip(keys, values)]
            prefix_cache = TransformerLensKeyValueCache(entries, visible, frozen=True)
            suffix_tokens, suffix_mask = _padded([runs[r][stems.shared[r]:] for r in chunk], pad, device)
            residual = model(suffix_tokens, stop_at_layer=model.cfg.n_layers, attention_mask=suffix_mask, past_kv_cache=prefix_cache)
            yield list(chunk), residual, [stems.shared[r] for r in chunk]
            bar.update(len(chunk))
        del keys, values
    bar.close()


@dataclass
class TargetScores:
    """log P(target | prompt) of each request, summed over the target's tokens, and how many
    tokens that was: the two readings of a multi-token target's probability."""

    log_prob: Float[Tensor, "*shape"]  # float64
    n_tokens: Int[Tensor, "*shape"]

    def per_token(self) -> Float[Tensor, "*shape"]:
        """The mean log-probability per target token (ROME's CounterFact reading)."""
        return self.log_prob / self.n_tokens

    def view(self, *shape: int) -> "TargetScores":
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
    window = getattr(model.cfg, "window_size", None)  # local attention masks by slot, which holes would shift
    if hooks_attached(model) or (window is not None and 2 * max(map(len, runs)) > window):
        batches = ((batch, residual, [0] * len(batch)) for batch, residual in final_residuals(model, runs, batch_size, progress))
    else:
        group_of_run: list[Hashable] = [None] * len(runs)
        for i, run in enumerate(run_of):
            group_of_run[run] = groups[i] if groups is not None else prompts[i]
        stems = Stems.of(runs, group_of_run)
        for run, stem in stems.stem_of.items():  # positions inside the shared prefix are read off the stem
            reads[stem] += [read for read in reads[run] if read[1] < stems.shared[run]]
            reads[run] = [read for read in reads[run] if read[1] >= stems.shared[run]]
        batches = stem_residuals(model, runs, stems, batch_size, progress)
    result = torch.zeros(len(encoded), dtype=torch.float64)
    blockwise = not any(point.fwd_hooks for point in (model.unembed.hook_in, model.unembed.hook_out))
    pending: list[tuple[Tensor, Tensor, Tensor]] = []  # (normalized, requests, next ids) awaiting the unembedding

    def unembed_pending() -> None:
        normalized, requests, next_ids = (torch.cat(column) for column in zip(*pending))
        log_probs = next_token_log_probs(model, normalized, next_ids.to(normalized.device))
        result.index_add_(0, requests, log_probs.double().cpu())
        pending.clear()

    for batch, residual, offsets in batches:
        triples = [(row, request, position - offsets[row], token)
                   for row, run in enumerate(batch) for request, position, token in reads[run]]
        if not triples:
            continue
        rows, requests, positions, next_ids = (torch.tensor(column) for column in zip(*triples))
        if blockwise:
            # Scored positions wait until enough have gathered: every unembedding pass reads all of
            # W_U (670 MB for Gemma), which a few rows cannot pay for.
            pending.append((final_normalized(model, residual, rows, positions)[:, 0], requests, next_ids))
            if sum(len(part[1]) for part in pending) >= UNEMBED_ROWS:
                unembed_pending()
            continue
        logits = logits_at(model, residual, rows, positions).float()
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


def flips(scores: TargetScores, per_token: bool = False) -> Float[Tensor, "k fact"]:
    """1 where the false target beats the true one: summed log-probabilities (paper A) or, with
    `per_token`, mean log-probabilities per token (ROME's CounterFact code)."""
    values = scores.per_token() if per_token else scores.log_prob
    return (values[..., 1] > values[..., 0]).double()


def efficacy_score(scores: TargetScores, per_token: bool = False) -> list[float]:
    """ES(k): the fraction of facts whose false target wins, for each k."""
    return flips(scores, per_token).mean(1).tolist()
