"""Helpers that turn JSON objects into frozen records and back, naming bad fields.

Standard library only. Every stored record (task, step, trajectory, verdict) goes
through ``from_json`` and every config through ``decode`` (one closed, typed decoder),
so a malformed file is rejected with the record, the field and what was wrong, never
half-loaded.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import types
import typing
from typing import Any, Mapping, TypeVar

from deskdojo.core.errors import ActionError, ConfigError, DeskdojoError, RecordError

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
    """Build the record ``cls`` from JSON, closed to unknown keys; errors name ``where.field``."""
    return decode(cls, data, where=cls.__name__ if where is None else where, error=RecordError)


def decode(cls: type[T], data: Any, *, where: str, error: type[DeskdojoError] = RecordError) -> T:
    """The one closed, typed decoder: records, configs and the run config all come through it.

    ``data`` may hold only ``cls``'s fields; each value is checked against its type hint
    (numbers, strings, booleans, enums, tuples, nested dataclasses, actions, optionals)
    and every error is an ``error`` naming ``where.field``. An empty ``where`` names the
    fields bare (the top of a config file). An instance of ``cls`` passes through.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        raise error(f"{where or cls.__name__}: expected a mapping of fields, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("json", True)}
    for key in data:
        if key not in fields:
            raise error(f"{where or cls.__name__} has no key {key!r} (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise error(f"{_join(where, name)} is required")
            continue
        kwargs[name] = _convert(hints[name], data[name], _join(where, name), error)
    try:
        return cls(**kwargs)
    except (RecordError, ActionError, ConfigError) as exc:
        if isinstance(exc, error) and (not where or where == cls.__name__ or str(exc).startswith(where)):
            raise
        raise error(f"{where}: {exc}") from None  # a nested record: say where it sits
    except (TypeError, ValueError) as exc:
        raise error(f"{where or cls.__name__}: {exc}") from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _convert(hint: Any, value: Any, where: str, error: type[DeskdojoError]) -> Any:
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
            raise error(f"{where}: {exc}") from None
    if origin in (typing.Union, types.UnionType):
        if value is None:
            if type(None) in args:
                return None
            raise error(f"{where} must not be null")
        last_error: DeskdojoError | None = None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(option, value, where, error)
            except error as exc:
                last_error = exc
        raise last_error or error(f"{where}: unexpected value {value!r}")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise error(f"{where}: expected a list, got {type(value).__name__}")
        item = args[0] if args else Any
        return tuple(_convert(item, v, f"{where}[{i}]", error) for i, v in enumerate(value))
    if origin in (dict, Mapping, typing.Mapping, collections.abc.Mapping) or hint is dict:
        if not isinstance(value, Mapping):
            raise error(f"{where}: expected an object, got {type(value).__name__}")
        return dict(value)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(str(m.value) for m in hint)
            raise error(f"{where}: {value!r} is not one of: {allowed}") from None
    if dataclasses.is_dataclass(hint):
        return decode(hint, value, where=where, error=error)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise error(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise error(f"{where}: expected a string, got {value!r}")
        return value
    return value
