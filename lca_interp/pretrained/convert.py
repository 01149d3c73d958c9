"""From Hugging Face weights to a `HookedTransformer`, and the offline models' converted cache.

`hooked_from_hf` converts a transformers model with its tokenizer: through TL's own name when TL
knows the model, else through TL's loader for a local config (how any Llama-, GPT-2- or
Gemma-architecture folder loads). The converted model must give transformers' log-probabilities
on a probe sentence, or the conversion is refused: TL's converters read what they know of a
checkpoint and ignore the rest (its Llama converter drops attention and MLP biases). `offline` turns an `OfflineModel`'s GGUF into a TL model once
(dequantized by transformers), caches its state dict, config and tokenizer as safetensors and
JSON in a folder written atomically, and loads that folder in seconds afterwards. Processes that
start together (test workers, Ray shards) convert once: the first holds a lock (a file in the
temp folder) while the others wait for it and then load what it wrote. A conversion killed
midway leaves a staging folder, which the next conversion removes. The checksum of the weights
is recorded when the cache is written and checked on every load: a damaged cache (a truncated
or altered file) is converted again, with a warning that names it.

Weight processing
-----------------
By default TL's standard processing is applied (LayerNorm/RMSNorm weights folded into the next
matrices, writing weights and unembedding centred, value biases folded): logits are unchanged up
to float round-off and softmax-invariant shifts, and every residual direction is comparable
across layers, which direct logit attribution relies on. It is done one block at a time
(`processing.py`), which gives TL's numbers at a fraction of TL's memory. `processing=False` keeps
the weights as the checkpoint has them.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import json
import math
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from lca_interp import artifacts
from lca_interp.pretrained.layout import lay_out_for_forward
from lca_interp.pretrained.processing import hooked_with_processed_weights
from lca_interp.pretrained.registry import OfflineModel, gguf_path

CACHE_FORMAT = 4  # bump when the cached layout changes


class DamagedCache(Exception):
    """A converted cache that cannot be read or does not match the checksum recorded with it."""


def state_checksum(state: dict[str, torch.Tensor]) -> str:
    """A content checksum of a state dict: each tensor's bytes summed as uint32 words modulo 2^32
    (exact in any order, and one flipped bit changes it), hashed with its name, dtype and shape.
    A third of a second for Gemma-3-270m, where sha256 over the file takes about ten."""
    digest = hashlib.sha256()
    for name in sorted(state):
        _add_to_checksum(digest, name, state[name])
    return digest.hexdigest()


def _add_to_checksum(digest, name: str, tensor: torch.Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous()
    raw = tensor.view(-1).view(torch.uint8).numpy()
    total = raw.view(np.uint32).sum(dtype=np.uint32) if raw.size % 4 == 0 else raw.sum(dtype=np.uint64)
    digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}:{int(total)};".encode())


def processing_kwargs(processing: bool) -> dict:
    return dict(fold_ln=processing, center_writing_weights=processing, center_unembed=processing,
                fold_value_biases=processing)


def tl_official_name(name: str):
    """TL's official name for `name`, or None when TL does not know the model."""
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        return get_official_model_name(name)
    except ValueError:
        return None


