"""Measurements that turn probes and trained models into results (dataclasses, no drawing).

- `claims`: paper A's synthetic claims, one module per family, and `reproduce`;
- `hijack`: ES(k) of context hijacking, with and without paper B's mitigations;
- `anatomy`: the heads that read a hijack and write the false target, on an LLM;
- `toy_anatomy`: the same questions answered exactly on the LCA toy;
- `recall`: paper B's recall mechanisms.

Families do not import each other; what two of them share lives a layer down (hooks, scoring,
prompts, task). `lca_interp.report` draws every result from its JSON.
"""
