"""`lca-interp demo`: the main job on the embedded default setting, in a few minutes on a laptop.

Trains the LCA toy at m = 8 (V = 256), L = 64, d = 128, reports its held-out accuracy beside the
Bayes ceiling, and writes what a researcher would look at first: the training curve and the
toy's attention on held-out contexts (an offline circuitsvis page); measures a quick subset of
paper A's claims (`lca-interp reproduce --quick` has them all); and runs paper A's LLM half on
both offline LLMs, Gemma-3-270m and SmolLM2-135M-Instruct: generic context hijacking of every
country → capital fact, ES(k) for k = 0..3, side by side in `compare.html` (`lca-interp hijack`
runs any model, dataset and scheme). The toy is hijacked too, the
way paper A's toy experiment does it: contexts mixed with another output's, with the attention
and value-matrix anatomy of that hijack (`toy_anatomy/`). Last, a short paper-B recall study on
Gemma-3-270m (`recall/`; `lca-interp recall` runs it on any model and fact set).
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Optional

from lca_interp import artifacts, report
from lca_interp.evals.claims import QUICK
from lca_interp.evals.claims.reproduce import reproduce
from lca_interp.evals.hijack import HijackResult, run_hijack
from lca_interp.evals.recall import run_recall
from lca_interp.evals.toy_anatomy import toy_hijack_anatomy
from lca_interp.facts import load_capitals
from lca_interp.hooks.attention import attention_examples
from lca_interp.pretrained import load_model
from lca_interp.provenance import provenance
from lca_interp.report.compare import compare_page
from lca_interp.task import LCATask, token_label
from lca_interp.toy import ToyConfig
from lca_interp.training import TrainConfig, eval_set, train

DEMO_TASK = dict(m=8, omega=0.5, beta=1.0, context_len=64, neighbourhood="all")
DEMO_D_MODEL = 128
# Claims of paper A cheap enough for the demo: the theorems need no training, the rest one toy.
DEMO_CLAIMS = ("T1", "T2", "C2", "C3", "C9")
DEMO_TRAIN = dict(steps=3000, batch_size=256, lr=3e-3, eval_every=150, checkpoint_every=1000, seed=0)
DEMO_LLMS = ("google/gemma-3-270m", "HuggingFaceTB/SmolLM2-135M-Instruct")  # both offline; recall on the first
DEMO_HIJACK = dict(scheme="generic", max_prepends=3)
DEMO_CAPITALS_LIMIT: Optional[int] = None  # every country with a capital
DEMO_RECALL = dict(limit=10, shots=3)


def run_demo(out_dir: str | Path, steps: Optional[int] = None, device: Optional[str] = None, dtype: str = "float32") -> dict:
    """Train the default toy into `out_dir/toy` and write the demo's results, figures and pages.
    `device` and `dtype`: where and how the two LLMs run (the toy trains on the CPU)."""
    out = Path(out_dir)
    task = LCATask(**DEMO_TASK)
    toy = ToyConfig(d_vocab=task.vocab_size, d_model=DEMO_D_MODEL, n_ctx=task.context_len)
    config = TrainConfig(**{**DEMO_TRAIN, **({"steps": steps} if steps else {})})
    result = train(task, toy, config, out_dir=out / "toy")
    report.render(out / "toy" / "metrics.json")
    metrics = result.metrics
    x, y = eval_set(task, config)
    summary = (f"LCA toy: m={task.m}, L={task.context_len}, d={toy.d_model}; held-out accuracy {metrics['accuracy']:.4f}, "
               f"Bayes ceiling {metrics['bayes_accuracy']:.4f} on {metrics['eval_samples']} samples.")
    report.save(toy_attention(result.model, task, x[:3], y[:3], summary), out / "attention.json")
    toy_anatomy = toy_hijack_anatomy(result.model, task)
    report.save(toy_anatomy, out / "toy_anatomy" / "anatomy.json")
    lines = [
        f"toy accuracy {metrics['accuracy']:.4f}, Bayes ceiling {metrics['bayes_accuracy']:.4f} "
        f"({metrics['steps']} steps, {metrics['train_seconds']:.0f} s)",
        f"wrote {out / 'toy'} (training.png there), {out / 'attention.html'}",
        f"toy hijacked by mixing in another output's context (fractions {toy_anatomy.fractions}): flip rate "
        f"{', '.join(f'{r:.3f}' for r in toy_anatomy.flip_rate)}; attention on foreign tokens "
        f"{', '.join(f'{m:.3f}' for m in toy_anatomy.mass_foreign)} (uniform would give "
        f"{', '.join(f'{u:.3f}' for u in toy_anatomy.uniform_foreign)}) → {out / 'toy_anatomy' / 'anatomy.html'}",
    ]
    quick = reproduce(out / "claims", QUICK, seeds=1, claim_ids=DEMO_CLAIMS)
    report.save(quick, out / "claims" / "claims.json")
    lines += [f"{c.id}: {'holds' if c.holds else 'does NOT hold'} (quick scale, 1 seed): {c.claim}" for c in quick.claims]
    lines.append(f"wrote {out / 'claims' / 'report.html'}")
    hijacks = {}
    for name in DEMO_LLMS:
        llm = load_model(name, device, dtype)
        folder = out / "hijack" / name.split("/")[-1]
        hijacks[name] = run_hijack_demo(llm, name, folder)
        lines += [f"{name}: {hijacks[name].summary()}", f"wrote {folder / 'hijack.json'}, {folder / 'hijack.png'}"]
        if name == DEMO_LLMS[0]:
            recall, _ = run_recall(llm, **DEMO_RECALL, model_name=name)
            report.save(recall, out / "recall" / "recall.json")
        del llm
    zero = recall.zero_shot
    lines += [f"{DEMO_LLMS[0]} recall (paper B), {recall.n} zero-shot capital prompts (held out from the fit): P(answer) "
              f"baseline {zero['baseline']['p_mean']:.3f}, final layer masked {zero['masked']['p_mean']:.3f}, final MLP "
              f"intercept removed {zero['intercept']['p_mean']:.3f}, both {zero['both']['p_mean']:.3f}; top argument-passing "
              f"head {recall.heads[0]['head']} → {out / 'recall' / 'recall.html'}",
              f"both models side by side → {compare_page([out / 'hijack', out / 'recall'], out)}"]
    artifacts.write_json(out / "demo.json", {
        "task": task.to_dict(), "toy": toy.to_dict(), "metrics": metrics, "claims": [c.to_dict() for c in quick.claims],
        "toy_anatomy": toy_anatomy.to_dict(), "hijack": {name: h.to_dict() for name, h in hijacks.items()},
        "recall": recall.to_dict(), "lines": lines, "provenance": provenance()})
    return {"lines": lines}


def toy_attention(model, task: LCATask, contexts, outputs, summary: str) -> dict:
    """A `toy_attention` result: the toy's attention on `contexts`, tokens labelled id:latent bits."""
    examples = attention_examples(model, contexts, targets=outputs.tolist(), token_labels=partial(token_label, m=task.m))
    return {"kind": "toy_attention", "summary": summary, "examples": [asdict(e) for e in examples]}


def run_hijack_demo(model, name: str, out_dir: str | Path) -> HijackResult:
    """Generic hijacking of every country → capital fact on one of the demo's LLMs."""
    facts = load_capitals(seed=0, limit=DEMO_CAPITALS_LIMIT)
    result = run_hijack(model, facts.facts, **DEMO_HIJACK, model_name=name, dataset_name="capitals")
    result.skipped_records += len(facts.skipped)
    report.save(result, Path(out_dir) / "hijack.json")
    return result
