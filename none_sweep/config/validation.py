"""Declarative validation of config dataclasses, in the manner of scikit-learn's parameter constraints.

Each dataclass field may carry ``metadata=spec(...)`` saying its allowed range or choices. One
function, :func:`build`, turns a plain dict (from YAML) into the dataclass, so every message has the
same shape: ``FILE: KEY must be ..., got VALUE``. Unknown keys are rejected with the allowed list.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from ..text import did_you_mean

T = TypeVar("T")


@dataclass(frozen=True)
class Spec:
    """Constraints on one field: an interval for numbers, a set of choices for strings."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    help: str = ""

    def describe(self) -> str:
        if self.choices is not None:
            return "one of [" + ", ".join(_yaml_repr(c) for c in self.choices) + "]"
        left = "(" if self.low_open else "["
        right = ")" if self.high_open else "]"
        low = "-inf" if self.low is None else _fmt(self.low)
        high = "inf" if self.high is None else _fmt(self.high)
        return f"in {left}{low}, {high}{right}"

    def admits(self, value: Any) -> bool:
        if self.choices is not None:
            return value in self.choices
        below = self.low is not None and (value < self.low or (self.low_open and value == self.low))
        above = self.high is not None and (value > self.high or (self.high_open and value == self.high))
        return not (below or above)


def _yaml_repr(value: Any) -> str:
    """A choice as the user writes it: ``true``/``false`` for booleans, ``'text'`` for strings."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def spec(default: Any = dataclasses.MISSING, **constraints: Any) -> Any:
    """A dataclass field with validation metadata; mutable defaults are copied per instance."""
    meta = {"spec": Spec(**constraints)}
    if isinstance(default, (list, dict)):
        return field(default_factory=functools.partial(copy.deepcopy, default), metadata=meta)
    return field(default=default, metadata=meta)


class ConfigIssue(Exception):
    """Internal: one problem at one key; turned into a ConfigError naming the file."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def fail(key: str, message: str) -> ConfigIssue:
    return ConfigIssue(key, message)


def build(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build dataclass ``cls`` from ``data`` (a mapping), checking keys, types and ranges.

    Raises :class:`ConfigIssue` naming the dotted key; the loader adds the file name.
    """
    where = prefix.rstrip(".") or "the top level"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise fail(prefix.rstrip("."), f"{where} must be a mapping of keys to values, got {_show(data)}")
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"build needs a dataclass, got {cls!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            hint = did_you_mean(str(key), fields)
            raise fail(
                f"{prefix}{key}", f"unknown key {prefix}{key!s}{hint}; allowed keys in {where}: {sorted(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        key = f"{prefix}{name}"
        value = _coerce(hints[name], data[name], key)
        s = f.metadata.get("spec")
        if s is not None and value is not None and not isinstance(value, (dict, list)) and not s.admits(value):
            raise fail(key, f"{key} must be {s.describe()}, got {_show(data[name])}")
        kwargs[name] = value
    return cls(**kwargs)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type hint ``tp``; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigIssue as exc:
                errors.append(exc)
        names = " or ".join(_type_name(a) for a in args)
        raise fail(key, f"{key} must be {names}, got {_show(value)}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return build(tp, value, prefix=f"{key}.")
    if origin in (list, tuple):
        (item,) = typing.get_args(tp)[:1] or (Any,)
        if not isinstance(value, list):
            raise fail(key, f"{key} must be a list of {_type_name(item)}, got {_show(value)}")
        return [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise fail(key, f"{key} must be a mapping, got {_show(value)}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise fail(key, f"{key} must be true or false, got {_show(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise fail(key, f"{key} must be an integer, got {_show(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(key, f"{key} must be a number, got {_show(value)}")
        if not math.isfinite(value):
            raise fail(key, f"{key} must be a finite number, got {_show(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise fail(key, f"{key} must be a string, got {_show(value)}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def to_dict(obj: Any) -> Any:
    """Plain-data form of a config dataclass (for YAML, MLflow params and hashing)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``; the dotted keys are what ``--set`` and spaces address."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``dotted == "a.b"``, creating mappings on the way."""
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise fail(dotted, f"cannot set {dotted}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value
