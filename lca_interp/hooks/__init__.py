"""Model-agnostic probes: the same hook-based code on the LCA toy, GPT-2-architecture models and Gemma.

Every function here takes any `HookedTransformer` and works through TransformerLens's standard
hook names (`blocks.{l}.attn.hook_pattern`, `hook_z`, `hook_resid_post`, ...), `ActivationCache`
and `FactoredMatrix`. The LCA toy is itself a `HookedTransformer` with those hook names, which is
what lets paper A's toy analysis and its LLM analysis share one set of tools.

- `attention`: capture patterns, attention mass onto chosen key positions, class-by-class maps.
- `circuits`: per-head OV and QK circuits, their SVD read in token space, associative-memory scores.
- `attribution`: direct logit attribution of heads, MLPs and embeddings.
- `lens`: the logit lens.
- `interventions`: context managers that restrict attention, steer, ablate and patch.
- `mitigations`: paper B's two fixes of the final layer, built from those interventions.
- `select`: shared validation of layers, heads (`Head`), hook names and inputs.

Hooks import nothing from the LCA task, its theory, the evals or the report: a probe knows models.
"""
