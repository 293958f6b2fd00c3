"""Recipes: YAML -> typed tree -> overrides -> derived values -> validation.

`load_config(path, overrides)` is the one entry point; it does no heavy work
(no model, no data), so every mistake is reported before a run starts.

A recipe may start from another: `base: mm1_3b.yaml` (relative to the recipe's
own folder) reads that recipe first and lays this file's keys over it, mapping by
mapping at every depth (a value that is not a mapping replaces the base's; `null`
clears it). Bases may themselves have bases.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import yaml

from mm1.config.derive import derive
from mm1.config.schema import (
    Config,
    ConnectorConfig,
    DataConfig,
    DecoderConfig,
    EvalConfig,
    ModelConfig,
    MoEConfig,
    OptimConfig,
    OutputConfig,
    ParallelConfig,
    SourceConfig,
    SynthConfig,
    TokenizerConfig,
    TrainConfig,
    VisionConfig,
)
from mm1.config.tree import ConfigError, apply_override, build, dump_yaml, merge_trees, to_dict
from mm1.config.validate import check_fields, validate
from mm1.shipped import recipe_names, shipped_recipe

__all__ = [
    "Config", "ConfigError", "ConnectorConfig", "DataConfig", "DecoderConfig", "EvalConfig", "ModelConfig", "MoEConfig",
    "OptimConfig", "OutputConfig", "ParallelConfig", "SourceConfig", "SynthConfig", "TokenizerConfig", "TrainConfig",
    "VisionConfig", "load_config", "config_from_dict", "dump_yaml", "to_dict",
]


# Keys that were renamed: configs written before (recipes, and the config.yaml of every checkpoint) load.
RENAMED = {("eval", "suite"): "tasks"}


def _renamed(data: dict) -> dict:
    for (section, old), new in RENAMED.items():
        part = data.get(section)
        if isinstance(part, dict) and old in part:
            if new in part:
                raise ConfigError(f"{section}.{old}: renamed {section}.{new}; give only {section}.{new}")
            warnings.warn(f"config key {section}.{old} is now {section}.{new}", FutureWarning, stacklevel=3)
            data = {**data, section: {(new if k == old else k): v for k, v in part.items()}}
    return data


def config_from_dict(data: dict, overrides: list[str] = ()) -> Config:
    cfg = build(Config, _renamed(data))
    for item in overrides:
        apply_override(cfg, item)
    check_fields(cfg)  # before derive, which divides by some of them
    derive(cfg)
    validate(cfg)
    return cfg


def read_recipe(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A recipe file as plain data, its `base:` chain merged in (base first)."""
    path = Path(path).resolve()
    if path in _chain:
        raise ConfigError(f"recipe {str(path)!r}: base chain loops: {' -> '.join(str(p) for p in (*_chain, path))}")
    if not path.is_file():
        where = f"{_chain[-1]}: base: " if _chain else ""
        raise ConfigError(f"{where}recipe {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {str(path)!r}: expected a mapping of config keys, got {type(data).__name__}")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"recipe {str(path)!r}: base: expected a recipe file name, got {base!r}")
    return merge_trees(read_recipe(path.parent / base, (*_chain, path)), data)


def find_recipe(path: str | Path) -> Path:
    """`path`, or the shipped recipe it names when there is no such file (`recipes/tiny.yaml` from any folder,
    `tiny`, `tiny.yaml`); ConfigError listing the shipped recipes when neither exists."""
    if Path(path).is_file():
        return Path(path)
    shipped = shipped_recipe(path)
    if shipped is None:
        raise ConfigError(f"recipe {str(path)!r} not found (nor among the shipped recipes: "
                          f"{', '.join(recipe_names())})")
    return shipped


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    return config_from_dict(read_recipe(find_recipe(path)), overrides)
