"""Paper A's claims drawn from `claims.json`: one figure per claim and `report.html`.

Every figure reads only the claim's `measured` data, so a reproduction can be redrawn without
its toys. `FIGURES` maps a claim id to its drawing; a claim added later registers there.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path

from lca_interp.report.figures import errorbars, log_x, png_html, pyplot, save_figure
from lca_interp.report.page import attention_views, table_html, write_page


def _bars(title: str, ylabel: str, rows: dict[str, dict], colors=None):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    names = list(rows)
    ax.bar(names, [rows[n]["mean"] for n in names], yerr=[rows[n]["sd"] for n in names], capsize=3, color=colors)
    ax.set(ylabel=ylabel, title=title)
    return fig


def _variants(title: str, xlabel: str, by: dict[str, dict], variants: dict[str, str], log: bool, mark=None):
    """Test accuracy at the plateau of each variant (with the chosen lr), and steps to plateau."""
    plt = pyplot()
    fig, (ax_acc, ax_steps) = plt.subplots(1, 2, figsize=(10, 3.6))
    xs = [int(x) for x in by]
    for key, label in variants.items():
        rows = [by[x][key] for x in by]
        errorbars(ax_acc, xs, [r["test_accuracy"] for r in rows], label)
        for x, r in zip(xs, rows):
            ax_acc.annotate(f"lr {r['lr']:g}", (x, r["test_accuracy"]["mean"]), fontsize=7, textcoords="offset points",
                            xytext=(4, -10 if key == list(variants)[1] else 6))
        ax_steps.plot(xs, [sum(r["steps_to_plateau"]) / len(r["steps_to_plateau"]) for r in rows], marker="o", label=label)
    for ax in (ax_acc, ax_steps):
        log_x(ax, xs, xlabel) if log else ax.set(xlabel=xlabel, xticks=xs)
        if mark is not None:
            ax.axvline(mark[0], color="k", linestyle=":", label=mark[1])
    ax_acc.set(ylabel="test accuracy at the plateau", title=title)
    ax_steps.set(ylabel="mean steps to plateau", title="training length (plateau rule)")
    ax_acc.legend(fontsize=8)
    ax_steps.legend(fontsize=8)
    fig.tight_layout()
    return fig


# Claims that compare variants trained to the plateau: (key of the settings, the setting's name,
# variant → label).
VARIANTS = {
    "C1": ("by_context_len", "L", {"trained_wv": "trained W_V", "identity_wv": "W_V = I"}),
    "C4": ("by_d", "d", {"trained_we": "trained W_E", "frozen_we": "W_E frozen at init"}),
}


def c1(m: dict):
    key, _, labels = VARIANTS["C1"]
    return _variants("C1: trained vs identity value matrix", "context length L", m[key], labels, log=False)


def c2(m: dict):
    return _bars("C2: replacing the trained W_V", "test accuracy", m, ["C0", "C2", "C7"])


def c3(m: dict):
    rows = {k: m[k] for k in ("constructed", "random", "gaussian_init")}
    return _bars(f"C3: rank-{m['rank']} subspaces vs trained W_V", "smallest principal angle (rad)", rows, ["C2", "C7", "C1"])


def c4(m: dict):
    key, _, labels = VARIANTS["C4"]
    return _variants("C4: does embedding training matter?", "d", m[key], labels, log=True, mark=(m["V"], f"V = {m['V']}"))


def _geometry(m: dict, title: str):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed, fit in enumerate(m["fits"]):
        distances = list(range(len(fit["mean_by_distance"])))
        ax.plot(distances, fit["mean_by_distance"], marker="o", label=f"seed {seed}")
        ax.plot(distances[1:], [fit["b"] - fit["a"] * k for k in distances[1:]], color="k", linestyle=":", alpha=0.6)
    ax.set(xlabel="Hamming distance", ylabel="mean ⟨W_E(t), W_E(t')⟩", title=title)
    ax.legend(fontsize=8)
    return fig


def c5(m: dict):
    return _geometry(m, "C5: embedding geometry, trained W_V (dotted: Eq 5.2 fit)")


def c6(m: dict):
    return _geometry(m, "C6: embedding geometry, W_V = I (dotted: Eq 5.2 fit)")


def c7(m: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for seed, (values, gap) in enumerate(zip(m["top_singular_values"], m["gap_after"])):
        ax.plot(range(1, len(values) + 1), values, marker=".", label=f"seed {seed} (gap after {gap})")
    ax.axvline(m["m"] + 0.5, color="k", linestyle=":", label="m")
    ax.set(yscale="log", xlabel="index", ylabel="singular value of W_E", title="C7: spectrum of W_E")
    ax.legend(fontsize=8)
    return fig


def c8(m: dict):
    plt = pyplot()
    names = [k for k in m if isinstance(m[k], dict) and "heatmap" in m[k]]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6))
    for ax, name in zip(axes, names):
        heat = m[name]["heatmap"]
        image = ax.imshow(heat, cmap="viridis", vmin=0, vmax=1)
        ticks = range(len(heat))
        ax.set(title=f"{name}: attention by cluster", xlabel="key token's cluster", ylabel="last token's cluster",
               xticks=ticks, yticks=ticks)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def c9(m: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    errorbars(ax, m["fractions"], m["flip_rate"], "predicts the other output")
    errorbars(ax, m["fractions"], m["own_rate"], "predicts its own output")
    ax.set(xlabel="fraction of context from another output", ylabel="rate", ylim=(0, 1), title="C9: hijacking the toy")
    ax.legend(fontsize=8)
    return fig


def c10(m: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    lengths = m["context_lens"]
    errorbars(ax, lengths, m["accuracy"], "trained toy")
    ax.plot(lengths, [r["mean"] for r in m["bayes_accuracy"]], "k--", marker="x", label="Bayes ceiling")
    log_x(ax, lengths, "context length L")
    ax.set(ylabel="test accuracy", title="C10: accuracy vs L")
    ax.legend(fontsize=8)
    return fig


def t1(m: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    errorbars(ax, m["context_lens"], m["error"], "constructed W_V")
    log_x(ax, m["context_lens"], "context length L")
    ax.set(ylabel="error", ylim=(0, max(r["mean"] for r in m["error"]) * 1.1 + 1e-3),
           title="T1: Theorem 1 model (W_K = W_Q = 0, Eq 5.1 W_V)")
    return fig


def t2(m: dict):
    rows = {"constructed W_V": m["constructed_error"], "W_V = I": m["identity_error"]}
    fig = _bars(f"T2: Lemma 2 (N = Hamming-1, L = {m['context_len']})", "error", rows, ["C2", "C1"])
    fig.axes[0].set_ylim(0, 1.05)
    return fig


FIGURES: dict[str, Callable[[dict], object]] = {
    "C1": c1, "C2": c2, "C3": c3, "C4": c4, "C5": c5, "C6": c6, "C7": c7, "C8": c8, "C9": c9, "C10": c10, "T1": t1, "T2": t2,
}


def render(data: dict, source: Path) -> list[Path]:
    """Each claim's `<id>.png` and `report.html` beside `claims.json`."""
    out = source.parent
    written = [save_figure(out / f"{claim['id']}.png", FIGURES[claim["id"]](claim["measured"])) for claim in data["claims"]]
    scale, claims = data["scale"], data["claims"]
    rows = [{"id": c["id"], "claim": c["claim"], "criterion": c["criterion"], "holds": "yes" if c["holds"] else "NO"}
            for c in claims]
    parts = [
        f"<p>Scale <b>{scale['name']}</b>: m = {scale['m']} (V = {2 ** scale['m']}), main L = {scale['context_lens'][0]}, "
        f"d = {scale['d_main']}, {scale['steps']} steps at lr {scale['lr']:g} for one-toy claims; compared variants "
        f"trained to the plateau (lr from {', '.join(f'{lr:g}' for lr in scale['plateau_lrs'])} chosen on validation, "
        f"stop when accuracy gains &lt; {scale['plateau_gain']} over {scale['plateau_window']} steps, cap "
        f"{scale['plateau_cap']}); {scale['seeds']} seeds. {data['holds']} of {len(claims)} claims hold; measured in "
        f"{data['seconds']:.1f} s.</p>",
        table_html(rows),
    ]
    for claim in claims:
        parts.append(f"<h2>{claim['id']}: {'holds' if claim['holds'] else 'does not hold'}</h2>"
                     f"<p>{html.escape(claim['claim'])}<br><i>Criterion:</i> {html.escape(claim['criterion'])}</p>")
        parts.append(png_html(out / f"{claim['id']}.png", alt=claim["id"]))
    if data.get("attention_examples"):
        examples = data["attention_examples"]
        largest = max(v for e in examples for head in e["pattern"] for row in head for v in row)
        keys = len(examples[0]["tokens"])
        parts.append("<h2>A trained toy's attention (seed 0, main setting)</h2><p class=\"caption\">Each cell is the "
                     f"attention weight minus the uniform 1/L = {1 / keys:.4f}, blue above uniform and red below, on a "
                     f"colour scale set by the largest difference (the largest weight shown is {largest:.4f}). Tokens "
                     "are id:latent bits; hover a cell for its value.</p>")
        parts.extend(attention_views(data["attention_examples"], relative_to_uniform=True))
    write_page(out / "report.html", "Paper A, synthetic claims", parts)
    return [*written, out / "report.html"]


