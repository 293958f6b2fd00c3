"""Recipes: YAML -> typed tree -> overrides -> derived values -> validation.

`load_config(path, overrides)` is the one entry point; it does no heavy work
(no model, no data), so every mistake is reported before a run starts.
"""
from __future__ import annotations

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
from mm1.config.tree import ConfigError, apply_override, build, dump_yaml, to_dict
from mm1.config.validate import check_fields, validate

__all__ = [
    "Config", "ConfigError", "ConnectorConfig", "DataConfig", "DecoderConfig", "EvalConfig", "ModelConfig", "MoEConfig",
    "OptimConfig", "OutputConfig", "ParallelConfig", "SourceConfig", "SynthConfig", "TokenizerConfig", "TrainConfig",
    "VisionConfig", "load_config", "config_from_dict", "dump_yaml", "to_dict",
]


def config_from_dict(data: dict, overrides: list[str] = ()) -> Config:
    cfg = build(Config, data)
    for item in overrides:
        apply_override(cfg, item)
    check_fields(cfg)  # before derive, which divides by some of them
    derive(cfg)
    validate(cfg)
    return cfg


def load_config(path: str | Path, overrides: list[str] = ()) -> Config:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {err}") from None
    return config_from_dict(data or {}, overrides)