def hooked_from_hf(name: str, hf_model, tokenizer, device, dtype, processing: bool):
    """A transformers model (weights already loaded) as a `HookedTransformer`: TL's config and
    weight converters (by TL's name for the model when TL knows it, else from the architecture its
    config names), TL's processing done one block at a time (`processing.py`), which may change
    `hf_model`'s weights in place."""
    from transformer_lens.loading_from_pretrained import (
        get_pretrained_model_config,
        get_pretrained_state_dict,
    )

    probe = tokenizer(CONVERSION_PROBE, return_tensors="pt")["input_ids"]
    with torch.no_grad():  # read before processing changes the weights
        expected = torch.log_softmax(hf_model.eval()(probe).logits.float(), -1)
    official = tl_official_name(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if official is not None:
            cfg = get_pretrained_model_config(official, hf_cfg=hf_model.config.to_dict(), device=device, dtype=dtype,
                                              fold_ln=processing)
            state_dict = get_pretrained_state_dict(official, cfg, hf_model, dtype=dtype)
        else:
            with tempfile.TemporaryDirectory() as folder:  # TL reads an unknown model's config from a folder
                if not getattr(hf_model.config, "architectures", None):  # GGUF-loaded configs name none
                    hf_model.config.architectures = [type(hf_model).__name__]
                hf_model.config.save_pretrained(folder)
                cfg = get_pretrained_model_config(folder, device=device, dtype=dtype, fold_ln=processing)
                state_dict = get_pretrained_state_dict(folder, cfg, hf_model=hf_model, dtype=dtype)
        model = hooked_with_processed_weights(cfg, tokenizer, state_dict, processing)
    with torch.no_grad():
        got = torch.log_softmax(model(probe).float(), -1)
    _check_conversion(name, cfg, got, expected)
    return model.to(device)


CONVERSION_PROBE = "The Eiffel Tower is located in the city of"


def _check_conversion(name: str, cfg, got: torch.Tensor, expected: torch.Tensor) -> None:
    """Raise unless TL's model gives transformers' log-probabilities on the probe sentence (over
    the tokens transformers gives more than e^-12): a converter that misses part of a checkpoint
    (TL 3.9's Llama converter drops attention and MLP biases) would give wrong numbers silently."""
    tolerance = 1e-3 if cfg.dtype in (torch.float32, torch.float64) else 0.25
    likely = expected > -12
    difference = float((got - expected).abs()[likely].max())
    if not difference <= tolerance:
        raise ValueError(f"TransformerLens's conversion of {name} ({cfg.original_architecture}) disagrees with "
                         f"transformers by {difference:.3g} in log-probability on a probe sentence, so its converter "
                         "misses part of this checkpoint; load a checkpoint TransformerLens converts exactly.")


def cache_folder(model: OfflineModel, processing: bool, cache_dir: Path) -> Path:
    slug = model.name.split("/")[-1].lower()
    return cache_dir / f"{slug}-{model.quantization.lower()}-tl{'-processed' if processing else ''}-v{CACHE_FORMAT}"


@contextmanager
def _conversion_lock(folder: Path):
    """One process at a time converts into `folder`. The lock lives in the temp folder so the cache
    only ever holds complete conversions; it is released when the file closes, even on a crash."""
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"lca_interp-convert-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _written(folder: Path) -> Optional[int]:
    """When the cache in `folder` was completed (its marker's mtime), or None if it is not."""
    try:
        return (folder / "complete").stat().st_mtime_ns
    except FileNotFoundError:
        return None


def offline(model: OfflineModel, device, dtype, processing: bool, cache_dir: Path):
    """The offline model from its converted cache, converting the GGUF first if needed, and again
    if the cache turns out damaged."""
    folder = cache_folder(model, processing, cache_dir)
    if _written(folder) is None:
        with _conversion_lock(folder):
            if _written(folder) is None:  # another process may have converted meanwhile
                _convert_locked(model, folder, processing)
    seen = _written(folder)
    try:
        return _load_cached(folder, device, dtype)
    except DamagedCache as damage:
        warnings.warn(f"{damage}; converting {model.name} again.", stacklevel=2)
    with _conversion_lock(folder):
        if _written(folder) == seen:  # not already rebuilt by another process
            shutil.rmtree(folder, ignore_errors=True)
            _convert_locked(model, folder, processing)
    return _load_cached(folder, device, dtype)


def _convert_locked(model: OfflineModel, folder: Path, processing: bool) -> None:
    """Convert while holding the lock: any staging folder beside `folder` is a killed run's."""
    for stale in folder.parent.glob(f".{folder.name}.*"):
        shutil.rmtree(stale, ignore_errors=True)
    _convert(model, folder, processing)


@contextmanager
def _one_gguf_reader():
    """transformers reads a GGUF's metadata anew for the config, the weights and the tokenizer; for
    Gemma's 262k-token vocabulary each read takes about a minute (BENCHMARKS.md). Inside this
    block the reads of one file share one `gguf.GGUFReader`, which is read-only (a memory map)."""
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared(path, *args, **kwargs):
        key = (str(Path(path).resolve()), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _convert(model: OfflineModel, folder: Path, processing: bool) -> None:
    """GGUF → dequantized transformers model → TL state dict, written atomically into `folder`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_path(model)
    with _one_gguf_reader():
        hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        gguf_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gc.collect()  # the reader's parsed metadata (0.8 GB for Gemma's vocabulary) goes before TL's conversion
    # TL refuses a model that still carries its GGUF quantization config; the weights are already
    # dequantized float32 here.
    for holder in (hf_model.config, getattr(hf_model, "hf_quantizer", None)):
        if holder is not None and hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    hf_model.hf_quantizer = None
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        # An in-memory GGUF tokenizer breaks TL's set_tokenizer; a saved and reloaded one works. A
        # GGUF's tokenizer metadata may ask for BOS where the model's own tokenizer adds none
        # (SmolLM2): the saved tokenizer follows the model's.
        gguf_tokenizer.add_bos_token = model.prepends_bos
        gguf_tokenizer.save_pretrained(staging / "tokenizer")
        tokenizer = AutoTokenizer.from_pretrained(staging / "tokenizer")
        hooked = hooked_from_hf(model.name, hf_model, tokenizer, "cpu", torch.float32, processing)
        # transformers' own reading of the GGUF's config, so a reference model can be rebuilt from
        # the GGUF without parsing its metadata (a minute for Gemma's 262k-token vocabulary) again.
        hf_model.config.save_pretrained(staging / "hf_config")
        del hf_model  # its weights are the ones `hooked` holds, or were processed in place
        (staging / "source.json").write_text(json.dumps({**model.to_dict(), "gguf": str(gguf)}, indent=1))
        write_cache(staging, hooked)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_cache(folder: Path, hooked) -> None:
    """The model's weights, config and, last, the marker with their checksum, into `folder` (which
    already holds the tokenizer, under tokenizer/)."""
    state = hooked.state_dict()
    artifacts.save_tensors(folder / "model.safetensors", state)
    (folder / "config.json").write_text(json.dumps(_config_to_json(hooked.cfg), indent=1))
    (folder / "complete").write_text(json.dumps({"format": CACHE_FORMAT, "checksum": state_checksum(state)}))


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
    """The cached model; DamagedCache when a file cannot be read or the weights do not match the
    checksum recorded when they were written."""
    from safetensors import SafetensorError

    try:
        return _read_cache(folder, device, dtype)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise DamagedCache(f"the converted cache {folder} cannot be read ({type(error).__name__}: {error})") from error


def _read_cache(folder: Path, device, dtype):
    """The model built on the meta device (no memory), then given the cached tensors themselves,
    read one at a time in `dtype`: the weights are held once, never twice (BENCHMARKS.md)."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformers import AutoTokenizer

    recorded = json.loads((folder / "complete").read_text())["checksum"]
    # Loaded first (its parse peaks before the weights are read) and with add_bos_token=True, which
    # TL would otherwise rebuild it with, holding two; `load_model` sets the BOS policy itself.
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer", add_bos_token=True)
    data = json.loads((folder / "config.json").read_text())
    data["dtype"], data["device"] = dtype, "cpu"
    known = set(HookedTransformerConfig.__dataclass_fields__)
    cfg = HookedTransformerConfig(**{k: v for k, v in data.items() if k in known and k not in ("n_params",)})
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", DeprecationWarning)
        model = HookedTransformer(cfg, tokenizer, move_to_device=False)
    # Read each weight straight into the layout `load_model` gives it, so it is never copied.
    strides = {name: t.stride() for name, t in lay_out_for_forward(model).state_dict().items()}
    state, checksum = _read_weights(folder / "model.safetensors", dtype, strides)
    if checksum != recorded:
        raise DamagedCache(f"the weights in {folder} differ from the checksum recorded when they were written")
    model.load_state_dict(state, strict=True, assign=True)
    unset = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if unset:
        raise DamagedCache(f"the cache in {folder} has no {', '.join(unset[:3])}")
    return model.to(device)


READ_BLOCK_BYTES = 1 << 26  # what `_read_into` reads at a time through its buffer

# safetensors' dtype names (https://github.com/huggingface/safetensors, format.md)
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool}


