"""Paper B: how a model recalls a fact, what holds the answer back, and two mitigations.

Context
-------
Lv et al. read factual recall ("The capital of France is" → " Paris") as three mechanisms:
attention heads that pass the argument (the country) from its position to the last one; an MLP
after them that erases or amplifies individual heads' outputs and adds a task-aware component
(the intercept of a regression of its output on those heads); and, in the final layer, an
anti-overconfidence mechanism that pulls the answer's probability down toward the average
next-token distribution. Masking the final layer's attention so the last position sees only
itself, and subtracting the final MLP's intercept, both raise P(answer).

This module measures each on any `HookedTransformer`, with the probes of `lca_interp.hooks`:

- `recall_items`: country → capital prompts (zero-shot behind neutral lead-ins, or n-shot with
  "The capital of Y is Z." demonstrations), or any fact set; only facts whose answer is a single
  token for the model, so P(first token) is P(answer). Each prompt has a corrupted twin with
  another subject of the same token length, for activation patching.
- `argument_passing_heads`: (a) the drop in P(answer) when a head's output at the last position
  is patched in from the corrupted twin; (b) across prompts, the correlation between the head's
  attention from the last position to the subject and its direct logit attribution to the
  subject's own first token ("projection on the subject's unembedding").
- `mlp_decomposition`: least squares mlp_out ≈ Σ_h c_h · head_h + b over prompts (at the last
  position, heads of that layer and before), with R² and the intercept b read through W_U.
- `anti_overconfidence`: the logit lens before and after the final layer, where the final
  layer's heads look, and whether the final MLP writes toward the mean logits of a corpus.
- `mitigation`: the two fixes and both together, as context managers; `run_recall` measures
  them zero-shot and few-shot, and `lca-interp hijack --mitigation` asks whether they also
  defend against context hijacking (paper A × paper B).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lca_interp.facts import Fact, load_capitals
from lca_interp.hooks.attention import attention_mass
from lca_interp.hooks.attribution import ResidualComponents, direct_logit_attribution, logit_lens, residual_components
from lca_interp.hooks.interventions import add_vector, restrict_attention
from lca_interp.hooks.select import over_batches
from lca_interp.scoring import encode_prompt, encode_target, last_token_logits, logits_at, token_positions

LEAD_INS = ("", "Here is a fact.", "Geography quiz.")
MITIGATIONS = ("masked", "intercept", "both")


# ---------------------------------------------------------------------- the task


@dataclass(frozen=True)
class RecallItem:
    """One prompt whose next token should be the answer, with its patching twin."""

    subject: str
    answer: str
    answer_id: int
    prompt: str
    subject_positions: tuple[int, ...]  # the subject's tokens in the question (not the shots)
    corrupt_prompt: Optional[str]  # another subject, same token length; None when none exists


def recall_items(
    model,
    facts: Optional[Sequence[Fact]] = None,
    shots: int = 0,
    lead_ins: Sequence[str] = LEAD_INS,
    limit: Optional[int] = None,
    seed: int = 0,
) -> list[RecallItem]:
    """Prompts for every fact with a single-token answer: each lead-in (zero-shot) or `shots`
    demonstrations from other facts of the same relation (few-shot). Capitals by default."""
    if shots < 0:
        raise ValueError(f"shots must be ≥ 0, got {shots}.")
    facts = list(load_capitals(seed=seed).facts if facts is None else facts)
    usable = [f for f in facts if len(encode_target(model, f.target_true)) == 1]
    if limit is not None:
        usable = usable[:limit]
    if len(usable) < 2:
        raise ValueError(f"{len(usable)} of {len(facts)} facts have a single-token answer for this model; at least 2 are needed.")
    generator = torch.Generator().manual_seed(seed)
    by_relation: dict[str, list[Fact]] = {}
    for fact in usable:
        by_relation.setdefault(fact.relation, []).append(fact)
    subject_length = {f.subject: len(encode_target(model, f.subject)) for f in usable}
    items = []
    for fact in usable:
        peers = [f for f in by_relation[fact.relation] if f.subject != fact.subject]
        if shots:
            if len(peers) < shots:
                raise ValueError(f"relation {fact.relation!r} has {len(peers)} other facts, fewer than {shots} shots.")
            chosen = torch.randperm(len(peers), generator=generator)[:shots].tolist()
            heads = [" ".join(f"{peers[i].prompt} {peers[i].target_true}." for i in chosen)]
        else:
            heads = list(lead_ins)
        twins = [p for p in peers if subject_length[p.subject] == subject_length[fact.subject] and p.target_true != fact.target_true]
        for head in heads:
            prefix = f"{head} " if head else ""
            prompt = prefix + fact.prompt
            at = len(prefix) + fact.prompt.find(fact.subject)
            start = at - 1 if at > 0 and prompt[at - 1] == " " else at
            twin = twins[int(torch.randint(len(twins), (1,), generator=generator))] if twins else None
            corrupt = prefix + fact.template.format(twin.subject) if twin else None
            if corrupt is not None and len(encode_prompt(model, corrupt)) != len(encode_prompt(model, prompt)):
                corrupt = None  # the twin's subject merges differently in context: not aligned
            items.append(RecallItem(fact.subject, fact.target_true, encode_target(model, fact.target_true)[0], prompt,
                                    tuple(token_positions(model, prompt, start, at + len(fact.subject))), corrupt))
    return items


@dataclass
class AnswerScores:
    probability: Float[Tensor, "n"]  # P(answer) at the last position
    logit_minus_mean: Float[Tensor, "n"]  # logit(answer) − mean logit over the vocabulary

    def summary(self) -> dict:
        return {"p_mean": float(self.probability.mean()), "logit_minus_mean": float(self.logit_minus_mean.mean())}


@torch.no_grad()
def answer_scores(model, items: Sequence[RecallItem], batch_size: int = 16) -> AnswerScores:
    """The paper's two metrics, under whatever hooks are on the model."""
    probability = torch.zeros(len(items))
    margin = torch.zeros(len(items))
    for batch, logits in last_token_logits(model, [item.prompt for item in items], batch_size):
        answers = torch.tensor([items[i].answer_id for i in batch], device=logits.device)
        rows = torch.arange(len(batch), device=logits.device)
        logits = logits.float()
        probability[batch] = logits.softmax(-1)[rows, answers].cpu()
        margin[batch] = (logits[rows, answers] - logits.mean(-1)).cpu()
    return AnswerScores(probability, margin)


