"""Vision-language connectors: (B, P, Dv) patch features -> (B, T, D_llm) image tokens.

One registry; each connector lives in its own file and takes
`(cfg: ConnectorConfig, in_dim: int, out_dim: int, grid: int)`, where `grid`
is the side of the square patch grid (P = grid * grid).
"""
from __future__ import annotations

from torch import nn

from mm1.config.schema import ConnectorConfig
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


def build_connector(cfg: ConnectorConfig, in_dim: int, out_dim: int, grid: int) -> nn.Module:
    if cfg.kind not in CONNECTORS:
        raise ValueError(f"model.connector.kind: unknown connector {cfg.kind!r}; allowed: {', '.join(sorted(CONNECTORS))}")
    return CONNECTORS[cfg.kind](cfg, in_dim, out_dim, grid)
