"""Paper A's exact statements about constructed models, checked by sampling (no training).

- T1 (Theorem 1): W_K = W_Q = 0, orthonormal W_E, the Eq 5.1 W_V, ω = 1: error → 0 as L grows.
- T2 (Lemma 2): with N = Hamming-1 the constructed W_V has error exactly 0; W_V = I does not.
"""

from __future__ import annotations

from lca_interp import theory
from lca_interp.evals.claims.protocol import ClaimSpec, mean_sd, no_toys
from lca_interp.task import LCATask

T1_NOISE = 0.005  # sampling noise allowed in "non-increasing"
T1_FINAL_ERROR = 0.01  # error the largest L must reach


def _error(r, task: LCATask, value: str, seed: int) -> float:
    return 1.0 - r.accuracy(theory.theorem1_toy(task, task.vocab_size, value, seed), task, seed)


def t1_measure(r) -> dict:
    m = max(3, r.scale.m)
    errors = []
    for L in r.scale.theorem_lens:
        task = LCATask(m=m, omega=1.0, beta=r.scale.beta, context_len=L, neighbourhood="all")
        errors.append(mean_sd([_error(r, task, "constructed", seed) for seed in r.seeds]))
    return {"m": m, "context_lens": list(r.scale.theorem_lens), "error": errors}


def t1_holds(measured: dict) -> bool:
    means = [row["mean"] for row in measured["error"]]
    return all(b <= a + T1_NOISE for a, b in zip(means, means[1:])) and means[-1] < T1_FINAL_ERROR


T1 = ClaimSpec(
    id="T1",
    statement="The Theorem 1 model (W_K = W_Q = 0, orthonormal W_E, constructed W_V; ω = 1, N = all-but-self) has "
              "error falling toward 0 as L grows.",
    criterion=f"mean error non-increasing in L (to within {T1_NOISE}, the sampling noise) and below {T1_FINAL_ERROR} "
              "at the largest L",
    needs=no_toys, measure=t1_measure, holds=t1_holds,
)


def t2_measure(r) -> dict:
    L = r.scale.context_lens[0]
    task = LCATask(m=r.scale.m, omega=1.0, beta=r.scale.beta, context_len=L, neighbourhood="hamming1")
    return {"m": r.scale.m, "context_len": L, "samples": r.scale.eval_samples,
            "constructed_error": mean_sd([_error(r, task, "constructed", seed) for seed in r.seeds]),
            "identity_error": mean_sd([_error(r, task, "identity", seed) for seed in r.seeds])}


def t2_holds(measured: dict) -> bool:
    return all(e == 0.0 for e in measured["constructed_error"]["per_seed"]) and all(
        e > 0 for e in measured["identity_error"]["per_seed"])


T2 = ClaimSpec(
    id="T2",
    statement="Lemma 2: with N = Hamming-1, ω = 1 and orthonormal embeddings, the constructed W_V has error 0 and the "
              "identity W_V has error > 0.",
    criterion="on every seed's test draw: constructed error exactly 0, identity error > 0",
    needs=no_toys, measure=t2_measure, holds=t2_holds,
)