# ---------------------------------------------------------------------- argument passing


@dataclass
class HeadScore:
    head: str
    patch_effect: float  # mean drop in P(answer) when patched from the corrupted twin
    correlation: float  # r(attention to subject, DLA to the subject's own token) over prompts
    subject_attention: float


@torch.no_grad()
def argument_passing_heads(model, items: Sequence[RecallItem], batch_size: int = 16, progress: bool = True) -> list[HeadScore]:
    """Every head scored by patching and by the attention–projection correlation, ranked by
    patch effect."""
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
    z_names = [f"blocks.{l}.attn.hook_z" for l in range(cfg.n_layers)]
    resid_names = [f"blocks.{l}.hook_resid_pre" for l in range(cfg.n_layers)]
    for chunk in tqdm(chunks, desc="patching heads", disable=not progress):
        clean = model.to_tokens([item.prompt for item in chunk])
        corrupt = model.to_tokens([item.corrupt_prompt for item in chunk])
        _, corrupt_cache = model.run_with_cache(corrupt, names_filter=lambda name: name in z_names)
        _, clean_cache = model.run_with_cache(clean, names_filter=lambda name: name in resid_names)
        answers = torch.tensor([item.answer_id for item in chunk])
        base = _answer_probability(model, clean_cache[resid_names[0]], 0, answers)
        batch, n_heads = len(chunk), cfg.n_heads
        for layer in range(cfg.n_layers):
            # A patch in layer l leaves the stream entering l unchanged: start the forward there,
            # with one copy of the batch per head, copy h patched at head h (one forward a layer).
            entering = clean_cache[resid_names[layer]].repeat(n_heads, 1, 1)
            source = corrupt_cache[z_names[layer]][:, -1]  # [batch, head, d_head]

            def patch_own_head(z: Tensor, hook) -> Tensor:
                for h in range(n_heads):
                    z[h * batch : (h + 1) * batch, -1, h] = source[:, h]
                return z

            with model.hooks(fwd_hooks=[(z_names[layer], patch_own_head)]):
                patched = _answer_probability(model, entering, layer, answers.repeat(n_heads))
            effect[layer] += (base.repeat(n_heads) - patched).view(n_heads, batch).sum(1)
    effect /= len(patched_items)

    prompts = [item.prompt for item in items]
    subjects = [list(item.subject_positions) for item in items]
    mass = over_batches(lambda part: attention_mass(model, prompts[part], subjects[part]), len(items), batch_size)  # [n, layer, head]
    subject_token = [encode_target(model, item.subject)[0] for item in items]
    projection = over_batches(lambda part: direct_logit_attribution(model, prompts[part], subject_token[part]).heads(),
                              len(items), batch_size)  # [n, layer, head]
    correlation = _pearson(mass, projection)
    scores = [HeadScore(f"L{l}H{h}", float(effect[l, h]), float(correlation[l, h]), float(mass[:, l, h].mean()))
              for l in range(cfg.n_layers) for h in range(cfg.n_heads)]
    return sorted(scores, key=lambda s: -s.patch_effect)


