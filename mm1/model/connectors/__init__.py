"""Vision-language connectors: (B, P, Dv) patch features -> (B, T, D_llm) image tokens.

One registry; each connector lives in its own file and owns its settings and their rules:
  `Config`                    a dataclass of its own options (with their defaults and `checked` rules)
  `derive(cfg, width, grid)`  fill the options it derives (e.g. hidden = the vision width)
  `check(cfg, grid)`          ConfigError naming the key when the settings cannot work
  `__init__(cfg, in_dim, out_dim, grid)`, where `grid` is the side of the square patch grid.
`ConnectorConfig` (`model.connector` of a recipe) is `kind`, `num_tokens` and every connector's
options, assembled from the registry: a new connector touches its own file and `CONNECTORS` only.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Optional

from torch import nn

from mm1.errors import ConfigError
from mm1.fields import checked
from mm1.model.connectors.attention_pool import AttentionPoolConnector
from mm1.model.connectors.avg_pool import AvgPoolConnector
from mm1.model.connectors.c_abstractor import CAbstractor
from mm1.model.connectors.mlp import MLPConnector

CONNECTORS: dict[str, type[nn.Module]] = {
    "avg_pool": AvgPoolConnector,
    "attention_pool": AttentionPoolConnector,
    "c_abstractor": CAbstractor,
    "mlp": MLPConnector,
}


@dataclasses.dataclass
class _Shared:
    kind: str = "c_abstractor"  # one of CONNECTORS
    num_tokens: Optional[int] = checked(16, ">0")  # image tokens per image (T); None = derived (mlp: all patches)


def _spec(f: dataclasses.Field, tp) -> tuple:
    kw = {"metadata": f.metadata}
    kw["default" if f.default_factory is dataclasses.MISSING else "default_factory"] = (
        f.default if f.default_factory is dataclasses.MISSING else f.default_factory)
    return f.name, tp, dataclasses.field(**kw)


def _union() -> type:
    """One dataclass with the shared fields and every connector's options; an option two connectors share
    must be declared alike in both."""
    specs: dict[str, tuple] = {}
    for owner in (_Shared, *(c.Config for c in CONNECTORS.values())):
        hints = typing.get_type_hints(owner)
        for f in dataclasses.fields(owner):
            spec = _spec(f, hints[f.name])
            old = specs.setdefault(f.name, spec)
            assert (old[1], old[2].default, dict(old[2].metadata)) == (spec[1], spec[2].default, dict(f.metadata)), \
                f"connector option {f.name!r} is declared differently by two connectors"
    cls = dataclasses.make_dataclass("ConnectorConfig", list(specs.values()))
    cls.__module__ = __name__
    return cls


ConnectorConfig = _union()


def check_connector(cfg, grid: int) -> None:
    if cfg.kind not in CONNECTORS:
        raise ConfigError(f"model.connector.kind: {cfg.kind!r} is not allowed; allowed: {', '.join(sorted(CONNECTORS))}")
    CONNECTORS[cfg.kind].check(cfg, grid)


def build_connector(cfg, in_dim: int, out_dim: int, grid: int) -> nn.Module:
    check_connector(cfg, grid)
    return CONNECTORS[cfg.kind](cfg, in_dim, out_dim, grid)