def _read_weights(path: Path, dtype: torch.dtype, strides: dict[str, tuple[int, ...]]) -> tuple[dict[str, torch.Tensor], str]:
    """A safetensors file's tensors, floating ones in `dtype` and each laid out with its `strides`
    (default: contiguous), and the `state_checksum` of what the file holds. Read with plain
    reads, never a memory map (whose pages would count as resident memory on top of the
    tensors), straight into each tensor, or through a 64 MB buffer when the dtype or layout
    differs from the file's: the weights are never held twice."""
    digest, state = hashlib.sha256(), {}
    with open(path, "rb") as file:
        header = json.loads(file.read(int.from_bytes(file.read(8), "little")))
        base = file.tell()
        header.pop("__metadata__", None)
        for name in sorted(header):
            entry = header[name]
            stored = _SAFETENSORS_DTYPES[entry["dtype"]]
            shape = tuple(entry["shape"])
            target_dtype = dtype if stored.is_floating_point else stored
            tensor = torch.empty_strided(shape, strides[name], dtype=target_dtype) if name in strides else \
                torch.empty(shape, dtype=target_dtype)
            start, end = entry["data_offsets"]
            if end - start != tensor.numel() * stored.itemsize:
                raise DamagedCache(f"{path} gives {name} {end - start} bytes for shape {list(shape)}")
            file.seek(base + start)
            total = _read_into(file, tensor, stored, path, name)
            digest.update(f"{name}:{stored}:{shape}:{total};".encode())
            state[name] = tensor
    return state, digest.hexdigest()


