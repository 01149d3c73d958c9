"""Paper B's argument-passing heads: which heads carry the subject to the last position.

Two measurements per head, over recall prompts (`recall.items`):

- patching: the drop in P(answer) when the head's output at the last position is replaced by its
  output on the corrupted twin (another country, same token length);
- correlation: across prompts, Pearson's r between the head's attention from the last position
  to the subject and its direct logit attribution to the subject's own first token (paper B's
  "projection on the subject's unembedding"), with a permutation p-value per head.

`head_memory_scores` then reads a head's OV circuit as paper A's associative memory, country
tokens → capital tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens.utilities import get_act_name

from lca_interp.evals.recall.items import RecallItem
from lca_interp.fit import pearson, permutation_p_value
from lca_interp.hooks.attention import attention_mass
from lca_interp.hooks.attribution import direct_logit_attribution
from lca_interp.hooks.circuits import memory_score, pairs_reference, token_map_circuit
from lca_interp.hooks.model import final_residual_from
from lca_interp.hooks.select import Head, over_batches
from lca_interp.scoring import encode_prompt, encode_target, logits_at


@dataclass
class HeadScore:
    head: str
    patch_effect: float  # mean drop in P(answer) when patched from the corrupted twin
    correlation: float  # r(attention to subject, DLA to the subject's own token) over prompts
    correlation_p: float  # two-sided permutation p-value of that r (shuffled prompts)
    subject_attention: float


@torch.no_grad()
def argument_passing_heads(model, items: Sequence[RecallItem], batch_size: int = 16, progress: bool = True,
                           n_permutations: int = 1000, seed: int = 0) -> list[HeadScore]:
    """Every head scored by patching and by the attention–projection correlation (with its
    permutation p-value), ranked by patch effect."""
    effect = patch_effects(model, items, batch_size, progress)
    prompts = [item.prompt for item in items]
    subjects = [list(item.subject_positions) for item in items]
    mass = over_batches(lambda part: attention_mass(model, prompts[part], subjects[part]), len(items), batch_size)  # [n, layer, head]
    subject_token = [encode_target(model, item.subject)[0] for item in items]
    projection = over_batches(lambda part: direct_logit_attribution(model, prompts[part], subject_token[part]).heads(),
                              len(items), batch_size)  # [n, layer, head]
    correlation = pearson(mass, projection)
    p_value = permutation_p_value(mass, projection, n_permutations, seed)
    cfg = model.cfg
    scores = [HeadScore(str(Head(l, h)), float(effect[l, h]), float(correlation[l, h]), float(p_value[l, h]),
                        float(mass[:, l, h].mean()))
              for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    return sorted(scores, key=lambda s: -s.patch_effect)


def patch_effects(model, items: Sequence[RecallItem], batch_size: int, progress: bool) -> Float[Tensor, "layer head"]:
    """Mean drop in P(answer) when one head's last-position output comes from the twin prompt."""
    cfg = model.cfg
    patched_items = [item for item in items if item.corrupt_prompt is not None]
    if not patched_items:
        raise ValueError("no prompt has a corrupted twin of the same token length; use more facts.")
    effect = torch.zeros(cfg.n_layers, cfg.n_heads)
    # Patching needs clean and corrupted prompts aligned token for token: batch equal lengths.
    groups: dict[int, list[RecallItem]] = {}
    for item in patched_items:
        groups.setdefault(len(encode_prompt(model, item.prompt)), []).append(item)
    chunks = [group[s : s + batch_size] for group in groups.values() for s in range(0, len(group), batch_size)]
    z_names = [get_act_name("z", l) for l in range(cfg.n_layers)]
    resid_names = [get_act_name("resid_pre", l) for l in range(cfg.n_layers)]
    for chunk in tqdm(chunks, desc="patching heads", disable=not progress):
        clean = model.to_tokens([item.prompt for item in chunk])
        corrupt = model.to_tokens([item.corrupt_prompt for item in chunk])
        _, corrupt_cache = model.run_with_cache(corrupt, names_filter=lambda name: name in z_names)
        _, clean_cache = model.run_with_cache(clean, names_filter=lambda name: name in resid_names)
        answers = torch.tensor([item.answer_id for item in chunk])
        base = _answer_probability(model, clean, clean_cache[resid_names[0]], 0, answers)
        batch, n_heads = len(chunk), cfg.n_heads
        for layer in range(cfg.n_layers):
            # A patch in layer l leaves the stream entering l unchanged: the forward runs on from
            # there, with one copy of the batch per head, copy h patched at head h (one a layer).
            entering = clean_cache[resid_names[layer]].repeat(n_heads, 1, 1)
            source = corrupt_cache[z_names[layer]][:, -1]  # [batch, head, d_head]

            def patch_own_head(z: Tensor, hook) -> Tensor:
                for h in range(n_heads):
                    z[h * batch : (h + 1) * batch, -1, h] = source[:, h]
                return z

            with model.hooks(fwd_hooks=[(z_names[layer], patch_own_head)]):
                patched = _answer_probability(model, clean.repeat(n_heads, 1), entering, layer, answers.repeat(n_heads))
            effect[layer] += (base.repeat(n_heads) - patched).view(n_heads, batch).sum(1)
    return effect / len(patched_items)


def _answer_probability(model, tokens: Tensor, entering: Float[Tensor, "batch pos d_model"], layer: int,
                        answers: Tensor) -> Tensor:
    """P(answer) at the last position of unpadded, equal-length prompts, running the blocks from
    `layer` on the stream entering it."""
    residual = final_residual_from(model, tokens, layer, entering)
    rows = torch.arange(entering.shape[0])
    logits = logits_at(model, residual, rows, torch.full_like(rows, entering.shape[1] - 1))
    return logits.float().softmax(-1)[rows, answers.to(logits.device)].cpu()


def head_memory_scores(model, items: Sequence[RecallItem], heads: Sequence[str]) -> dict[str, dict]:
    """How closely each head's OV circuit maps subject tokens to answer tokens (country → capital)
    as an associative memory: `hooks.circuits.memory_score` of W_E[subject] OV W_U[:, answer]
    against the one-to-one reference, on each subject's first token (subjects sharing a first
    token are kept once)."""
    sources, targets = {}, {}
    for item in items:
        source = encode_target(model, item.subject)[0]
        if source not in sources:
            sources[source] = targets.setdefault(item.answer_id, len(targets))
    reference = pairs_reference(len(sources), len(targets), list(enumerate(sources.values())))
    scores = {}
    for label in heads:
        head = Head.parse(label)
        circuit = token_map_circuit(model, head.layer, head.head, list(sources), list(targets))
        scores[label] = memory_score(circuit.float().cpu(), reference).to_dict()
    return scores
