"""Composing space files: one declared design space, narrowed or extended per experiment instead of copied.

A space file may name

- ``include: [FILE, ...]``: other space files (paths relative to the including file), applied first, in order;
  each may include others (a cycle is an error);
- ``experiment: FILE``: an experiment config (the ``none-sweep train`` schema), the bottom layer of ``base``:
  the included files' ``base`` (a design family's fixed settings) and then the file's own are merged over it.

Merging, the later layer winning: mappings (``base``, ``search``, ``scheduler``, ``resources``) merge key by key,
recursively; ``space`` merges entry by entry, where an entry replaces the included one for that key (narrow or
widen it) and ``KEY: null`` removes the key from the search (it keeps its base value);
``search.points_to_evaluate`` merges by point name (a point named as an included one replaces it, others are
appended after the included ones; an empty list clears them); other lists (``objectives``, ``constraints``, ``variants``) and scalars are
replaced whole. An included point loses the params of keys the composed space no longer searches, so narrowing
never breaks an inherited starting point.

The result is one self-contained mapping; it is what a sweep stores (``space.yaml``), so a resumed sweep or a
report elsewhere never needs the included files again.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ...config import read_yaml
from ...errors import ConfigError

INCLUDE, EXPERIMENT, POINTS = "include", "experiment", "points_to_evaluate"
_WHOLE = ("objectives", "constraints", "variants")


def compose_file(path: Path) -> tuple[dict[str, Any], list[Path]]:
    """The composed mapping of the space file at ``path`` and every file it was built from (``path`` last)."""
    return _compose(path.resolve(), ())


def composed_text(data: Mapping[str, Any], sources: list[Path], original: str) -> str:
    """What the sweep stores: the file as written when it includes nothing, else the composed mapping."""
    if len(sources) == 1:
        return original
    names = ", ".join(_shown(p) for p in sources)
    header = f"# composed by none-sweep from: {names}\n"
    return header + yaml.safe_dump(dict(data), sort_keys=False)


def _compose(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], list[Path]]:
    if path in chain:
        loop = " -> ".join(str(p) for p in (*chain, path))
        raise ConfigError(f"{chain[-1]}: include: files include each other in a cycle ({loop})")
    data = read_yaml(path)
    includes = _names(data.pop(INCLUDE, []), path, INCLUDE)
    experiment = data.pop(EXPERIMENT, None)
    out: dict[str, Any] = {}
    sources: list[Path] = []
    if experiment is not None:  # the bottom layer: included files' base, then this file's, go over it
        (name,) = _names(experiment, path, EXPERIMENT, single=True)
        target = _resolve(path, name, EXPERIMENT)
        out["base"] = read_yaml(target)
        sources.append(target)
    for name in includes:
        included, used = _compose(_resolve(path, name, INCLUDE), (*chain, path))
        out = merge_layers(out, included)
        sources += [p for p in used if p not in sources]
    if includes:
        _drop_unsearched(out, _merge_space(out.get("space") or {}, data.get("space") or {}))
    out = merge_layers(out, data)
    sources.append(path)
    return out, sources


def merge_layers(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    """``upper`` over ``lower`` by the rules of the module docstring."""
    out = copy.deepcopy(dict(lower))
    for key, value in upper.items():
        if key == "space":
            out["space"] = _merge_space(out.get("space") or {}, value)
        elif key in _WHOLE or not isinstance(value, Mapping) or not isinstance(out.get(key), Mapping):
            out[key] = copy.deepcopy(value)
        else:
            points = _merge_points(out[key].get(POINTS), value.get(POINTS))
            out[key] = _merge_maps(out[key], value)
            if points is not None:
                out[key][POINTS] = points
    return out


def _merge_points(lower: Any, upper: Any) -> list[Any] | None:
    """Named points of ``upper`` replace those of ``lower`` with the same name; the rest are appended."""
    if not isinstance(lower, list) or not isinstance(upper, list):
        return None  # nothing to merge (or a wrong type, which the schema check names)
    if not upper:
        return []  # an empty list clears the inherited points
    out = copy.deepcopy(lower)
    names = [p.get("name") if isinstance(p, Mapping) else None for p in out]
    for point in upper:
        name = point.get("name") if isinstance(point, Mapping) else None
        if name is not None and name in names:
            out[names.index(name)] = copy.deepcopy(point)
        else:
            out.append(copy.deepcopy(point))
    return out


def _merge_space(lower: Mapping[str, Any], upper: Any) -> Any:
    if not isinstance(upper, Mapping):
        return upper  # not a mapping: the schema check names it
    out = {k: copy.deepcopy(v) for k, v in lower.items()}
    for key, entry in upper.items():
        if entry is None:
            out.pop(key, None)
        else:
            out[key] = copy.deepcopy(entry)
    return out


def _merge_maps(lower: Mapping[str, Any], upper: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(lower))
    for key, value in upper.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge_maps(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _drop_unsearched(data: dict[str, Any], space: Any) -> None:
    """Included points keep only params of keys the composed ``space`` still searches (module docstring)."""
    search = data.get("search")
    if not isinstance(search, dict) or not isinstance(space, Mapping):
        return
    points = search.get("points_to_evaluate")
    if not isinstance(points, list):
        return
    for point in points:
        if isinstance(point, dict) and isinstance(point.get("params"), dict):
            point["params"] = {k: v for k, v in point["params"].items() if k in space}


def _names(value: Any, path: Path, key: str, single: bool = False) -> list[str]:
    names = [value] if isinstance(value, str) else value
    ok = isinstance(names, list) and all(isinstance(n, str) and n for n in names)
    if not ok or (single and len(names) != 1):
        shape = "one file name" if single else "a file name or a list of file names"
        raise ConfigError(f"{path}: {key} must be {shape} (relative to this file), got {value!r}")
    return list(names)


def _resolve(path: Path, name: str, key: str) -> Path:
    target = (path.parent / name).resolve()
    if not target.is_file():
        raise ConfigError(f"{path}: {key}: no such file {name!r} (looked for {target})")
    return target


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (shorter, and the same on every machine)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
