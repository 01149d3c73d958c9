"""Atomic result files: write a temporary sibling, then rename it over the target.

A crash or Ctrl-C never leaves a half-written JSON, checkpoint or page behind: readers see either
the old file or the new one. Every file this package writes goes through here.

Inside `transaction()`, the renames wait until the whole body has succeeded, so a result's JSON
and the figures and pages drawn from it appear together or not at all: a full disk while drawing
the figure leaves the previous JSON, figure and page as they were, all three in agreement. A
write that fails raises `WriteError`, one sentence that names the file.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import save_file


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


_PENDING: ContextVar[Optional[list[tuple[Path, Path]]]] = ContextVar("pending_renames", default=None)


class WriteError(OSError):
    """A file could not be written; the message names it in one sentence."""

    def __str__(self) -> str:
        return str(self.args[0])


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it onto `path` if the body succeeds
    (at the end of the enclosing `transaction()`, if there is one)."""
    target = Path(path)
    pending = _PENDING.get()
    deferred = False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as error:
        raise WriteError(f"could not write {target}: {error.strerror or error}.") from None
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; results are ordinary files
            if pending is not None:
                pending.append((tmp, target))
                deferred = True
            else:
                os.replace(tmp, target)
        except WriteError:
            raise
        except OSError as error:
            raise WriteError(f"could not write {target}: {error.strerror or error}.") from None
    finally:
        if not deferred:
            tmp.unlink(missing_ok=True)


def current(path: str | os.PathLike) -> Path:
    """Where `path`'s newest content is: its pending temporary file inside a transaction (a page
    that embeds a figure drawn just before it), else the path itself."""
    for tmp, target in reversed(_PENDING.get() or []):
        if target == Path(path):
            return tmp
    return Path(path)


@contextmanager
def transaction() -> Iterator[None]:
    """Files written inside appear together when the body succeeds, or none does."""
    pending: list[tuple[Path, Path]] = []
    token = _PENDING.set(pending)
    try:
        yield
        for tmp, target in pending:
            os.replace(tmp, target)
    finally:
        _PENDING.reset(token)
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: object) -> None:
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """safetensors (no pickle), atomically; tensors are made contiguous CPU copies first."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata)
