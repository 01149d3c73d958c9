"""Shared behaviour of the package's frozen config dataclasses: JSON round trip and validation.

`from_dict` refuses unknown keys (a typo in a config file is an error, not a silently ignored
setting); `to_dict` is plain `asdict`, so configs go into config.json and checkpoint metadata as is.
Fields a config derives itself (`init=False`) are not keys of its dict form.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import TypeVar

C = TypeVar("C", bound="Config")


class Config:
    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict) -> C:
        known = {f.name for f in fields(cls) if f.init}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; expected {sorted(known)}.")
        return cls(**data)

    def require_positive_ints(self, *names: str) -> None:
        for name in names:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