def _answer_probability(model, entering: Float[Tensor, "batch pos d_model"], layer: int, answers: Tensor) -> Tensor:
    """P(answer) at the last position of unpadded, equal-length prompts, running the blocks from
    `layer` on the stream entering it."""
    residual = model(entering, start_at_layer=layer, stop_at_layer=model.cfg.n_layers)
    rows = torch.arange(entering.shape[0])
    logits = logits_at(model, residual, rows, torch.full_like(rows, entering.shape[1] - 1))
    return logits.float().softmax(-1)[rows, answers.to(logits.device)].cpu()


def _pearson(x: Float[Tensor, "n ..."], y: Float[Tensor, "n ..."]) -> Tensor:
    x, y = x - x.mean(0), y - y.mean(0)
    return (x * y).sum(0) / (x.norm(dim=0) * y.norm(dim=0)).clamp_min(1e-12)


def head_memory_scores(model, items: Sequence[RecallItem], heads: Sequence[str]) -> dict[str, dict]:
    """How closely each head's OV circuit maps subject tokens to answer tokens (country → capital)
    as an associative memory: `hooks.circuits.memory_score` of W_E[subject] OV W_U[:, answer]
    against the one-to-one reference, on each subject's first token (subjects sharing a first
    token are kept once)."""
    from lca_interp.hooks.circuits import memory_score, pairs_reference, token_map_circuit

    sources, targets = {}, {}
    for item in items:
        source = encode_target(model, item.subject)[0]
        if source not in sources:
            sources[source] = targets.setdefault(item.answer_id, len(targets))
    reference = pairs_reference(len(sources), len(targets), list(enumerate(sources.values())))
    scores = {}
    for head in heads:
        layer, index = (int(part) for part in head[1:].split("H"))
        circuit = token_map_circuit(model, layer, index, list(sources), list(targets))
        scores[head] = memory_score(circuit.float().cpu(), reference).to_dict()
    return scores


# ---------------------------------------------------------------------- MLP as regression


@dataclass
class Regression:
    """y ≈ Σ_h c_h X_h + b, fitted over samples: coefficients, intercept, R²."""

    coefficients: Float[Tensor, "n_regressors"]
    intercept: Float[Tensor, "d"]
    r_squared: float


def regress_on_vectors(y: Float[Tensor, "n d"], x: Float[Tensor, "n k d"]) -> Regression:
    """Least squares for one scalar per regressor and one shared intercept vector.

    Centring over samples removes b: y − ȳ = Σ_h c_h (X_h − X̄_h), a linear least-squares
    problem in c with n·d equations; then b = ȳ − Σ_h c_h X̄_h."""
    y, x = y.double(), x.double()
    y_mean, x_mean = y.mean(0), x.mean(0)
    design = (x - x_mean).permute(0, 2, 1).reshape(-1, x.shape[1])  # [(n d), k]
    target = (y - y_mean).reshape(-1, 1)
    coefficients = torch.linalg.lstsq(design, target).solution[:, 0]
    residual = target[:, 0] - design @ coefficients
    total = float((target**2).sum())
    return Regression(coefficients, y_mean - coefficients @ x_mean, 1 - float((residual**2).sum()) / total if total else 0.0)


@dataclass
class MLPDecomposition:
    layer: int
    heads: list[str]
    coefficients: list[float]
    r_squared: float
    intercept_norm: float
    intercept_top_tokens: list[str]
    answers_in_top: float  # fraction of the intercept's top tokens that are answers of the task
    answer_rank_percentile: float  # mean percentile of the task's answers in the intercept's logits (1 = top)
    intercept: Optional[Tensor] = field(default=None, repr=False)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("intercept")
        data["erased"] = [h for h, c in zip(self.heads, self.coefficients) if c < 0.1]
        data["amplified"] = [h for h, c in zip(self.heads, self.coefficients) if c > 1]
        return data


