"""Closed configs: every config dataclass is built from a mapping that may hold only its
own field names, so a typo is an error that names the key and the known ones, never a
silently ignored setting; each value is checked against its field's type."""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

from deskdojo.core.errors import ConfigError
from deskdojo.core.records import decode

C = TypeVar("C")


def closed_from_dict(cls: type[C], data: Mapping[str, Any], what: str) -> C:
    """``cls`` from ``data`` through the one decoder; ``what`` names the config in errors."""
    return decode(cls, data, where=what, error=ConfigError)