def _pm(row: dict, digits: int = 3) -> str:
    return f"{row['mean']:.{digits}f} ± {row['sd']:.{digits}f}"


def _variant_gaps(rows: dict, unit: str) -> str:
    """Each setting's gap, naming any variant whose toys stopped at the step cap, not the plateau."""
    def capped(row: dict) -> str:
        names = [name for name, v in row.items() if isinstance(v, dict) and not all(v.get("plateaued", [True]))]
        return f" ({', '.join(names)} stopped at the step cap, still rising)" if names else ""
    return "; ".join(f"{unit} {key}: {_pm(row['gap'])}{capped(row)}" for key, row in rows.items())


SUMMARIES: dict[str, Callable[[dict], str]] = {
    "C1": lambda m: "test-accuracy gap trained − identity W_V at the plateau, " + _variant_gaps(m["by_context_len"], "L ="),
    "C2": lambda m: f"accuracy trained {_pm(m['trained'])}, constructed {_pm(m['constructed'])}, random {_pm(m['random'])}",
    "C3": lambda m: f"angle constructed {_pm(m['constructed'])}, random {_pm(m['random'])}, Gaussian init {_pm(m['gaussian_init'])} rad",
    "C4": lambda m: "test-accuracy gap trained − frozen W_E at the plateau, " + _variant_gaps(m["by_d"], "d ="),
    "C5": lambda m: f"a = {_pm(m['a'], 2)}, b = {_pm(m['b'], 2)}, b₀ = {_pm(m['b0'], 2)}, R² = {_pm(m['r2'])}",
    "C6": lambda m: f"R² of the means {_pm(m['r2_of_means'], 4)}, a = {_pm(m['a'], 2)}",
    "C7": lambda m: f"largest gap after σ_k, k = {', '.join(map(str, m['gap_after']))} (m = {m['m']})",
    "C8": lambda m: "; ".join(f"{name}: {_pm(m[name]['out_of_cluster_mass_removed'])} of the out-of-cluster mass removed"
                              for name in ("cluster1", "cluster2")),
    "C9": lambda m: "flip rate " + " → ".join(f"{r['mean']:.3f}" for r in m["flip_rate"]) + " for mixed fraction "
                    + " → ".join(f"{f:g}" for f in m["fractions"]),
    "C10": lambda m: "accuracy " + ", ".join(f"{r['mean']:.3f}" for r in m["accuracy"]) + " (Bayes "
                     + ", ".join(f"{r['mean']:.3f}" for r in m["bayes_accuracy"]) + f") at L = {', '.join(map(str, m['context_lens']))}",
    "T1": lambda m: f"error {m['error'][0]['mean']:.3f} at L = {m['context_lens'][0]} → {m['error'][-1]['mean']:.4f} at L = {m['context_lens'][-1]}",
    "T2": lambda m: f"error constructed {_pm(m['constructed_error'])}, identity {_pm(m['identity_error'])}",
}


