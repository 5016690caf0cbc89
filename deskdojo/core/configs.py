"""Closed configs: every config dataclass is built from a mapping that may hold only its
own field names, so a typo is an error that names the key and the known ones, never a
silently ignored setting."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from deskdojo.core.errors import ConfigError

C = TypeVar("C")


def closed_from_dict(cls: type[C], data: Mapping[str, Any], what: str) -> C:
    """``cls(**data)`` after refusing keys ``cls`` does not have; ``what`` names the config."""
    refuse_unknown_keys(cls, data, what)
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"{what}: {exc}") from None


def refuse_unknown_keys(cls: type, data: Mapping[str, Any], what: str) -> None:
    """ConfigError naming the first key of ``data`` that is not a field of ``cls``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a mapping of settings, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{what} has no key {key!r} (known: {', '.join(sorted(known))})")
