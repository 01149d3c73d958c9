"""Which layers, heads, hook points and inputs a probe acts on, validated in one place.

Probes accept what a researcher types in a REPL: `layers=None` for all, an int or a list; heads
as `(layer, head)` pairs; inputs as a string, a list of strings or a token tensor. Anything out
of range is refused with one sentence before a hook is attached, so a typo never silently
measures nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, Union

import torch
from jaxtyping import Int
from torch import Tensor

Inputs = Union[str, Sequence[str], Int[Tensor, "batch pos"]]


HeadLike = tuple[int, int]  # what probes accept: a `Head` or any (layer, head) pair


class Head(NamedTuple):
    """One attention head: a (layer, head) pair that prints as "L{layer}H{head}", the label
    attribution, rankings and figures use. JSON writes it as [layer, head]."""

    layer: int
    head: int

    def __str__(self) -> str:
        return f"L{self.layer}H{self.head}"

    @classmethod
    def parse(cls, label: str) -> "Head":
        match = re.fullmatch(r"L(\d+)H(\d+)", label)
        if match is None:
            raise ValueError(f"{label!r} is not a head label like 'L12H2'.")
        return cls(int(match[1]), int(match[2]))


def layers_of(model, layers: Union[int, Iterable[int], None] = None) -> list[int]:
    """Sorted distinct layer indices; None means every layer. Negative indices count from the end."""
    n = model.cfg.n_layers
    if layers is None:
        return list(range(n))
    chosen = [layers] if isinstance(layers, int) else list(layers)
    if not chosen:
        raise ValueError("no layers given; pass None for every layer.")
    for layer in chosen:
        if not isinstance(layer, int) or not -n <= layer < n:
            raise ValueError(f"layer {layer!r} does not exist; the model has layers 0..{n - 1}.")
    return sorted({layer % n for layer in chosen})


def heads_of(model, heads: Iterable[HeadLike]) -> list[Head]:
    """Distinct (layer, head) pairs in the order given, each checked against the model."""
    chosen = list(dict.fromkeys((int(layer), int(head)) for layer, head in heads))
    if not chosen:
        raise ValueError("no heads given; pass (layer, head) pairs.")
    for layer, head in chosen:
        layers_of(model, layer)
        if not 0 <= head < model.cfg.n_heads:
            raise ValueError(f"head {head} does not exist in layer {layer}; heads are 0..{model.cfg.n_heads - 1}.")
    return [Head(layer % model.cfg.n_layers, head) for layer, head in chosen]


def require_hook(model, name: str) -> str:
    """`name` if the model has that hook point, else a ValueError naming a close match."""
    if name not in model.hook_dict:
        import difflib

        close = difflib.get_close_matches(name, list(model.hook_dict), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else "; see model.hook_dict for the names."
        raise ValueError(f"the model has no hook point {name!r}{hint}")
    return name


def as_tokens(model, inputs: Inputs) -> Int[Tensor, "batch pos"]:
    """A token tensor on the model's device. Strings use the model's tokenizer and BOS convention
    (a list is right-padded); a tensor is taken as it is, [pos] or [batch, pos]."""
    if isinstance(inputs, Tensor):
        if inputs.dtype.is_floating_point or inputs.ndim not in (1, 2):
            raise ValueError(f"token ids must be an integer tensor [batch, pos] or [pos], got {inputs.dtype} {tuple(inputs.shape)}.")
        tokens = inputs if inputs.ndim == 2 else inputs[None]
    else:
        if getattr(model, "tokenizer", None) is None:
            raise ValueError("this model has no tokenizer; pass token ids as an integer tensor [batch, pos].")
        tokens = model.to_tokens(inputs, padding_side="right", truncate=False)
    if tokens.shape[-1] > model.cfg.n_ctx:
        raise ValueError(f"the input is {tokens.shape[-1]} tokens, longer than the model's context of {model.cfg.n_ctx}.")
    return tokens.to(model.cfg.device)


def last_positions(model, inputs: Inputs) -> Int[Tensor, "batch"]:
    """Index of each row's last real token: strings are right-padded, tensors are taken as full."""
    tokens = as_tokens(model, inputs)
    if isinstance(inputs, Tensor) or isinstance(inputs, str):
        return torch.full((tokens.shape[0],), tokens.shape[-1] - 1, dtype=torch.long)
    lengths = [len(model.to_tokens(text, truncate=False)[0]) for text in inputs]
    return torch.tensor(lengths, dtype=torch.long) - 1


def over_batches(fn: Callable[[slice], Tensor], n: int, batch_size: int, desc: str = "", progress: bool = False) -> Tensor:
    """`fn` on slices of `batch_size` of n inputs, concatenated along the first axis: how the
    evals run a probe over more prompts than fit one forward."""
    from tqdm.auto import tqdm

    starts = range(0, n, batch_size)
    return torch.cat([fn(slice(s, s + batch_size)) for s in tqdm(starts, desc=desc, disable=not progress or not desc)])