def variant_table(claim: dict) -> str:
    """A plateau claim's variants per setting: test accuracy (mean ± sd), the lr validation chose,
    steps to the plateau per seed, and the gap."""
    key, unit, labels = VARIANTS[claim["id"]]
    lines = [f"| {unit} | " + " | ".join(labels.values()) + " | gap |", "|---" * (len(labels) + 2) + "|"]
    for setting, row in claim["measured"][key].items():
        cells = [f"{_pm(row[v]['test_accuracy'])} at lr {row[v]['lr']:g} "
                 f"({', '.join(f'{s / 1000:g}k' for s in row[v]['steps_to_plateau'])} steps"
                 f"{'' if all(row[v]['plateaued']) else ', capped'})" for v in labels]
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {_pm(row['gap'])} |")
    return "\n".join(lines)


def markdown_table(data: dict) -> str:
    """The claims as a Markdown table (id, verdict, what was measured, mean ± sd over seeds), then a
    table per claim that compares variants at their plateau."""
    lines = ["| claim | holds | measured (mean ± sd over seeds) |", "|---|---|---|"]
    for claim in data["claims"]:
        lines.append(f"| {claim['id']}: {claim['claim']} | {'yes' if claim['holds'] else '**no**'} | "
                     f"{SUMMARIES[claim['id']](claim['measured'])} |")
    for claim in (c for c in data["claims"] if c["id"] in VARIANTS):
        lines += ["", f"{claim['id']} at the plateau: test accuracy, the learning rate validation chose, steps to the plateau per seed.",
                  "", variant_table(claim)]
    return "\n".join(lines)
