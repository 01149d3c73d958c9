"""Paper A's synthetic claims (C1–C10, T1, T2): each a `ClaimSpec` measured over seeds."""

from lca_interp.evals.claims.attention import C8
from lca_interp.evals.claims.context import C9, C10
from lca_interp.evals.claims.embeddings import C4, C5, C6, C7
from lca_interp.evals.claims.protocol import FULL, QUICK, Claim, ClaimSpec, Scale, ToySpec
from lca_interp.evals.claims.theorems import T1, T2
from lca_interp.evals.claims.value_matrix import C1, C2, C3

CLAIMS: dict[str, ClaimSpec] = {spec.id: spec for spec in (C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, T1, T2)}

__all__ = ["CLAIMS", "FULL", "QUICK", "Claim", "ClaimSpec", "Scale", "ToySpec"]