@torch.no_grad()
def last_position_components(model, items: Sequence[RecallItem], batch_size: int = 16) -> ResidualComponents:
    """`residual_components` at every item's last token, all items in one object (float64, CPU):
    one pass that the MLP decompositions and the anti-overconfidence analysis share."""
    prompts = [item.prompt for item in items]
    parts = [residual_components(model, prompts[s : s + batch_size]) for s in range(0, len(prompts), batch_size)]
    return ResidualComponents(parts[0].labels, torch.cat([p.vectors for p in parts]), torch.cat([p.stream for p in parts]),
                              None if parts[0].final_scale is None else torch.cat([p.final_scale for p in parts]))


@torch.no_grad()
def mlp_decomposition(model, items: Sequence[RecallItem], layer: int, components: Optional[ResidualComponents] = None,
                      batch_size: int = 16, top: int = 30) -> MLPDecomposition:
    """Regress layer `layer`'s MLP output at the last position on the outputs of every head in
    layers ≤ `layer`, plus an intercept; read the intercept through the unembedding.
    `components`: `last_position_components(model, items)` if already computed."""
    if not 0 <= layer < model.cfg.n_layers or model.cfg.attn_only:
        raise ValueError(f"layer {layer} has no MLP; pick one of 0..{model.cfg.n_layers - 1}.")
    if len(items) < 3:
        raise ValueError("the regression needs at least 3 prompts.")
    components = components if components is not None else last_position_components(model, items, batch_size)
    heads = [f"L{l}H{h}" for l in range(layer + 1) for h in range(model.cfg.n_heads)]
    fit = regress_on_vectors(components.select([f"L{layer} MLP"])[:, 0], components.select(heads))
    intercept_logits = fit.intercept.float() @ model.unembed.W_U.detach().float().cpu()
    ranking = intercept_logits.argsort(descending=True)
    answers = sorted({item.answer_id for item in items})
    rank_of = torch.empty_like(ranking)
    rank_of[ranking] = torch.arange(len(ranking))
    return MLPDecomposition(
        layer=layer, heads=heads, coefficients=fit.coefficients.tolist(), r_squared=fit.r_squared,
        intercept_norm=float(fit.intercept.norm()),
        intercept_top_tokens=[model.to_string(torch.tensor([t])) for t in ranking[:top].tolist()],
        answers_in_top=len(set(ranking[:top].tolist()) & set(answers)) / top,
        answer_rank_percentile=float(1 - rank_of[answers].double().mean() / len(ranking)),
        intercept=fit.intercept.float(),
    )


# ---------------------------------------------------------------------- anti-overconfidence


@torch.no_grad()
def anti_overconfidence(model, items: Sequence[RecallItem], components: Optional[ResidualComponents] = None,
                        batch_size: int = 16) -> dict:
    """Does the final layer lower P(answer), where do its heads look, and does its MLP write
    toward the average next-token distribution of the prompts?"""
    n, count = model.cfg.n_layers, len(items)
    prompts = [item.prompt for item in items]
    answers = [item.answer_id for item in items]
    p = over_batches(lambda part: logit_lens(model, prompts[part], [answers[part]]).probabilities[:, :, 0], count, batch_size)  # [n, stage]
    # Frequent tokens: the first position (BOS where the model uses one) and punctuation.
    first = [[0]] * count
    punct = [[j for j, t in enumerate(encode_prompt(model, prompt)) if model.to_string(torch.tensor([t])).strip() in {".", ",", ":", "?", "!"}]
             for prompt in prompts]
    mass_first = over_batches(lambda part: attention_mass(model, prompts[part], first[part], layers=n - 1), count, batch_size)[:, 0]
    mass_punct = over_batches(lambda part: attention_mass(model, prompts[part], punct[part], layers=n - 1), count, batch_size)[:, 0]
    mean_logits = torch.zeros(model.cfg.d_vocab, dtype=torch.float64)
    for _, logits in last_token_logits(model, prompts, batch_size):
        mean_logits += logits.double().sum(0).cpu()
    mean_logits /= count
    components = components if components is not None else last_position_components(model, items, batch_size)
    mlp = components.select([f"L{n - 1} MLP"])[:, 0].mean(0)  # [d_model]
    mlp_logits = mlp @ model.unembed.W_U.detach().double().cpu()
    correlation = float(_pearson(mlp_logits[:, None], mean_logits[:, None])[0])
    return {
        "p_answer_by_stage": p.mean(0).tolist(),
        "stages": ["embed"] + [f"L{l}" for l in range(n)],
        "p_before_final_layer": float(p[:, -2].mean()),
        "p_after_final_layer": float(p[:, -1].mean()),
        "final_layer_lowers_p": float((p[:, -1] < p[:, -2]).float().mean()),
        "final_heads_mass_on_first_token": mass_first.mean(0).tolist(),
        "final_heads_mass_on_punctuation": mass_punct.mean(0).tolist(),
        "final_mlp_vs_mean_logits_correlation": correlation,
    }


