"""lca-interp: associative memory and context hijacking, from the LCA toy to pretrained LLMs.

The public API is re-exported lazily, so `import lca_interp` (and `lca-interp --help`) stays fast
and imports neither torch nor TransformerLens until something is used. No export shares its name
with a submodule: importing `lca_interp.x` sets the attribute `x` on the package, which would
shadow an export named `x` (the training module is `training`, so `lca_interp.train` is the
function).
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "LCATask": "lca_interp.task",
    "LCAToy": "lca_interp.toy",
    "ToyConfig": "lca_interp.toy",
    "TrainConfig": "lca_interp.training",
    "train": "lca_interp.training",
    "train_many": "lca_interp.training",
    "load_toy": "lca_interp.runs",
    "load_model": "lca_interp.pretrained",
    "load_facts": "lca_interp.facts",
    "target_log_probs": "lca_interp.scoring",
    "reproduce": "lca_interp.evals.claims.reproduce",
    "run_hijack": "lca_interp.evals.hijack",
    "hijack_anatomy": "lca_interp.evals.anatomy",
    "toy_hijack_anatomy": "lca_interp.evals.toy_anatomy",
    "run_recall": "lca_interp.evals.recall",
    "attention_mass": "lca_interp.hooks.attention",
    "capture_patterns": "lca_interp.hooks.attention",
    "direct_logit_attribution": "lca_interp.hooks.attribution",
    "logit_lens": "lca_interp.hooks.lens",
    "ov_circuit": "lca_interp.hooks.circuits",
    "memory_score": "lca_interp.hooks.circuits",
    "restrict_attention": "lca_interp.hooks.interventions",
    "add_vector": "lca_interp.hooks.interventions",
    "ablate_heads": "lca_interp.hooks.interventions",
    "patch_activation": "lca_interp.hooks.interventions",
    "mitigation": "lca_interp.hooks.mitigations",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lca_interp' has no attribute {name!r}")
