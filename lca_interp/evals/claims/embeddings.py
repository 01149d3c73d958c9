"""Claims about the embeddings W_E: when training them matters, and the geometry they learn.

- C4: training W_E matters when d < V and not when d > V (each variant at its plateau).
- C5: trained embeddings follow Eq 5.2, ⟨W_E(t), W_E(t')⟩ ≈ −a·D_H(t, t') + b off the diagonal.
- C6: with W_V frozen at the identity that relation is linear (Theorem 3).
- C7: the spectrum of a trained W_E has a gap after about m singular values (Lemma 5).
"""

from __future__ import annotations

from lca_interp import theory
from lca_interp.evals.claims.protocol import ClaimSpec, Scale, ToySpec, main_toy, mean_sd
from lca_interp.fit import least_squares

C4_GAP = 0.05  # accuracy gap that counts as "matters"
C6_MIN_R2 = 0.95  # how straight the mean inner product against distance must be
C7_SLACK = 2  # the gap may fall up to m + C7_SLACK singular values


def _c4_specs(scale: Scale) -> list[ToySpec]:
    return [ToySpec(d_model=d, freeze_embed=frozen, to_plateau=True) for d in scale.d_models for frozen in (False, True)]


def c4_measure(r) -> dict:
    by_d = {str(d): r.compare(("trained_we", ToySpec(d_model=d, to_plateau=True)),
                              ("frozen_we", ToySpec(d_model=d, freeze_embed=True, to_plateau=True)))
            for d in r.scale.d_models}
    return {"V": 2**r.scale.m, "by_d": by_d}


def c4_holds(measured: dict) -> bool:
    V, rows = measured["V"], measured["by_d"]
    below = [row["gap"]["mean"] for d, row in rows.items() if int(d) < V]
    above = [row["gap"]["mean"] for d, row in rows.items() if int(d) > V]
    return bool(below and above) and min(below) > C4_GAP and max(abs(g) for g in above) <= C4_GAP


C4 = ClaimSpec(
    id="C4",
    statement="Training the embeddings matters when d < V and not when d > V.",
    criterion=f"at the plateau of each (lr chosen on validation), mean test-accuracy gap (trained − frozen W_E) > "
              f"{C4_GAP} for every d < V, and |gap| ≤ {C4_GAP} for every d > V",
    needs=_c4_specs, measure=c4_measure, holds=c4_holds,
)


def _geometry(r, spec: ToySpec) -> list[theory.GeometryFit]:
    return [theory.embedding_geometry(r.toy(seed, spec).model.W_E.detach(), r.scale.m) for seed in r.seeds]


def c5_measure(r) -> dict:
    fits = _geometry(r, ToySpec())
    return {"a": mean_sd([f.a for f in fits]), "b": mean_sd([f.b for f in fits]), "b0": mean_sd([f.b0 for f in fits]),
            "r2": mean_sd([f.r2 for f in fits]), "fits": [f.to_dict() for f in fits]}


def c5_holds(measured: dict) -> bool:
    return all(f["a"] > 0 and f["b0"] > f["b"] for f in measured["fits"])


C5 = ClaimSpec(
    id="C5",
    statement="Trained embeddings follow Eq 5.2: ⟨W_E(t), W_E(t')⟩ ≈ −a·D_H(t, t') + b off the diagonal and b_0 on "
              "it, with a > 0 and b_0 > b.",
    criterion="for every seed, fitted a > 0 and b_0 > b (R² of the fit reported)",
    needs=main_toy, measure=c5_measure, holds=c5_holds,
)


def linearity(mean_by_distance: list[float]) -> float:
    """R² of a line through the mean inner product at distances 1..m."""
    return least_squares([[k, 1.0] for k in range(1, len(mean_by_distance))], mean_by_distance[1:]).r2


def c6_measure(r) -> dict:
    fits = _geometry(r, ToySpec(freeze_wv=True))
    return {"r2_of_means": mean_sd([linearity(f.mean_by_distance) for f in fits]), "r2_all_pairs": mean_sd([f.r2 for f in fits]),
            "a": mean_sd([f.a for f in fits]), "fits": [f.to_dict() for f in fits]}


def c6_holds(measured: dict) -> bool:
    return all(q >= C6_MIN_R2 for q in measured["r2_of_means"]["per_seed"]) and all(f["a"] > 0 for f in measured["fits"])


C6 = ClaimSpec(
    id="C6",
    statement="With W_V frozen at the identity, the inner product of trained embeddings is linear in the Hamming "
              "distance (Theorem 3).",
    criterion=f"for every seed, R² ≥ {C6_MIN_R2} of a line through the mean inner product at distances 1..m, with "
              "negative slope (a > 0)",
    needs=lambda scale: [ToySpec(freeze_wv=True)], measure=c6_measure, holds=c6_holds,
)


def c7_measure(r) -> dict:
    m = r.scale.m
    spectra = [theory.spectrum(r.toy(seed).model.W_E.detach()) for seed in r.seeds]
    return {"m": m, "gap_after": [sp.gap_after for sp in spectra], "gap_ratio": mean_sd([sp.gap_ratio for sp in spectra]),
            "top_singular_values": [sp.singular_values[: 3 * m] for sp in spectra]}


def c7_holds(measured: dict) -> bool:
    m = measured["m"]
    return all(m <= g <= m + C7_SLACK for g in measured["gap_after"])


C7 = ClaimSpec(
    id="C7",
    statement="The spectrum of a trained W_E has a gap after about m (to m + 2) singular values (Lemma 5).",
    criterion=f"for every seed, the largest ratio σ_k/σ_(k+1) falls at k ∈ [m, m + {C7_SLACK}]",
    needs=main_toy, measure=c7_measure, holds=c7_holds,
)
