"""Model-agnostic probes: the same hook-based code on the LCA toy, GPT-2-architecture models and Gemma.

Every function here takes any model with TransformerLens's standard hook names
(`blocks.{l}.attn.hook_pattern`, `hook_z`, `hook_resid_post`, ...), `ActivationCache` and
`FactoredMatrix`: a `TransformerBridge` in compatibility mode (TL 3.9 and 4.x), a
`HookedTransformer` (TL 3.x), and the LCA toy, a `HookedRootModule` with those hook names, which is
what lets paper A's toy analysis and its LLM analysis share one set of tools. Where those models
differ in a way that would change a number silently, `model` answers the question once.

- `attention`: capture patterns, attention mass onto chosen key positions, class-by-class maps.
- `circuits`: per-head OV and QK circuits, their SVD read in token space, associative-memory scores.
- `attribution`: direct logit attribution of heads, MLPs and embeddings.
- `lens`: the logit lens.
- `interventions`: context managers that restrict attention, steer, ablate and patch.
- `mitigations`: paper B's two fixes of the final layer, built from those interventions.
- `model`: what a probe may assume of a model, whichever kind and TL version.
- `select`: shared validation of layers, heads (`Head`), hook names and inputs.

Hooks import nothing from the LCA task, its theory, the evals or the report: a probe knows models.
"""
