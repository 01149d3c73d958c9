"""lca-interp: associative memory and context hijacking, from the LCA toy to pretrained LLMs.

The public API is re-exported lazily, so `import lca_interp` (and `lca-interp --help`) stays fast
and imports neither torch nor TransformerLens until something is used.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "LCATask": "lca_interp.task",
    "LCAToy": "lca_interp.toy",
    "ToyConfig": "lca_interp.toy",
    "TrainConfig": "lca_interp.train",
    "train": "lca_interp.train",
    "load_toy": "lca_interp.train",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lca_interp' has no attribute {name!r}")
