"""Context hijacking drawn from `hijack.json`: ES(k) under both readings (summed log-probabilities
and per-token means) with their intervals, and both targets' probabilities, with the curves
under each of paper B's mitigations dashed beside them."""

from __future__ import annotations

from pathlib import Path

from lca_interp.report.figures import pyplot, save_figure


def _precision_note(data: dict) -> str:
    """", mixed precision (x% in float32)" for a mixed-precision result, else nothing."""
    precision = data.get("precision") or {}
    if precision.get("scored_in") != "mixed":
        return ""
    return f",\nmixed precision: {precision['rescored_pairs'] / precision['pairs']:.1%} of (fact, k) rescored in float32"


def figure(data: dict):
    plt = pyplot()
    fig, (ax_es, ax_p) = plt.subplots(1, 2, figsize=(10, 3.6))
    k = data["k"]
    ax_es.plot(k, data["efficacy_score"], marker="o", label="ES, summed log P (paper A)")
    ax_es.fill_between(k, data["ci_low"], data["ci_high"], alpha=0.25, label="95% bootstrap CI")
    if "efficacy_score_per_token" in data:  # results written before both readings were kept have one
        ax_es.plot(k, data["efficacy_score_per_token"], marker="x", color="C2", label="ES, mean log P per token (ROME)")
        ax_es.fill_between(k, data["ci_low_per_token"], data["ci_high_per_token"], color="C2", alpha=0.15)
    ax_es.set(xlabel="prepended sentences k", ylabel="efficacy score  P(o_) > P(o*)", ylim=(0, 1), xticks=k,
              title=f"{data['model']}: {data['scheme']} on {data['dataset']} (n = {data['n']}){_precision_note(data)}")
    ax_p.plot(k, data["p_true_mean"], marker="o", label="mean P(o*)")
    ax_p.plot(k, data["p_false_mean"], marker="s", label="mean P(o_)")
    for name, other in data.get("mitigations", {}).items():
        ax_es.plot(other["k"], other["efficacy_score"], linestyle="--", marker=".", label=f"ES, {name}")
        ax_p.plot(other["k"], other["p_true_mean"], linestyle="--", label=f"P(o*), {name}")
        ax_p.plot(other["k"], other["p_false_mean"], linestyle=":", label=f"P(o_), {name}")
    ax_p.set(xlabel="prepended sentences k", ylabel="mean probability", xticks=k)
    size = 7 if data.get("mitigations") else None
    ax_es.legend(fontsize=size)
    ax_p.legend(fontsize=size)
    fig.tight_layout()
    return fig


def render(data: dict, source: Path) -> list[Path]:
    return [save_figure(source.with_suffix(".png"), figure(data))]
