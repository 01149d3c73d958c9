"""Forward passes that share work: right-padded batches, rows read off longer rows, stems.

`score_targets` (`lca_interp.scoring`) runs every request's `prompt + target[:-1]` through the
blocks. Attention is causal, so a row that is a prefix of another is read off the longer one
(`covering_rows`), and rows that start alike run from a stem's cached keys and values
(`Stems`, `stem_streams`): the stem runs whole, every other row only the tokens after its
longest common prefix with it, attending to the cache through a mask that hides the slots past
that prefix, at the positions it has in its own row. Batches pad on the right; blocks of stems are
cut to balanced sizes (`even_chunks`), and the forwards within a block where the lengths drop
(`padding_chunks`), so rows are seldom padded far and no forward runs a handful of rows.

Everything here returns the final normalized stream, what the unembedding reads (unembedding is
the caller's). With no hook attached, a loaded LLM runs as its plain transformers stack
(`pretrained.bridge.plain_stack`: the bridge's own tensors in transformers' modules) with
transformers' KV cache; under hooks, as the model itself (`hooks.model.final_stream`), so every
hook sees whole rows.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from lca_interp.hooks.model import final_stream


def final_streams(
    model, sequences: Sequence[Sequence[int]], batch_size: int, progress: bool = False, desc: str = "score"
) -> Iterator[tuple[list[int], Float[Tensor, "batch pos d_model"]]]:
    """(indices, final normalized stream) for right-padded batches of token sequences, longest
    first so each batch pads little and the first shows the peak memory. No logits are formed."""
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    for start in tqdm(range(0, len(order), batch_size), desc=desc, disable=not progress):
        batch = order[start : start + batch_size]
        tokens, mask = _padded([sequences[i] for i in batch], _pad_id(model), model.cfg.device)
        if runs_plain(model):
            yield batch, _plain_forward(model.plain_stack, tokens, mask, _positions(mask))
        else:
            yield batch, final_stream(model, tokens)


def runs_plain(model) -> bool:
    """Whether forwards here run the plain transformers stack: only with no hook attached (a hook
    must see the model's own activations) and where the model has one (`load_model` gives it)."""
    return getattr(model, "plain_stack", None) is not None and not hooks_attached(model)


def _positions(mask: Int[Tensor, "batch pos"], start: Optional[Int[Tensor, "batch"]] = None) -> Int[Tensor, "batch pos"]:
    """Position ids of right-padded rows that begin at `start` (default 0)."""
    positions = torch.arange(mask.shape[1], device=mask.device).expand(mask.shape[0], -1)
    return positions if start is None else positions + start[:, None]


def _plain_forward(plain, tokens, mask, positions, cache=None) -> Float[Tensor, "batch pos d_model"]:
    """transformers' decoder stack: its final hidden state is the final norm's output. The KV cache
    keyword is `cache` from transformers 5.24 (`past_key_values` before)."""
    stack = plain.base_model  # the decoder without the unembedding (`model`, GPT-2's `transformer`)
    out = stack(input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=cache is not None,
                **{_cache_keyword(type(stack)): cache})
    return out.last_hidden_state


@functools.cache
def _cache_keyword(stack_class: type) -> str:
    return "cache" if "cache" in inspect.signature(stack_class.forward).parameters else "past_key_values"


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


# What one more forward costs beyond its tokens, in tokens: Gemma-3-270m on one CPU thread takes
# about 2.3 ms a token in a large batch and 38 ms for a forward of one token.
FORWARD_OVERHEAD_TOKENS = 16


def padding_chunks(items: Sequence, lengths: Sequence[int], cap: int, overhead: int = FORWARD_OVERHEAD_TOKENS) -> list[list]:
    """`items`, longest first, cut into consecutive chunks of at most `cap` that minimise the token
    slots the forwards run: Σ rows × longest row, plus `overhead` slots a forward. Right padding
    fills every row to its chunk's longest, so a chunk should end where the lengths drop (a dynamic
    programme over the cut points; chunks of equal count would pad short rows to long ones)."""
    order = sorted(range(len(items)), key=lambda i: -lengths[i])
    best, cut = [0] + [math.inf] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(max(0, end - cap), end):
            cost = best[start] + (end - start) * lengths[order[start]] + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    chunks, end = [], len(order)
    while end:
        chunks.append([items[i] for i in order[cut[end]:end]])
        end = cut[end]
    return chunks[::-1]


STEMS_PER_BLOCK = 16  # × batch_size: stems whose keys and values are kept at once


def stem_streams(
    model, runs: Sequence[tuple[int, ...]], stems: Stems, batch_size: int, progress: bool = False, desc: str = "score"
) -> Iterator[tuple[list[int], Float[Tensor, "batch pos d_model"], list[int]]]:
    """(runs, final normalized stream, offset of each row's first token in its run): a block of stems
    runs whole, batch by batch, keeping their keys and values; then every run that shares a prefix
    with one of those stems runs from the end of that prefix, with that stem's cache masked to the
    prefix. Blocks span many batches so followers of different stems fill their forwards alike."""
    from transformers import DynamicCache

    plain, pad, device = model.plain_stack, _pad_id(model), model.cfg.device
    followers: dict[int, list[int]] = {}
    for run, stem in stems.stem_of.items():
        followers.setdefault(stem, []).append(run)
    order = sorted(stems.stems, key=lambda r: -len(runs[r]))
    bar = tqdm(total=len(runs), desc=desc, disable=not progress)
    for block in even_chunks(order, STEMS_PER_BLOCK * batch_size):
        width = len(runs[block[0]])  # the block's longest stem
        keys, values = [], []  # per stem batch, per layer: [batch, kv_heads, width, d_head]
        for batch in padding_chunks(block, [len(runs[r]) for r in block], batch_size):
            tokens, mask = _padded([runs[r] for r in batch], pad, device)
            cache = DynamicCache(config=plain.config)
            yield batch, _plain_forward(plain, tokens, mask, _positions(mask), cache), [0] * len(batch)
            bar.update(len(batch))
            widen = (0, 0, 0, width - tokens.shape[1])
            keys.append([torch.nn.functional.pad(layer.keys, widen) for layer in cache.layers])
            values.append([torch.nn.functional.pad(layer.values, widen) for layer in cache.layers])
        keys = [torch.cat(layer) for layer in zip(*keys)]
        values = [torch.cat(layer) for layer in zip(*values)]
        row_of_stem = {stem: row for row, stem in enumerate(block)}
        rest = [r for stem in block for r in followers.get(stem, [])]
        # Suffixes are short, so more of them fit in one forward at the same cost.
        for chunk in padding_chunks(rest, [len(runs[r]) - stems.shared[r] for r in rest], 4 * batch_size):
            rows = torch.tensor([row_of_stem[stems.stem_of[r]] for r in chunk], device=device)
            seen = max(stems.shared[r] for r in chunk)  # cached slots past every shared prefix are never read
            visible = torch.zeros(len(chunk), seen, dtype=torch.long, device=device)
            for i, r in enumerate(chunk):
                visible[i, : stems.shared[r]] = 1
            prefix = DynamicCache([(k[rows, :, :seen], v[rows, :, :seen]) for k, v in zip(keys, values)], config=plain.config)
            suffix_tokens, suffix_mask = _padded([runs[r][stems.shared[r]:] for r in chunk], pad, device)
            shared = torch.tensor([stems.shared[r] for r in chunk], device=device)
            stream = _plain_forward(plain, suffix_tokens, torch.cat([visible, suffix_mask], 1),
                                    _positions(suffix_mask, shared), prefix)
            yield list(chunk), stream, [stems.shared[r] for r in chunk]
            bar.update(len(chunk))
        del keys, values
    bar.close()