# ---------------------------------------------------------------------- mitigations


def mitigation(model, name: Optional[str], intercept: Optional[Tensor] = None):
    """Context manager for "masked" (the final layer's positions attend only to themselves),
    "intercept" (the final MLP's intercept subtracted from its output, i.e. from the residual
    stream), "both", or None (nothing). Arguments are checked here, hooks attached on entry."""
    if name is None:
        return contextlib.nullcontext()
    if name not in MITIGATIONS:
        raise ValueError(f"unknown mitigation {name!r}; choose one of {', '.join(MITIGATIONS)}.")
    if name != "masked" and intercept is None:
        raise ValueError(f"the {name!r} mitigation needs the final MLP's intercept (from mlp_decomposition).")
    if intercept is not None and tuple(intercept.shape) != (model.cfg.d_model,):
        raise ValueError(f"the intercept must have shape ({model.cfg.d_model},), got {tuple(intercept.shape)}.")
    return _mitigated(model, name, intercept)


@contextlib.contextmanager
def _mitigated(model, name: str, intercept: Optional[Tensor]):
    last = model.cfg.n_layers - 1
    with contextlib.ExitStack() as stack:
        if name in ("masked", "both"):
            # Every query of the final layer attends to itself alone; for the last position this
            # is the paper's mask, and earlier positions never reach the last one after this layer.
            stack.enter_context(restrict_attention(model, layers=last, positions=None))
        if name in ("intercept", "both"):
            stack.enter_context(add_vector(model, f"blocks.{last}.hook_mlp_out", intercept.to(model.cfg.device), scale=-1.0))
        yield


def final_intercept(model, facts: Optional[Sequence[Fact]] = None, limit: Optional[int] = 60, batch_size: int = 16) -> Tensor:
    """The final MLP's intercept from its regression on zero-shot recall prompts (capitals by
    default): what the "intercept" mitigation subtracts."""
    items = recall_items(model, facts, shots=0, limit=limit)
    return mlp_decomposition(model, items, model.cfg.n_layers - 1, batch_size=batch_size).intercept


# ---------------------------------------------------------------------- the whole study


@dataclass
class RecallResult:
    model: str
    n: int
    shots: int
    zero_shot: dict  # {"baseline": {...}, "masked": ..., "intercept": ..., "both": ...}
    few_shot: dict
    heads: list[dict]
    head_memory: dict  # top heads' OV as a subject → answer memory (hooks.circuits.memory_score)
    mlp_decomposition: dict
    final_mlp: dict
    anti_overconfidence: dict

    def to_dict(self) -> dict:
        data = asdict(self)
        for key in ("baseline", "masked", "intercept", "both"):
            data[f"{key}_p" if key != "baseline" else "baseline_p"] = self.zero_shot[key]["p_mean"]
        return data


