"""Models side by side: one offline page from several folders of results, drawn from JSON alone.

Each folder holds one model's results (`hijack`, `anatomy`, `recall` JSONs, as the command line
writes them). The page opens with `findings`: one row per finding of the two papers, one column
per model, the same table `findings.md` holds in Markdown (the README's "what holds on two
models"). Then ES(k) per scheme with one curve per model (both readings), the heads
each model's anatomy found with their held-out control, and what paper B's mitigations do to
recall and to hijacking on each model.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path

from lca_interp import artifacts
from lca_interp.report.figures import figure_html, png_html, pyplot, save_figure
from lca_interp.report.page import table_html, write_page


def load_results(folders: list[Path]) -> dict[str, dict[str, list[dict]]]:
    """model name → kind → results, from every result JSON under each folder."""
    from lca_interp.report import results_in

    found: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for folder in folders:
        for path in results_in(folder):
            data = json.loads(path.read_text(encoding="utf-8"))
            found[data.get("model") or folder.name][data["kind"]].append(data)
    return found


def scheme_label(result: dict) -> str:
    return result["scheme"] + (f" ({result['relation']})" if result.get("relation") else "")


def headline_hijacks(kinds: dict[str, list[dict]]) -> list[dict]:
    """One model's hijack result per scheme: the one on the most facts (an anatomy or mitigation
    run beside a larger one measures a subset of its facts)."""
    best: dict[str, dict] = {}
    for r in kinds.get("hijack", []):
        if scheme_label(r) not in best or r["n"] > best[scheme_label(r)]["n"]:
            best[scheme_label(r)] = r
    return [best[label] for label in sorted(best)]


def es_figure(results: dict[str, dict[str, list[dict]]]):
    """One panel per scheme, one colour per model; solid: summed log P, dashed: per-token mean."""
    plt = pyplot()
    headlines = {model: headline_hijacks(kinds) for model, kinds in results.items()}
    schemes = sorted({scheme_label(r) for rs in headlines.values() for r in rs})
    columns = min(3, max(1, len(schemes)))  # rows of three panels stay readable on a page
    rows = -(-max(1, len(schemes)) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.8 * rows), squeeze=False)
    for ax in axes.flat[len(schemes):]:
        ax.set_visible(False)
    for ax, scheme in zip(axes.flat, schemes):
        for color, (model, rs) in enumerate(headlines.items()):
            for r in (r for r in rs if scheme_label(r) == scheme):
                ax.plot(r["k"], r["efficacy_score"], marker="o", color=f"C{color}", label=f"{model} (n = {r['n']})")
                ax.fill_between(r["k"], r["ci_low"], r["ci_high"], color=f"C{color}", alpha=0.15)
                if "efficacy_score_per_token" in r:
                    ax.plot(r["k"], r["efficacy_score_per_token"], linestyle="--", color=f"C{color}")
        ks = sorted({k for rs in headlines.values() for r in rs if scheme_label(r) == scheme for k in r["k"]})
        ax.set(title=scheme, xlabel="prepended sentences k", ylabel="ES", ylim=(0, 1), xticks=ks)
        ax.legend(fontsize=7)
    fig.suptitle("ES(k) by scheme (solid: summed log P, paper A; dashed: per-token mean, ROME; bands: 95% CI)")
    fig.tight_layout()
    return fig


def mitigation_figure(results: dict[str, dict[str, list[dict]]]):
    """Zero-shot P(answer) of paper B's recall prompts under each mitigation, per model."""
    plt = pyplot()
    settings = ("baseline", "masked", "intercept", "both")
    models = [m for m, kinds in results.items() if kinds.get("recall")]
    fig, ax = plt.subplots(figsize=(6, 3.4))
    width = 0.8 / max(1, len(models))
    for i, model in enumerate(models):
        recall = results[model]["recall"][0]
        ax.bar([j + i * width for j in range(len(settings))], [recall["zero_shot"][s]["p_mean"] for s in settings], width,
               label=f"{model} (n = {recall['n']})")
    ax.set(xticks=[j + width * (len(models) - 1) / 2 for j in range(len(settings))], ylabel="mean P(answer), zero-shot",
           title="paper B's mitigations on recall")
    ax.set_xticklabels(settings)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _es_change(r: dict) -> str:
    """ES(0) → ES(K) both ways, and whether the 95% intervals at 0 and K separate."""
    def reading(suffix: str) -> str:
        es, low, high = r["efficacy_score" + suffix], r["ci_low" + suffix], r["ci_high" + suffix]
        moved = "rises" if low[-1] > high[0] else "falls" if high[-1] < low[0] else "no clear change"
        return f"{es[0]:.3f} → {es[-1]:.3f} ({moved})"
    return f"{reading('')}; per token {reading('_per_token')} [n = {r['n']}, K = {r['k'][-1]}]"


def _es_at_k(r: dict) -> str:
    return f"{r['efficacy_score'][-1]:.3f} ({r['ci_low'][-1]:.3f}–{r['ci_high'][-1]:.3f})"


