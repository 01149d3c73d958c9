"""Claims about the context: mixing in another output's context hijacks the toy (C9), and a
longer context helps, up to the Bayes ceiling (C10)."""

from __future__ import annotations

import torch

from lca_interp.evals.claims.protocol import ClaimSpec, ToySpec, main_toy, mean_sd
from lca_interp.task import derive_seed, mix_contexts

FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)  # C9: share of the context drawn for another output
_MIX_STREAM = 3  # the other outputs' contexts: a stream of their own


def c9_measure(r) -> dict:
    flips: dict[float, list[float]] = {f: [] for f in FRACTIONS}
    kept: dict[float, list[float]] = {f: [] for f in FRACTIONS}
    for seed in r.seeds:
        toy = r.toy(seed)
        x_own, y_own = r.test_set(toy.task, seed)
        x_other, y_other = toy.task.sample(len(y_own), derive_seed(seed, _MIX_STREAM))
        distinct = y_own != y_other
        for f in FRACTIONS:
            with torch.no_grad():
                prediction = toy.model(mix_contexts(x_own, x_other, f), last_position_only=True).argmax(-1)
            flips[f].append(float((prediction == y_other)[distinct].float().mean()))
            kept[f].append(float((prediction == y_own)[distinct].float().mean()))
    return {"fractions": list(FRACTIONS), "flip_rate": [mean_sd(flips[f]) for f in FRACTIONS],
            "own_rate": [mean_sd(kept[f]) for f in FRACTIONS]}


def c9_holds(measured: dict) -> bool:
    means = [row["mean"] for row in measured["flip_rate"]]
    return all(b >= a for a, b in zip(means, means[1:])) and means[-1] > means[0]


C9 = ClaimSpec(
    id="C9",
    statement="Mixing in context drawn for a different output flips the prediction to that output, more as the mixed "
              "fraction grows (context hijacking inside the toy).",
    criterion="mean flip rate is non-decreasing in the mixed fraction and higher at the largest fraction than at 0",
    needs=main_toy, measure=c9_measure, holds=c9_holds,
)


def c10_measure(r) -> dict:
    accuracy, bayes = [], []
    for L in r.scale.length_sweep:
        toys = [r.toy(seed, ToySpec(L)) for seed in r.seeds]
        test = [r.test_set(t.task, seed) for seed, t in enumerate(toys)]
        accuracy.append(mean_sd([r.accuracy(t.model, t.task, seed) for seed, t in enumerate(toys)]))
        bayes.append(mean_sd([t.task.bayes_accuracy(*data) for t, data in zip(toys, test)]))
    return {"context_lens": list(r.scale.length_sweep), "accuracy": accuracy, "bayes_accuracy": bayes}


def c10_holds(measured: dict) -> bool:
    means = [row["mean"] for row in measured["accuracy"]]
    below = all(a <= b for row, ceiling in zip(measured["accuracy"], measured["bayes_accuracy"])
                for a, b in zip(row["per_seed"], ceiling["per_seed"]))
    return all(b > a for a, b in zip(means, means[1:])) and below


C10 = ClaimSpec(
    id="C10",
    statement="Accuracy rises with context length and stays below the Bayes ceiling.",
    criterion="mean test accuracy strictly increasing in L, and every toy's accuracy ≤ the Bayes accuracy on the "
              "same test draw",
    needs=lambda scale: [ToySpec(L) for L in scale.length_sweep], measure=c10_measure, holds=c10_holds,
)

