"""Claims about the value matrix W_V: it is learned, it is Eq 5.1's associative memory.

- C1: a trained W_V beats W_V frozen at the identity (at the plateau of each, both L).
- C2: replacing a trained W_V by the Eq 5.1 construction from the trained W_E keeps accuracy,
  and beats the randomly constructed baseline with as many outer products.
- C3: of the constructed, the randomly constructed and a Gaussian-init W_V, the constructed one's
  rank-m SVD subspace is the closest to the trained W_V's (smallest principal angle).
"""

from __future__ import annotations

from lca_interp import theory
from lca_interp.evals.claims.protocol import ClaimSpec, Scale, ToySpec, main_toy, mean_sd
from lca_interp.toy import LCAToy

C2_MAX_DROP = 0.05  # accuracy the constructed W_V may lose against the trained one


def _c1_specs(scale: Scale) -> list[ToySpec]:
    return [ToySpec(L, freeze_wv=identity, to_plateau=True) for L in scale.context_lens for identity in (False, True)]


def c1_measure(r) -> dict:
    return {"by_context_len": {str(L): r.compare(("trained_wv", ToySpec(L, to_plateau=True)),
                                                 ("identity_wv", ToySpec(L, freeze_wv=True, to_plateau=True)))
                               for L in r.scale.context_lens}}


def c1_holds(measured: dict) -> bool:
    gaps = [row["gap"]["mean"] for row in measured["by_context_len"].values()]  # in order of L
    return all(g > 0 for g in gaps) and gaps[0] > gaps[-1]


C1 = ClaimSpec(
    id="C1",
    statement="A trained W_V beats W_V frozen at the identity at both context lengths, most at the smaller one.",
    criterion="at the plateau of each (lr chosen on validation), mean test-accuracy gap (trained − identity) > 0 at "
              "both lengths, and larger at the smaller length",
    needs=_c1_specs, measure=c1_measure, holds=c1_holds,
)


def c2_measure(r) -> dict:
    trained, constructed, random = [], [], []
    for seed in r.seeds:
        toy = r.toy(seed)
        W_E = toy.model.W_E.detach()
        trained.append(r.accuracy(toy.model, toy.task, seed))
        built = theory.with_value_matrix(toy.model, theory.constructed_value_matrix(W_E, toy.task))
        constructed.append(r.accuracy(built, toy.task, seed))
        baseline = theory.with_value_matrix(toy.model, theory.random_value_matrix(W_E, toy.task, seed))
        random.append(r.accuracy(baseline, toy.task, seed))
    return {"trained": mean_sd(trained), "constructed": mean_sd(constructed), "random": mean_sd(random)}


def c2_holds(measured: dict) -> bool:
    close = measured["trained"]["mean"] - measured["constructed"]["mean"] <= C2_MAX_DROP
    return close and measured["constructed"]["mean"] > measured["random"]["mean"]


C2 = ClaimSpec(
    id="C2",
    statement="Replacing a trained W_V by the Eq 5.1 construction (built from the trained W_E) keeps accuracy close, "
              "and beats a randomly constructed W_V.",
    criterion=f"mean accuracy drop (trained − constructed) ≤ {C2_MAX_DROP}, and constructed > random",
    needs=main_toy, measure=c2_measure, holds=c2_holds,
)


def c3_measure(r) -> dict:
    k = r.scale.m
    angles: dict[str, list[float]] = {"constructed": [], "random": [], "gaussian_init": []}
    for seed in r.seeds:
        toy = r.toy(seed)
        W_V, W_E = toy.model.W_V[0, 0].detach(), toy.model.W_E.detach()
        references = {
            "constructed": theory.constructed_value_matrix(W_E, toy.task),
            "random": theory.random_value_matrix(W_E, toy.task, seed),
            "gaussian_init": LCAToy(toy.model.toy_cfg).W_V[0, 0].detach(),
        }
        for name, matrix in references.items():
            angles[name].append(theory.smallest_principal_angle(W_V, matrix, k))
    return {"rank": k, **{name: mean_sd(values) for name, values in angles.items()}}


def c3_holds(measured: dict) -> bool:
    per_seed = zip(*(measured[n]["per_seed"] for n in ("constructed", "random", "gaussian_init")))
    return all(c < min(rand, init) for c, rand, init in per_seed)


C3 = ClaimSpec(
    id="C3",
    statement="The constructed W_V has the smallest principal angle to the trained W_V (rank-m SVD approximations) "
              "among constructed, randomly constructed and Gaussian-init matrices.",
    criterion="for every seed, angle(constructed) < angle(random) and < angle(Gaussian init)",
    needs=main_toy, measure=c3_measure, holds=c3_holds,
)
