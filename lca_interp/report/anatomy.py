"""The anatomy of a hijack drawn from `anatomy.json`: on an LLM (attention and direct logit
attribution by head, ES with the top heads ablated) and on the LCA toy (mixed contexts)."""

from __future__ import annotations

from pathlib import Path

from lca_interp.report.figures import figure_html, png_html, pyplot, save_figure
from lca_interp.report.page import attention_views, number, table_html, write_page


def _heads(heads: list) -> str:
    return ", ".join(f"L{layer}H{head}" for layer, head in heads)


def _values(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)


def llm_figure(data: dict):
    plt = pyplot()
    measured = data["evaluation"]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4))
    panels = [(measured["mass_context"], "attention mass: last → hijack sentences", "viridis", False),
              (measured["mass_named"], "attention mass: last → named target word", "viridis", False),
              (measured["dla_shift"], "DLA shift toward o_ (hijacked − clean)", "RdBu_r", True)]
    for ax, (values, title, cmap, symmetric) in zip(axes, panels):
        limit = max(abs(v) for row in values for v in row) or 1.0
        image = ax.imshow(values, cmap=cmap, aspect="auto", **({"vmin": -limit, "vmax": limit} if symmetric else {}))
        ax.set(xlabel="head", ylabel="layer", title=title)
        fig.colorbar(image, ax=ax, fraction=0.046)
    ax, ks, control = axes[3], data["ks"], data["control"]
    ax.plot(ks, data["es_baseline"], marker="o", label="no ablation")
    ax.plot(ks, data["es_top_ablated"], marker="s", label=f"top {len(data['top_heads'])} heads ablated")
    ax.plot(ks, control["es_q50"], marker="^", label=f"random heads (median of {len(control['es'])} draws)")
    ax.fill_between(ks, control["es_q05"], control["es_q95"], alpha=0.2, color="C2", label="random: 5–95%")
    split = data["split"]
    ax.set(xlabel="prepended sentences k", ylabel="ES", ylim=(0, 1), xticks=ks,
           title=f"{data['scheme']}, evaluation split n = {split['evaluation']}")
    ax.legend(fontsize=8)
    fig.suptitle(f"{data['model']}: anatomy of the {data['scheme']} hijack at k = {data['k']} (heads chosen on "
                 f"{split['selection']} other facts)")
    fig.tight_layout()
    return fig


def attribution_figure(attribution: dict, top: int = 20):
    """Bar chart of the `top` components by |mean direct contribution| to logit(o_) − logit(o*)."""
    plt = pyplot()
    labels, means = attribution["labels"], attribution["mean_contribution"]
    order = sorted(range(len(means)), key=lambda i: -abs(means[i]))[:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.28 * len(order) + 1.2))
    ax.barh([labels[i] for i in order], [means[i] for i in order], color=["tab:red" if means[i] < 0 else "tab:blue" for i in order])
    ax.axvline(0, color="black", linewidth=0.6)
    mean_diff = sum(attribution["logit_diff"]) / len(attribution["logit_diff"])
    ax.set(xlabel="mean direct contribution to logit(o_) − logit(o*)",
           title=f"example prompts: direct logit attribution (mean logit diff {mean_diff:.2f})")
    fig.tight_layout()
    return fig


