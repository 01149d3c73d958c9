"""Where and in what precision a model runs: the `--device` and `--dtype` of every command.

The default device is the best one present: CUDA, then Apple's MPS, then the CPU. float32 is the
default dtype; bfloat16 halves the weights' memory and, on GPUs and on CPUs with AVX-512 BF16,
runs matmuls about twice as fast (BENCHMARKS.md records how often its ES decisions agree with
float32's). Both are checked here once, so a bad value is one sentence before anything loads.
"""

from __future__ import annotations

from typing import Optional

import torch

from lca_interp.options import DTYPES


def best_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_device(name: Optional[str | torch.device] = None) -> torch.device:
    """`name` as a torch device (None: `best_device()`); an unknown or absent device is refused."""
    if name is None:
        return torch.device(best_device())
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: pass cpu, cuda, cuda:N or mps.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but torch sees no CUDA GPU here; pass --device cpu.")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r} does not exist: torch sees {torch.cuda.device_count()} CUDA GPU(s).")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {name!r} was asked for but MPS is not available here; pass --device cpu.")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device {name!r} is not supported: pass cpu, cuda, cuda:N or mps.")
    return device


def resolve_dtype(name: str | torch.dtype) -> torch.dtype:
    """float32, bfloat16 or float16, by name or as a torch dtype."""
    dtype = getattr(torch, name.removeprefix("torch."), None) if isinstance(name, str) else name
    if not isinstance(dtype, torch.dtype) or str(dtype).removeprefix("torch.") not in DTYPES:
        raise ValueError(f"unsupported dtype {name!r}: pass one of {', '.join(DTYPES)}.")
    return dtype