def run_recall(model, facts: Optional[Sequence[Fact]] = None, shots: int = 3, limit: Optional[int] = None,
               mlp_layer: Optional[int] = None, batch_size: int = 16, model_name: str = "", seed: int = 0,
               progress: bool = True) -> tuple[RecallResult, Tensor]:
    """Everything above on one fact set; returns the result and the final MLP's intercept."""
    zero = recall_items(model, facts, shots=0, limit=limit, seed=seed)
    few = recall_items(model, facts, shots=shots, limit=limit, seed=seed) if shots else zero
    heads = argument_passing_heads(model, zero, batch_size, progress)
    top_layer = int(heads[0].head[1:].split("H")[0])
    layer = mlp_layer if mlp_layer is not None else min(top_layer + 1, model.cfg.n_layers - 1)
    components = last_position_components(model, zero, batch_size)
    decomposition = mlp_decomposition(model, zero, layer, components)
    final = mlp_decomposition(model, zero, model.cfg.n_layers - 1, components)
    measured = {}
    for label, items in (("zero_shot", zero), ("few_shot", few)):
        measured[label] = {}
        for name in (None, *MITIGATIONS):
            with mitigation(model, name, final.intercept):
                measured[label][name or "baseline"] = answer_scores(model, items, batch_size).summary()
    result = RecallResult(
        model=model_name, n=len(zero), shots=shots, zero_shot=measured["zero_shot"], few_shot=measured["few_shot"],
        heads=[asdict(h) for h in heads], head_memory=head_memory_scores(model, zero, [h.head for h in heads[:3]]),
        mlp_decomposition=decomposition.to_dict(), final_mlp=final.to_dict(),
        anti_overconfidence=anti_overconfidence(model, zero, components, batch_size),
    )
    return result, final.intercept


def recall_figure(result: RecallResult, top: int = 12):
    """Argument-passing heads, P(answer) through the layers, and the mitigations."""
    from lca_interp.artifacts import pyplot

    plt = pyplot()
    fig, (ax_heads, ax_lens, ax_fix) = plt.subplots(1, 3, figsize=(16, 4))
    heads = result.heads[:top][::-1]
    ax_heads.barh([h["head"] for h in heads], [h["patch_effect"] for h in heads], label="patch effect (ΔP)")
    ax_heads.barh([h["head"] for h in heads], [h["correlation"] * max(abs(h["patch_effect"]) for h in heads) for h in heads],
                  height=0.3, color="tab:orange", label="r(attention, projection), scaled")
    ax_heads.set(xlabel="drop in P(answer) when patched from another country", title="argument-passing heads")
    ax_heads.legend(fontsize=8)
    lens = result.anti_overconfidence
    ax_lens.plot(range(len(lens["stages"])), lens["p_answer_by_stage"], marker="o")
    ax_lens.set(xticks=range(len(lens["stages"])), xlabel="residual stream after", ylabel="mean P(answer)",
                title="logit lens (zero-shot)")
    ax_lens.set_xticklabels(lens["stages"], rotation=90, fontsize=7)
    names = ["baseline", *MITIGATIONS]
    width = 0.38
    for offset, (label, values) in zip((-width / 2, width / 2), (("zero-shot", result.zero_shot), (f"{result.shots}-shot", result.few_shot))):
        ax_fix.bar([i + offset for i in range(len(names))], [values[n]["p_mean"] for n in names], width, label=label)
    ax_fix.set(xticks=range(len(names)), ylabel="mean P(answer)", title="mitigations")
    ax_fix.set_xticklabels(names)
    ax_fix.legend(fontsize=8)
    fig.suptitle(f"{result.model}: factual recall on {result.n} prompts")
    fig.tight_layout()
    return fig


def write_recall(result: RecallResult, out_dir: str | Path) -> Path:
    """`out_dir/recall.json`, `recall.png` and an offline `recall.html`."""
    from lca_interp import artifacts, report

    out = Path(out_dir)
    artifacts.write_json(out / "recall.json", result.to_dict())
    artifacts.save_figure(out / "recall.png", recall_figure(result))
    table = [{"setting": f"{label} {name}", **values} for label, block in (("zero-shot", result.zero_shot), (f"{result.shots}-shot", result.few_shot))
             for name, values in block.items()]
    mlp = result.mlp_decomposition
    report.write_page(out / "recall.html", f"Factual recall: {result.model}", [
        report.png_html(out / "recall.png", "argument-passing heads, logit lens, mitigations"),
        "<h2>P(answer) with each mitigation</h2>", report.table_html(table),
        "<h2>Argument-passing heads</h2>", report.table_html(result.heads[:15]),
        f"<h2>MLP {mlp['layer']} as a regression on the heads before it</h2><p>R² = {mlp['r_squared']:.3f}; "
        f"intercept's top tokens: {', '.join(map(repr, mlp['intercept_top_tokens'][:15]))}; answers among them: "
        f"{mlp['answers_in_top']:.2f}; erased: {', '.join(mlp['erased'][:20])}; amplified: {', '.join(mlp['amplified'][:20])}.</p>",
        "<h2>Final layer</h2>", report.table_html([{k: v for k, v in result.anti_overconfidence.items() if k not in ("p_answer_by_stage", "stages")}]),
    ])
    return out / "recall.json"
