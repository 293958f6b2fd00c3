"""Command-line flags derived from a config dataclass, so a setting is defined once.

    add_flags(parser, EvalConfig)                # --batch-size for batch_size, help from the field
    cfg = from_flags(EvalConfig, parser.parse_args())

Each field with `metadata["cli"]` not False becomes `--name-with-dashes`; its help, choices and
default come from the field. Lists of ints are written comma-separated (`--shots 0,4,8`); an optional
field takes `null` for None.
"""
from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any, Callable

from mm1.config.tree import _is_union


def _inner(tp: Any) -> tuple[Any, bool]:
    """(the type without Optional, whether None is allowed)."""
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _int_list(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,4,8; got {text!r}") from None


def _parser(tp: Any, optional: bool) -> Callable[[str], Any]:
    base = _int_list if typing.get_origin(tp) is list else tp
    if not optional:
        return base
    return lambda text: None if text == "null" else base(text)


def cli_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("cli", True)]


def _default(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def add_flags(parser: argparse.ArgumentParser, cls: type, defaults: dict | None = None) -> None:
    """One flag per field of `cls`; `defaults` replaces some fields' defaults for this command."""
    hints = typing.get_type_hints(cls)
    for f in cli_fields(cls):
        tp, optional = _inner(hints[f.name])
        default = (defaults or {}).get(f.name, _default(f))
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        choices = f.metadata.get("choices")
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_parser(tp, optional),
                            default=default, choices=None if choices is None else (*choices, *([None] * optional)),
                            metavar="|".join(choices) if choices else None,
                            help=f"{f.metadata.get('help', '')} (default: {shown})")


def from_flags(cls: type, args: argparse.Namespace) -> Any:
    """The dataclass from parsed flags; fields without a flag keep their defaults."""
    return cls(**{f.name: getattr(args, f.name) for f in cli_fields(cls)})
