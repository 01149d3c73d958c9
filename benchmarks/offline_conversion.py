"""Converting an offline model's GGUF into the TL cache, with and without one shared GGUF reader.

What is measured
----------------
`lca_interp.pretrained.convert._convert` builds a transformers model from the GGUF, the GGUF's
tokenizer, and the TL state dict. transformers opens the GGUF three times (config, weights,
tokenizer), and `gguf.GGUFReader` parses every metadata field on opening: for Gemma-3-270m that
is 262,144 vocabulary strings and scores, a minute of Python per opening. `_convert` shares one
reader across the three (`_one_gguf_reader`); `--separate` times the same conversion with a
reader per opening, as transformers does on its own. Both write into a scratch cache and the
script checks the two give identical tensors.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/offline_conversion.py [--model google/gemma-3-270m]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch
from safetensors.torch import load_file

from lca_interp.pretrained import OFFLINE_MODELS, convert


def timed_conversion(name: str, cache: Path, shared_reader: bool) -> tuple[float, dict]:
    model = OFFLINE_MODELS[name]
    folder = convert.cache_folder(model, True, cache)
    began = time.perf_counter()
    patch = contextlib.nullcontext() if shared_reader else mock.patch.object(convert, "_one_gguf_reader", contextlib.nullcontext)
    with patch:
        convert._convert(model, folder, True)
    return time.perf_counter() - began, load_file(folder / "model.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="google/gemma-3-270m", choices=sorted(OFFLINE_MODELS))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        shared, ours = timed_conversion(args.model, Path(scratch) / "shared", shared_reader=True)
        separate, theirs = timed_conversion(args.model, Path(scratch) / "separate", shared_reader=False)
    same = ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    print(f"{args.model}: one shared GGUF reader {shared:.1f} s, a reader per opening {separate:.1f} s "
          f"({separate / shared:.2f}×); identical tensors: {same}; torch threads {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
