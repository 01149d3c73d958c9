"""Paper B's recall study drawn from `recall.json`: argument-passing heads, the logit lens, the
mitigations, the MLP regressions and the final layer, as figures and formatted tables."""

from __future__ import annotations

import html
from pathlib import Path

from lca_interp.report.figures import figure_html, png_html, pyplot, save_figure
from lca_interp.report.page import number, table_html, write_page

SETTINGS = ("baseline", "masked", "intercept", "both")


def figure(data: dict, top: int = 12):
    """Argument-passing heads, P(answer) through the layers, and the mitigations."""
    plt = pyplot()
    fig, (ax_heads, ax_lens, ax_fix) = plt.subplots(1, 3, figsize=(16, 4))
    heads = data["heads"][:top][::-1]
    scale = max(abs(h["patch_effect"]) for h in heads) or 1.0
    ax_heads.barh([h["head"] for h in heads], [h["patch_effect"] for h in heads], label="patch effect (ΔP)")
    ax_heads.barh([h["head"] for h in heads], [h["correlation"] * scale for h in heads], height=0.3, color="tab:orange",
                  label="r(attention, projection) × max ΔP")
    ax_heads.set(xlabel="drop in P(answer) when patched from another country", title="argument-passing heads")
    ax_heads.legend(fontsize=8)
    lens = data["anti_overconfidence"]
    ax_lens.plot(range(len(lens["stages"])), lens["p_answer_by_stage"], marker="o")
    ax_lens.set(xticks=range(len(lens["stages"])), xlabel="residual stream after", ylabel="mean P(answer)",
                title="logit lens (zero-shot)")
    ax_lens.set_xticklabels(lens["stages"], rotation=90, fontsize=7)
    width = 0.38
    for offset, (label, values) in zip((-width / 2, width / 2), (("zero-shot", data["zero_shot"]), (f"{data['shots']}-shot", data["few_shot"]))):
        ax_fix.bar([i + offset for i in range(len(SETTINGS))], [values[n]["p_mean"] for n in SETTINGS], width, label=label)
    ax_fix.set(xticks=range(len(SETTINGS)), ylabel="mean P(answer)", title="mitigations")
    ax_fix.set_xticklabels(SETTINGS)
    ax_fix.legend(fontsize=8)
    fig.suptitle(f"{data['model']}: factual recall on {data['n']} prompts")
    fig.tight_layout()
    return fig


def coefficients_figure(decomposition: dict, title: str):
    """One bar per head: its coefficient in the MLP's regression (erase < 0.1 ≤ keep ≤ 1 < amplify)."""
    plt = pyplot()
    heads, values = decomposition["heads"], decomposition["coefficients"]
    fig, ax = plt.subplots(figsize=(min(16, 0.12 * len(heads) + 3), 3))
    colors = ["tab:red" if v < 0.1 else "tab:green" if v > 1 else "tab:gray" for v in values]
    ax.bar(range(len(heads)), values, color=colors)
    ax.axhline(1, color="k", linestyle=":", linewidth=0.8)
    ax.axhline(0, color="k", linewidth=0.6)
    step = max(1, len(heads) // 40)
    ax.set_xticks(range(0, len(heads), step), heads[::step], rotation=90, fontsize=6)
    ax.set(ylabel="coefficient", title=f"{title}: R² = {decomposition['r_squared']:.3f} (red: erased, green: amplified)")
    fig.tight_layout()
    return fig


def final_heads_figure(lens: dict):
    plt = pyplot()
    first, punct = lens["final_heads_mass_on_first_token"], lens["final_heads_mass_on_punctuation"]
    fig, ax = plt.subplots(figsize=(5, 3))
    xs = range(len(first))
    ax.bar([x - 0.2 for x in xs], first, 0.4, label="first token")
    ax.bar([x + 0.2 for x in xs], punct, 0.4, label="punctuation")
    ax.set(xticks=list(xs), xlabel="final-layer head", ylabel="attention mass from the last position", ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def toward_mean_figure(by_layer: list[float]):
    """Each MLP's mean output, read through W_U, correlated with the prompts' mean logits."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.bar(range(len(by_layer)), by_layer, color=["tab:orange" if i == len(by_layer) - 1 else "tab:gray" for i in range(len(by_layer))])
    ax.set(xlabel="layer of the MLP", ylabel="r with the mean logits", xticks=range(len(by_layer)),
           title="which MLPs write toward the average next-token distribution (final one orange)")
    fig.tight_layout()
    return fig


def render(data: dict, source: Path) -> list[Path]:
    png = save_figure(source.with_suffix(".png"), figure(data))
    page = source.with_suffix(".html")
    settings = [{"prompts": label, "setting": name, "mean P(answer)": block[name]["p_mean"],
                 "logit − mean logit": block[name]["logit_minus_mean"]}
                for label, block in (("zero-shot", data["zero_shot"]), (f"{data['shots']}-shot", data["few_shot"]))
                for name in SETTINGS]
    memory = [{"head": head, **score} for head, score in data["head_memory"].items()]
    mlp, final, lens = data["mlp_decomposition"], data["final_mlp"], data["anti_overconfidence"]
    tokens = ", ".join(html.escape(repr(t)) for t in mlp["intercept_top_tokens"][:15])
    split = data.get("split")
    held_out = (f" Heads were ranked, the MLP chosen and the final MLP's intercept fitted on {len(split['fit'])} other "
                f"facts (seed {split['seed']}); every number here is measured on these {len(split['evaluation'])}."
                if split else "")
    write_page(page, f"Factual recall: {data['model']}", [
        f"<p>{data['n']} zero-shot prompts ({data['shots']}-shot block beside them).{held_out}</p>",
        png_html(png, "argument-passing heads, logit lens, mitigations"),
        "<h2>P(answer) with each mitigation</h2>", table_html(settings),
        "<h2>Argument-passing heads</h2>", table_html(data["heads"][:15]),
        "<p>Their OV circuits read as country → capital memories (paper A's associative memory):</p>", table_html(memory),
        f"<h2>MLP {mlp['layer']} as a regression on the heads before it</h2>",
        f"<p>R² = {number(mlp['r_squared'])}; intercept norm {number(mlp['intercept_norm'])}; answers among the "
        f"intercept's top 30 tokens: {number(mlp['answers_in_top'])}; mean percentile of the answers in its logits: "
        f"{number(mlp['answer_rank_percentile'])}. Its top tokens: {tokens}.</p>",
        figure_html(coefficients_figure(mlp, f"MLP {mlp['layer']}"), "regression coefficients"),
        f"<h2>Final layer (L{final['layer']})</h2>",
        f"<p>The final layer moves mean P(answer) from {number(lens['p_before_final_layer'])} to "
        f"{number(lens['p_after_final_layer'])} and lowers it on {number(lens['final_layer_lowers_p'])} of the prompts. "
        f"Its MLP's output read through W_U correlates r = {number(lens['final_mlp_vs_mean_logits_correlation'])} with "
        f"the mean logits of the prompts. Regressed on the heads before it: R² = {number(final['r_squared'])}, "
        f"intercept norm {number(final['intercept_norm'])}.</p>",
        figure_html(final_heads_figure(lens), "final-layer heads' attention on frequent tokens"),
        *([figure_html(toward_mean_figure(lens["mlp_vs_mean_logits_correlation_by_layer"]), "every MLP against the mean logits")]
          if "mlp_vs_mean_logits_correlation_by_layer" in lens else []),
        figure_html(coefficients_figure(final, f"final MLP (L{final['layer']})"), "final MLP coefficients"),
    ])
    return [png, page]
