"""C8 (Lemma 6): with a cluster neighbourhood, the last position attends to its own cluster.

Clusters are the tokens sharing the first latent (`cluster1`) or the first two (`cluster2`). The
measurement is the attention mass the last position puts on tokens of its own cluster, against
the mass uniform attention would put there, as the fraction of out-of-cluster mass removed.
"""

from __future__ import annotations

import torch

from lca_interp import theory
from lca_interp.evals.claims.protocol import ClaimSpec, ToySpec, mean_sd
from lca_interp.hooks.attention import class_attention_matrix, pattern_hook

C8_MIN_REMOVED = 0.5  # share of the out-of-cluster mass that attention must remove
NEIGHBOURHOODS = {"cluster1": 1, "cluster2": 2}  # neighbourhood → latents that define a cluster


def c8_measure(r) -> dict:
    measured = {}
    for name, n_latents in NEIGHBOURHOODS.items():
        mass, base, heat = [], [], []
        for seed in r.seeds:
            toy = r.toy(seed, ToySpec(neighbourhood=name))
            x, _ = r.test_set(toy.task, seed)
            clusters = theory.cluster_ids(toy.task, n_latents)
            _, cache = toy.model.run_with_cache(x, last_position_only=True, names_filter=pattern_hook(0))
            last = cache[pattern_hook(0)][:, 0, 0]  # [batch, key]
            mass.append(float(theory.same_cluster_attention(last, x, clusters).mean()))
            uniform = torch.full_like(last, 1.0 / last.shape[1])
            base.append(float(theory.same_cluster_attention(uniform, x, clusters).mean()))
            heat.append(class_attention_matrix(last, clusters[x], clusters[x[:, -1]], 2**n_latents))
        removed = [(a - b) / (1 - b) for a, b in zip(mass, base)]
        measured[name] = {"same_cluster_mass": mean_sd(mass), "uniform_baseline": mean_sd(base),
                          "out_of_cluster_mass_removed": mean_sd(removed), "heatmap": torch.stack(heat).mean(0).tolist()}
    return measured


def c8_holds(measured: dict) -> bool:
    return all(measured[name]["out_of_cluster_mass_removed"]["mean"] >= C8_MIN_REMOVED for name in NEIGHBOURHOODS)


C8 = ClaimSpec(
    id="C8",
    statement="With cluster neighbourhoods (first latent; first two latents), attention from the last position "
              "concentrates on tokens of the last token's cluster (Lemma 6).",
    criterion=f"for both neighbourhoods, attention removes ≥ {C8_MIN_REMOVED:.0%} of the out-of-cluster mass that "
              f"uniform attention would give: (mass − uniform)/(1 − uniform) ≥ {C8_MIN_REMOVED}",
    needs=lambda scale: [ToySpec(neighbourhood=name) for name in NEIGHBOURHOODS], measure=c8_measure, holds=c8_holds,
)
