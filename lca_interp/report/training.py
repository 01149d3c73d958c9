"""A trained toy drawn from its run folder: the training curve (`metrics.json`), and its
attention on held-out contexts (`attention.json`, written by the demo)."""

from __future__ import annotations

import json
from pathlib import Path

from lca_interp.report.figures import pyplot, save_figure
from lca_interp.report.page import attention_views, write_page


def training_figure(metrics: dict, title: str):
    """Held-out accuracy and loss against step, with the Bayes ceiling as a dashed line."""
    plt = pyplot()
    history, bayes = metrics["history"], metrics["bayes_accuracy"]
    steps = [h["step"] for h in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_acc.plot(steps, [h["accuracy"] for h in history], marker="o", label="toy")
    ax_acc.axhline(bayes, color="k", linestyle="--", label=f"Bayes ceiling {bayes:.3f}")
    ax_acc.set(xlabel="step", ylabel="held-out accuracy", ylim=(0, 1.02), title=title)
    ax_acc.legend(loc="lower right")
    ax_loss.plot(steps, [h["loss"] for h in history], marker="o", label="held-out")
    trained = [h for h in history if h["train_loss"] is not None]
    ax_loss.plot([h["step"] for h in trained], [h["train_loss"] for h in trained], alpha=0.6, label="train batch")
    ax_loss.set(xlabel="step", ylabel="cross-entropy (nats)", yscale="log")
    ax_loss.legend()
    fig.tight_layout()
    return fig


def run_title(config: dict) -> str:
    task, toy = config["task"], config["toy"]
    frozen = (", W_V = I" if toy["freeze_wv"] else "") + (", W_E frozen" if toy["freeze_embed"] else "")
    return f"LCA toy: m={task['m']}, L={task['context_len']}, d={toy['d_model']}{frozen}"


def render_training(metrics: dict, source: Path) -> list[Path]:
    """`training.png` beside a run's `metrics.json` (its `config.json` gives the title)."""
    config = json.loads((source.parent / "config.json").read_text())
    return [save_figure(source.parent / "training.png", training_figure(metrics, run_title(config)))]


def render_attention(data: dict, source: Path) -> list[Path]:
    """`<stem>.html`: the toy's attention on held-out contexts, relative to uniform."""
    path = source.with_suffix(".html")
    write_page(path, "LCA toy: attention on held-out contexts", [
        f"<p>{data['summary']}</p><p class=\"caption\">Each cell is the attention weight minus the uniform 1/L, blue "
        "above uniform and red below, on a colour scale set by the largest difference. Tokens are id:latent bits; "
        "hover a cell for its value.</p>",
        *attention_views(data["examples"], relative_to_uniform=True),
    ])
    return [path]