def findings(results: dict[str, dict[str, list[dict]]]) -> list[dict]:
    """What each model shows for each of the papers' findings, one row per finding and one column
    per model, from the result JSONs alone (what `markdown_findings` and the compare page show)."""
    models = list(results)
    rows: dict[str, dict] = {}

    def put(finding: str, model: str, text: str) -> None:
        rows.setdefault(finding, {"finding": finding})[model] = text

    for model, kinds in results.items():
        for r in headline_hijacks(kinds):
            put(f"paper A: ES(0) → ES(K), {scheme_label(r)} scheme", model, _es_change(r))
        for r in sorted((r for r in kinds.get("hijack", []) if r.get("mitigations")), key=scheme_label):
            for name, m in r["mitigations"].items():
                put(f"A × B: ES(K) of {scheme_label(r)} hijacking, without → with paper B's `{name}` fix (95% CI)", model,
                    f"{_es_at_k(r)} → {_es_at_k(m)} [n = {r['n']}, K = {r['k'][-1]}]")
        for a in kinds.get("anatomy", []):
            k, control = a["k"], a["control"]
            put(f"anatomy ({a['scheme']}, k = {k}): heads chosen on one split, ablated on the other, beat "
                f"q95 of {len(control['es'])} random head sets", model,
                f"{'yes' if control['top_beats_q95'][k] else 'no'}: ES {a['es_baseline'][k]:.3f} → {a['es_top_ablated'][k]:.3f}; "
                f"random {control['es_q05'][k]:.3f}–{control['es_q95'][k]:.3f} ({', '.join(map(str, map(_head, a['top_heads'])))})")
        for recall in kinds.get("recall", []):
            zero = recall["zero_shot"]
            put("paper B: zero-shot P(answer), baseline → masked / intercept / both", model,
                f"{zero['baseline']['p_mean']:.3f} → " + " / ".join(f"{zero[s]['p_mean']:.3f}" for s in ("masked", "intercept", "both"))
                + f" [n = {recall['n']}]")
    return [{"finding": row["finding"], **{m: row.get(m, "–") for m in models}} for row in rows.values()]


def _head(head) -> str:
    layer, index = head
    return f"L{layer}H{index}"


def markdown_findings(results: dict[str, dict[str, list[dict]]]) -> str:
    """`findings` as a Markdown table (the README's "what holds on two models")."""
    models = list(results)
    lines = ["| finding | " + " | ".join(models) + " |", "|---" * (len(models) + 1) + "|"]
    lines += ["| " + " | ".join(row[c] for c in ("finding", *models)) + " |" for row in findings(results)]
    return "\n".join(lines)


def compare_page(folders: list[Path], out: Path) -> Path:
    results = load_results(folders)
    if not results:
        raise ValueError(f"no results to compare under {', '.join(map(str, folders))}.")
    heads, fixes = [], []
    for model, kinds in results.items():
        for a in kinds.get("anatomy", []):
            control = a["control"]
            heads.append({"model": model, "scheme": a["scheme"], "k": a["k"], "top heads": ", ".join(map(_head, a["top_heads"])),
                          "ES at k": a["es_baseline"][a["k"]], "top ablated": a["es_top_ablated"][a["k"]],
                          "random q05–q95": f"{control['es_q05'][a['k']]:.3f}–{control['es_q95'][a['k']]:.3f}",
                          "beats q95": "yes" if control["top_beats_q95"][a["k"]] else "no",
                          "split": f"{a['split']['selection']}/{a['split']['evaluation']}"})
        for r in kinds.get("hijack", []):
            for name, m in r.get("mitigations", {}).items():
                fixes.append({"model": model, "scheme": scheme_label(r), "mitigation": name, "ES at largest k": r["efficacy_score"][-1],
                              "with the mitigation": m["efficacy_score"][-1]})
    parts = [f"<p>Models: {', '.join(html.escape(m) for m in results)}. Drawn from the result JSONs under "
             f"{', '.join(html.escape(str(f)) for f in folders)}.</p>",
             "<h2>What holds on each model</h2>", table_html(findings(results))]
    with artifacts.transaction():  # the page, its ES figure (also for the README) and findings.md appear together, or none does
        parts.append(png_html(save_figure(out / "es_by_scheme.png", es_figure(results)), "ES by scheme and model"))
        if heads:
            parts += ["<h2>The heads each model's anatomy found (chosen on one split, measured on the other)</h2>", table_html(heads)]
        if any(kinds.get("recall") for kinds in results.values()):
            parts += ["<h2>Paper B's mitigations</h2>", figure_html(mitigation_figure(results), "mitigations on recall")]
        if fixes:
            parts += ["<h2>Paper B's mitigations against paper A's hijack</h2>", table_html(fixes)]
        path = out / "compare.html"
        write_page(path, "Models side by side", parts)
        artifacts.write_text(out / "findings.md", markdown_findings(results) + "\n")
    return path