def render_llm(data: dict, source: Path) -> list[Path]:
    png = save_figure(source.with_suffix(".png"), llm_figure(data))
    page = source.with_suffix(".html")
    ranked = [{key: (number(value) if isinstance(value, float) else value) for key, value in row.items()}
              for row in data["ranked_heads"]]
    split, control = data["split"], data["control"]
    beats = ", ".join(f"k={k}: {'yes' if b else 'no'}" for k, b in zip(data["ks"], control["top_beats_q95"]))
    write_page(page, f"Hijack anatomy: {data['model']}, {data['scheme']}, k = {data['k']}", [
        f"<p>Heads ranked on a selection split of {split['selection']} facts (seed {split['seed']}); every number "
        f"below is measured on the other {split['evaluation']}. ES(k) for k = {data['ks']}: no ablation "
        f"{_values(data['es_baseline'])}; top {len(data['top_heads'])} heads {_heads(data['top_heads'])} mean-ablated "
        f"{_values(data['es_top_ablated'])}; {len(control['es'])} draws of as many random heads from the same layers "
        f"({control['distinct_sets']} distinct sets): median {_values(control['es_q50'])}, 5–95% "
        f"{_values(control['es_q05'])} – {_values(control['es_q95'])}. The top heads lower ES more than the 95th "
        f"percentile of the random draws: {beats}.</p>",
        png_html(png, "attention and DLA by head; ES with ablations"),
        "<h2>Heads whose direct vote moves most toward o_ (ranked on the selection split)</h2>",
        table_html(ranked),
        figure_html(attribution_figure(data["example_attribution"]), "largest direct contributions"),
        "<h2>The top heads on evaluation prompts</h2>",
        *attention_views(data["examples"]),
    ])
    return [png, page]


def toy_figure(data: dict):
    plt = pyplot()
    fig, (ax_mass, ax_write) = plt.subplots(1, 2, figsize=(10, 3.6))
    fractions = data["fractions"]
    ax_mass.plot(fractions, data["mass_foreign"], marker="o", label="attention on foreign tokens")
    ax_mass.plot(fractions, data["uniform_foreign"], linestyle="--", label="uniform attention")
    ax_mass.plot(fractions, data["flip_rate"], marker="s", label="predicts the foreign output")
    ax_mass.set(xlabel="fraction of context from another output", ylabel="mass / rate", ylim=(0, 1))
    ax_mass.legend(fontsize=8)
    ax_write.plot(fractions, data["write_foreign"], marker="o", label="foreign tokens")
    ax_write.plot(fractions, data["write_own"], marker="s", label="own tokens")
    ax_write.plot(fractions, data["logit_diff"], marker="^", label="total (the toy's logit diff)")
    ax_write.axhline(0, color="black", linewidth=0.6)
    ax_write.set(xlabel="fraction of context from another output", ylabel="logit(y') − logit(y)",
                 title="what the value matrix writes, by source")
    ax_write.legend(fontsize=8)
    fig.suptitle(f"LCA toy hijacked by mixed contexts (n = {data['n']})")
    fig.tight_layout()
    return fig


def render_toy(data: dict, source: Path) -> list[Path]:
    png = save_figure(source.with_suffix(".png"), toy_figure(data))
    page = source.with_suffix(".html")
    keys = ("fractions", "mass_foreign", "uniform_foreign", "write_foreign", "write_own", "flip_rate")
    rows = [dict(zip(keys, values)) for values in zip(*(data[key] for key in keys))]
    memory = data["memory"]
    write_page(page, "LCA toy hijacked by mixed contexts", [
        "<p>Contexts whose first part was drawn for another output y'. Left: the last position's attention on those "
        "foreign tokens against their share (what uniform attention would give), and how often the toy then predicts "
        "y'. Right: the toy's logit(y') − logit(y), split exactly into what the foreign and the own tokens write "
        f"through W_E W_V W_Eᵀ. That token map scores as an associative memory of Eq 5.1's Hamming-1 map with cosine "
        f"{memory['cosine']:.3f} and retrieval accuracy {memory['retrieval_accuracy']:.3f}.</p>",
        png_html(png, "attention on foreign tokens and what they write"),
        table_html(rows),
        "<h2>Half-mixed contexts</h2><p class=\"caption\">The first half of each context comes from another output's "
        "context; the heading names the own output and the toy's prediction. Each cell is the attention weight minus "
        "the uniform 1/L, blue above uniform and red below.</p>",
        *attention_views(data["examples"], relative_to_uniform=True),
    ])
    return [png, page]
