"""The offline models' cache: a GGUF from PyPI, dequantized and TL-processed once, kept as a
transformers model folder.

`offline` turns an `OfflineModel`'s GGUF into a transformers model (dequantized by
transformers), boots TransformerLens's bridge on it (`bridge.bridge_from_hf`, which applies TL's
standard processing and checks the result against the unprocessed model), and saves the processed
weights with their config and tokenizer in a folder written atomically. Later loads read that
folder in seconds, each weight once into its dtype (never a second copy), and boot the bridge on
it without processing again. Processes that start together (test workers, Ray shards) convert
once: the first holds a lock (a file in the temp folder) while the others wait for it and then
load what it wrote. A conversion killed midway leaves a staging folder, which the next conversion
removes. The checksum of the weights is recorded when the cache is written and checked on every
load: a damaged cache (a truncated or altered file) is converted again, with a warning that names
it.
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
from lca_interp.pretrained.bridge import bridge_from_hf
from lca_interp.pretrained.registry import OfflineModel, gguf_path

CACHE_FORMAT = 5  # bump when the cached layout changes (5: a processed transformers folder for the bridge)


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


def cache_folder(model: OfflineModel, processing: bool, cache_dir: Path) -> Path:
    slug = model.name.split("/")[-1].lower()
    return cache_dir / f"{slug}-{model.quantization.lower()}-hf{'-processed' if processing else ''}-v{CACHE_FORMAT}"


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
        return _load_cached(folder, device, dtype, model, processing)
    except DamagedCache as damage:
        warnings.warn(f"{damage}; converting {model.name} again.", stacklevel=2)
    with _conversion_lock(folder):
        if _written(folder) == seen:  # not already rebuilt by another process
            shutil.rmtree(folder, ignore_errors=True)
            _convert_locked(model, folder, processing)
    return _load_cached(folder, device, dtype, model, processing)


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
    """GGUF → dequantized transformers model → (TL-processed through the bridge) → `folder`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        gguf = gguf_path(model, scratch=staging)  # a GGUF in parts is joined into the staging folder
        with _one_gguf_reader():
            hf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            gguf_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        if model.parts:
            gguf.unlink()
        gc.collect()  # the reader's parsed metadata (0.8 GB for Gemma's vocabulary) goes before the bridge
        # The weights are dequantized float32 now; a config that still names the GGUF quantization
        # cannot be saved or booted.
        for holder in (hf_model.config, getattr(hf_model, "hf_quantizer", None)):
            if holder is not None and hasattr(holder, "quantization_config"):
                delattr(holder, "quantization_config")
        hf_model.hf_quantizer = None
        if not getattr(hf_model.config, "architectures", None):  # GGUF-loaded configs name none
            hf_model.config.architectures = [type(hf_model).__name__]
        # An in-memory GGUF tokenizer breaks TL's tokenizer setup; a saved and reloaded one works.
        # A GGUF's tokenizer metadata may ask for BOS where the model's own tokenizer adds none
        # (SmolLM2): the saved tokenizer follows the model's.
        gguf_tokenizer.add_bos_token = model.prepends_bos
        gguf_tokenizer.save_pretrained(staging / "tokenizer")
        hf_model.config.save_pretrained(staging)  # the bridge reads the architecture from here
        # transformers' own reading of the GGUF's config, so a reference model can be rebuilt from
        # the GGUF without parsing its metadata (a minute for Gemma's 262k-token vocabulary) again.
        hf_model.config.save_pretrained(staging / "hf_config")
        if processing:
            tokenizer = saved_tokenizer(staging)
            hf_model = bridge_from_hf(str(staging), hf_model, tokenizer, model.prepends_bos, processing=True).plain_stack
        (staging / "source.json").write_text(json.dumps({**model.to_dict(), "gguf": "joined from its parts" if model.parts else str(gguf)}, indent=1))
        write_cache(staging, hf_model)
        del hf_model
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_cache(folder: Path, hf_model) -> None:
    """The model's config and weights (a tied unembedding once) and, last, the marker with their
    checksum, into `folder` (which already holds the tokenizer, under tokenizer/)."""
    state = _untied_state(hf_model)
    hf_model.config.save_pretrained(folder)
    artifacts.save_tensors(folder / "model.safetensors", state)
    (folder / "complete").write_text(json.dumps({"format": CACHE_FORMAT, "checksum": state_checksum(state)}))


def _untied_state(hf_model) -> dict[str, torch.Tensor]:
    """The state dict with each storage once: a tied unembedding is the embedding's tensor."""
    state, seen = {}, set()
    for name, tensor in hf_model.state_dict().items():
        if tensor.untyped_storage().data_ptr() not in seen:
            seen.add(tensor.untyped_storage().data_ptr())
            state[name] = tensor.contiguous()
    return state


def _load_cached(folder: Path, device, dtype, model: OfflineModel, processing: bool):
    """The cached model as a bridge; DamagedCache when a file cannot be read or the weights do not
    match the checksum recorded when they were written."""
    from safetensors import SafetensorError

    try:
        hf_model, tokenizer = _read_cache(folder, dtype)
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise DamagedCache(f"the converted cache {folder} cannot be read ({type(error).__name__}: {error})") from error
    return bridge_from_hf(str(folder), hf_model.to(device), tokenizer, model.prepends_bos, processing, processed=True)


def _read_cache(folder: Path, dtype):
    """The transformers model built without weights, then given the cached tensors themselves, read
    one at a time in `dtype`: the weights are held once, never twice (BENCHMARKS.md)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    recorded = json.loads((folder / "complete").read_text())["checksum"]
    tokenizer = saved_tokenizer(folder)
    config = AutoConfig.from_pretrained(folder)
    with init_empty_weights(include_buffers=False):
        hf_model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    state, checksum = _read_weights(folder / "model.safetensors", dtype)
    if checksum != recorded:
        raise DamagedCache(f"the weights in {folder} differ from the checksum recorded when they were written")
    hf_model.load_state_dict(state, strict=False, assign=True)
    if config.tie_word_embeddings:
        hf_model.tie_weights()
    unset = [name for name, t in [*hf_model.named_parameters(), *hf_model.named_buffers()] if t.is_meta]
    if unset:
        raise DamagedCache(f"the cache in {folder} has no {', '.join(unset[:3])}")
    return hf_model.eval(), tokenizer


def saved_tokenizer(folder: Path):
    """The tokenizer saved under `folder`/tokenizer, loaded as TransformerLens's bridge keeps it:
    adding BOS (TL strips it again where `cfg.default_prepend_bos` is False). Handed any other
    tokenizer, the bridge loads it a second time (0.3 GB more for Gemma's 262k-token vocabulary,
    BENCHMARKS.md). A tokenizer without a BOS token is loaded as it is, as TL keeps it."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder / "tokenizer", add_bos_token=True)
    except ValueError:  # no BOS token to add
        return AutoTokenizer.from_pretrained(folder / "tokenizer")


READ_BLOCK_BYTES = 1 << 26  # what `_read_into` reads at a time through its buffer

# safetensors' dtype names (https://github.com/huggingface/safetensors, format.md)
_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16,
                       "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool}


def _read_weights(path: Path, dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], str]:
    """A safetensors file's tensors, floating ones in `dtype`, and the `state_checksum` of what the
    file holds. Read with plain reads, never a memory map (whose pages would count as resident
    memory on top of the tensors), straight into each tensor, or through a 64 MB buffer when the
    dtype differs from the file's: the weights are never held twice."""
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
            tensor = torch.empty(shape, dtype=target_dtype)
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
