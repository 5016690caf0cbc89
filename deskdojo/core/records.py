"""Helpers that turn JSON objects into frozen records and back, naming bad fields.

Standard library only. Every stored record (task, step, trajectory, verdict) goes
through ``from_json`` so a malformed file is rejected with the record, the field and
what was wrong, never half-loaded.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any, Mapping, TypeVar

from deskdojo.core.errors import ActionError, RecordError

T = TypeVar("T")


def to_json(record: Any) -> Any:
    """A frozen record (dataclass tree) as plain JSON values."""
    from deskdojo.core.actions import action_to_dict, is_action

    if is_action(record):
        return action_to_dict(record)
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: to_json(getattr(record, f.name)) for f in dataclasses.fields(record)
                if f.metadata.get("json", True)}
    if isinstance(record, enum.Enum):
        return record.value
    if isinstance(record, (list, tuple)):
        return [to_json(v) for v in record]
    if isinstance(record, Mapping):
        return {str(k): to_json(v) for k, v in record.items()}
    return record


def from_json(cls: type[T], data: Any, *, where: str | None = None) -> T:
    """Build ``cls`` from JSON, closed to unknown keys; errors name ``where.field``."""
    where = where or cls.__name__
    if not isinstance(data, Mapping):
        raise RecordError(f"{where}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("json", True)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecordError(f"{where}: unknown field {unknown[0]!r} (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{where}.{name} is required")
            continue
        kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except (RecordError, ActionError) as exc:
        if where == cls.__name__ or str(exc).startswith(where):
            raise
        raise RecordError(f"{where}: {exc}") from None  # a nested record: say where it sits
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{where}: {exc}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    from deskdojo.core.actions import Action, action_from_dict

    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    action_types = set(typing.get_args(Action))
    if origin in (typing.Union, types.UnionType) and set(args) - {type(None)} == action_types:
        if value is None and type(None) in args:
            return None
        try:
            return action_from_dict(value)
        except ActionError as exc:
            raise RecordError(f"{where}: {exc}") from None
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        last_error: RecordError | None = None
        for option in non_none:
            try:
                return _convert(option, value, where)
            except RecordError as exc:
                last_error = exc
        raise last_error or RecordError(f"{where}: unexpected value {value!r}")
    if origin is tuple:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping) or hint is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        return dict(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in hint)
            raise RecordError(f"{where}: {value!r} is not one of: {allowed}") from None
    if dataclasses.is_dataclass(hint):
        return from_json(hint, value, where=where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise RecordError(f"{where}: expected {hint.__name__}, got {value!r}")
        return value
    return value
