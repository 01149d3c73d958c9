"""Writing a new probe with lca_interp's hooks, in ten lines.

The question: which heads read the subject and vote for the right answer *because* they read it?
Across facts, correlate each head's attention from the last position onto the subject's tokens
with its direct logit attribution to logit(o*) − logit(o_). Two library calls give both as
[fact, layer, head] tensors; the probe itself is one Pearson correlation per head. It runs unchanged on any
TransformerLens model with a tokenizer (a `TransformerBridge`) (GPT-2, Gemma, LLaMA, a local folder).

    .venv/bin/python examples/write_a_probe.py [--model google/gemma-3-270m] [--limit 60]
"""

from __future__ import annotations

import argparse

import torch

from lca_interp.evals.anatomy import prompt_spans
from lca_interp.facts import load_capitals
from lca_interp.fit import pearson
from lca_interp.hooks.attention import attention_mass
from lca_interp.hooks.attribution import direct_logit_attribution
from lca_interp.hooks.select import Head
from lca_interp.pretrained import load_model


def subject_readers(model, facts) -> torch.Tensor:
    """[layer, head] Pearson correlation, over facts, of subject attention with the vote for o*."""
    prompts = [fact.prompt for fact in facts]
    subjects = [prompt_spans(model, fact, "generic", 0).subject for fact in facts]
    mass = attention_mass(model, prompts, subjects)  # [fact, layer, head]
    vote = direct_logit_attribution(model, prompts, [f.target_true for f in facts], [f.target_false for f in facts]).heads()
    return pearson(mass, vote)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="google/gemma-3-270m")
    parser.add_argument("--limit", type=int, default=60)
    args = parser.parse_args()
    model = load_model(args.model)
    correlation = subject_readers(model, load_capitals(limit=args.limit).facts)
    best = correlation.flatten().argsort(descending=True)[:5].tolist()
    for index in best:
        head = Head(*divmod(index, model.cfg.n_heads))
        print(f"{head}: r = {float(correlation[head.layer, head.head]):+.3f}")


if __name__ == "__main__":
    main()
