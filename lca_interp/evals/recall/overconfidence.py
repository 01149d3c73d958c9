"""Paper B's anti-overconfidence: the final layer pulls P(answer) down toward the average.

Three questions on recall prompts: does the final layer lower P(answer) (logit lens before and
after it); do its heads attend to frequent tokens (the first position, BOS where the model uses
one, and punctuation); and does its MLP write toward the average next-token distribution (the
correlation, over the vocabulary, of the MLP's mean output read through W_U with the mean logits
of the prompts)? The last is measured for every layer's MLP, so that the final one's number can
be read against the others'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import torch

from lca_interp.evals.recall.items import RecallItem
from lca_interp.fit import pearson
from lca_interp.hooks.attention import attention_mass
from lca_interp.hooks.attribution import ResidualComponents, mlp_label, residual_components
from lca_interp.hooks.lens import logit_lens
from lca_interp.hooks.select import over_batches
from lca_interp.scoring import encode_prompt, last_token_logits

PUNCTUATION = {".", ",", ":", "?", "!"}


@torch.no_grad()
def anti_overconfidence(model, items: Sequence[RecallItem], components: Optional[ResidualComponents] = None,
                        batch_size: int = 16) -> dict:
    """The three measurements above; `components`: `residual_components` of the items' prompts
    when already computed."""
    n, count = model.cfg.n_layers, len(items)
    prompts = [item.prompt for item in items]
    answers = [item.answer_id for item in items]
    lens = over_batches(lambda part: logit_lens(model, prompts[part], [answers[part]]).probabilities[:, :, 0], count, batch_size)
    first = [[0]] * count
    punctuation = [[j for j, t in enumerate(encode_prompt(model, prompt)) if model.to_string(torch.tensor([t])).strip() in PUNCTUATION]
                   for prompt in prompts]
    mass_first = over_batches(lambda part: attention_mass(model, prompts[part], first[part], layers=n - 1), count, batch_size)[:, 0]
    mass_punct = over_batches(lambda part: attention_mass(model, prompts[part], punctuation[part], layers=n - 1), count, batch_size)[:, 0]
    mean_logits = torch.zeros(model.cfg.d_vocab, dtype=torch.float64)
    for _, logits in last_token_logits(model, prompts, batch_size):
        mean_logits += logits.double().sum(0).cpu()
    mean_logits /= count
    if components is None:
        components = residual_components(model, prompts, batch_size=batch_size)
    W_U = model.unembed.W_U.detach().double().cpu()
    # Every MLP's mean output read through W_U against the mean logits: is the final one special?
    toward_mean = [float(pearson(components.select([mlp_label(l)])[:, 0].mean(0) @ W_U, mean_logits)) for l in range(n)]
    return {
        "p_answer_by_stage": lens.mean(0).tolist(),
        "stages": ["embed"] + [f"L{l}" for l in range(n)],
        "p_before_final_layer": float(lens[:, -2].mean()),
        "p_after_final_layer": float(lens[:, -1].mean()),
        "final_layer_lowers_p": float((lens[:, -1] < lens[:, -2]).float().mean()),
        "final_heads_mass_on_first_token": mass_first.mean(0).tolist(),
        "final_heads_mass_on_punctuation": mass_punct.mean(0).tolist(),
        "final_mlp_vs_mean_logits_correlation": toward_mean[-1],
        "mlp_vs_mean_logits_correlation_by_layer": toward_mean,
    }
