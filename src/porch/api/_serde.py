"""Dataclass <-> JSON-shaped dict conversion with Kubernetes conventions.

Field names become camelCase unless a field says otherwise (``metadata={"json": "name"}``).
Empty values (None, "", 0, False, empty list/dict) are omitted, like Go's ``omitempty``, unless a
field asks to be kept (``metadata={"keep": True}``). Unknown keys in input are ignored, as the
Kubernetes decoder does for our aggregated kinds.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


_FIELDS: dict[type, tuple[tuple[str, str, Any, bool], ...]] = {}


def _fields(cls: type) -> tuple[tuple[str, str, Any, bool], ...]:
    known = _FIELDS.get(cls)
    if known is not None:
        return known
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        json_name = f.metadata.get("json", camel(f.name))
        out.append((f.name, json_name, hints[f.name], bool(f.metadata.get("keep", False))))
    _FIELDS[cls] = tuple(out)
    return _FIELDS[cls]


def _empty(value: Any) -> bool:
    return (
        value is None
        or value == ""
        or value is False
        or (value == 0 and not isinstance(value, bool))
        or (isinstance(value, list | dict | tuple) and not value)
    )


_DATACLASS_FIELDS: dict[type, tuple[tuple[str, str, Any, bool], ...] | None] = {}


def to_dict(obj: Any) -> Any:
    """Convert a dataclass tree to plain JSON-shaped data."""
    kind = type(obj)
    if kind is str or kind is int or kind is bool or obj is None:
        return obj
    fields = _DATACLASS_FIELDS.get(kind, ())
    if fields == ():
        fields = _fields(kind) if dataclasses.is_dataclass(obj) else None
        _DATACLASS_FIELDS[kind] = fields
    if fields is not None:
        out: dict[str, Any] = {}
        for name, json_name, _hint, keep in fields:
            value = getattr(obj, name)
            if not keep and _empty(value):
                continue
            out[json_name] = to_dict(value)
        return out
    if kind is list or kind is tuple:
        return [to_dict(v) for v in obj]
    if kind is dict:
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Any) -> T:
    """Build ``cls`` from JSON-shaped data; raises ``TypeError``/``ValueError`` on bad shapes."""
    return typing.cast(T, _convert(cls, data, cls.__name__))


def _convert(hint: Any, data: Any, where: str) -> Any:
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        args = [a for a in get_args(hint) if a is not type(None)]
        if data is None:
            return None
        return _convert(args[0], data, where)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if data is None:
            return hint()
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected an object, got {type(data).__name__}")
        kwargs = {}
        for name, json_name, sub, _keep in _fields(hint):
            if json_name in data:
                kwargs[name] = _convert(sub, data[json_name], f"{where}.{json_name}")
        return hint(**kwargs)
    if origin is list or origin is tuple:
        if data is None:
            return [] if origin is list else ()
        if not isinstance(data, list):
            raise TypeError(f"{where}: expected a list, got {type(data).__name__}")
        (item,) = get_args(hint)[:1]
        items = [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise TypeError(f"{where}: expected an object, got {type(data).__name__}")
        _k, v_hint = get_args(hint)
        return {str(k): _convert(v_hint, v, f"{where}[{k}]") for k, v in data.items()}
    if hint is Any:
        return data
    if hint is str:
        if data is None:
            return ""
        if not isinstance(data, str):
            raise TypeError(f"{where}: expected a string, got {type(data).__name__}")
        return data
    if hint is bool:
        if data is None:
            return False
        if not isinstance(data, bool):
            raise TypeError(f"{where}: expected a boolean, got {type(data).__name__}")
        return data
    if hint is int:
        if data is None:
            return 0
        if isinstance(data, bool) or not isinstance(data, int):
            raise TypeError(f"{where}: expected an integer, got {type(data).__name__}")
        return data
    if isinstance(hint, type) and issubclass(hint, str):  # StrEnum
        try:
            return hint(data)
        except ValueError as exc:
            raise ValueError(f"{where}: unsupported value {data!r}") from exc
    return data
