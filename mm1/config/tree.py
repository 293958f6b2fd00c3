"""Turning plain YAML data into the typed tree, and dotted overrides into edits.

Type errors and unknown keys raise `ConfigError` naming the full key path.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Union

import yaml

from mm1.errors import ConfigError  # noqa: F401  (the config's error type; defined apart so model code can raise it)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def build(cls: type, data: Any, path: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking every key and type."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {data!r}")
    _check_keys(data, path)
    names = {yaml_key(f): f.name for f in dataclasses.fields(cls)}  # key in the file -> field
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - set(names))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ConfigError(f"{where}: unknown key; allowed keys here: {', '.join(sorted(names))}")
    kwargs = {names[key]: coerce(hints[names[key]], value, _join(path, key)) for key, value in data.items()}
    return cls(**kwargs)


def yaml_key(f: dataclasses.Field) -> str:
    """A field's key in YAML: its name, or `metadata["key"]` where the name is a Python keyword (`from`)."""
    return f.metadata.get("key", f.name)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def coerce(tp: Any, value: Any, path: str) -> Any:
    """Check `value` against annotation `tp` (converting int to float and mappings to dataclasses)."""
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(arg, value, path)
            except ConfigError as err:
                errors.append(err)
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    origin = typing.get_origin(tp)
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [coerce(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _check_keys(value, path)
        return {k: coerce(item, v, _join(path, k)) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 3e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{path}: expected float, got {value!r}") from None
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{path}: expected {tp.__name__}, got {value!r}")
    return value


def apply_override(cfg: Any, dotted: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML."""
    if "=" not in dotted:
        raise ConfigError(f"override {dotted!r}: expected key.path=value")
    key, raw = dotted.split("=", 1)
    value = _parse_value(key.strip(), raw)
    parts = key.strip().split(".")
    node, path = cfg, ""
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if dataclasses.is_dataclass(node):
            hints = typing.get_type_hints(type(node))
            if part not in hints:
                allowed = ", ".join(sorted(hints))
                raise ConfigError(f"{_join(path, part)}: unknown key; allowed keys here: {allowed}")
            if last:
                setattr(node, part, coerce(hints[part], value, _join(path, part)))
                return
            if getattr(node, part) is None and dataclasses.is_dataclass(_optional_inner(hints[part])):
                setattr(node, part, _optional_inner(hints[part])())
            node = getattr(node, part)
        elif isinstance(node, dict):
            if last:
                node[part] = _coerce_dict_item(node, value, _join(path, part))
                return
            if part not in node:
                raise ConfigError(f"{_join(path, part)}: unknown key; known here: {', '.join(sorted(node))}")
            node = node[part]
        else:
            raise ConfigError(f"{path}: is a {type(node).__name__}, it has no key {part!r}")
        path = _join(path, part)


def _parse_value(key: str, raw: str) -> Any:
    """An override's value, parsed as plain YAML (no python tags)."""
    if not raw.strip():
        return ""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as err:
        reason = str(err).replace("\n", " ")
        raise ConfigError(f"{key}: {raw!r} is not a plain YAML value ({reason}); allowed: a number, a string, "
                          f"true/false, null, [a list] or {{a: mapping}}") from None


def _check_keys(data: dict, path: str) -> None:
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ConfigError(f"{path or '<root>'}: key {bad[0]!r} is a {type(bad[0]).__name__}; allowed: string keys")


def _optional_inner(tp: Any) -> Any:
    if _is_union(tp):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return tp


def _coerce_dict_item(node: dict, value: Any, path: str) -> Any:
    """Dict values share one type; infer it from a sibling (mixture weights, sources)."""
    sibling = next(iter(node.values()), None)
    if dataclasses.is_dataclass(sibling):
        return build(type(sibling), value, path)
    if isinstance(sibling, float):
        return coerce(float, value, path)
    return value


def merge_trees(base: Any, over: Any) -> Any:
    """`over` on top of `base`: mappings merge key by key, at every depth; any other value replaces."""
    if not (isinstance(base, dict) and isinstance(over, dict)):
        return over
    out = dict(base)
    for key, value in over.items():
        out[key] = merge_trees(base[key], value) if key in base else value
    return out


def to_dict(cfg: Any) -> Any:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