def _read_into(file, tensor: torch.Tensor, stored: torch.dtype, path: Path, name: str) -> int:
    """Fill `tensor` from the file's next bytes (row-major, in the `stored` dtype), a block of rows
    at a time; their `_add_to_checksum` total: uint32 words summed modulo 2^32, or bytes summed
    when the size is not a multiple of 4 (sums that add up block by block)."""
    rows = tensor.unsqueeze(0) if tensor.ndim == 0 else tensor
    whole_words = (tensor.numel() * stored.itemsize) % 4 == 0
    row_bytes = max(1, rows[0].numel() * stored.itemsize) if len(rows) else 1
    align = 4 // math.gcd(row_bytes, 4)  # blocks of whole uint32 words
    step = max(align, READ_BLOCK_BYTES // row_bytes // align * align)
    direct = tensor.dtype == stored and tensor.is_contiguous()
    buffer = None if direct else torch.empty((min(step, len(rows)), *rows.shape[1:]), dtype=stored)
    total = 0
    for begin in range(0, len(rows), step):
        part = rows[begin:begin + step]
        landing = part if direct else buffer[: len(part)]
        raw = landing.reshape(-1).view(torch.uint8).numpy()
        if file.readinto(raw) != raw.size:
            raise DamagedCache(f"{path} ends inside {name}")
        total += int(raw.view(np.uint32).sum(dtype=np.uint32) if whole_words else raw.sum(dtype=np.uint64))
        if not direct:
            part.copy_(landing)
    return total % 2**32 if whole_words else total
