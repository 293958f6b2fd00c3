"""MLP connector: LLaVA's projector, one image token per patch.

LLaVA-1.5 (Liu et al., 2023, arXiv 2310.03744) maps every patch feature to the
decoder width with a small GELU MLP (`mlp2x_gelu`); nothing is pooled, so T = P.
`projection_mlp` is shared with the average-pooling connector.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mm1.errors import ConfigError
from mm1.fields import checked


def projection_mlp(in_dim: int, out_dim: int, depth: int) -> nn.Sequential:
    """Linear(in_dim, out_dim), then (GELU, Linear(out_dim, out_dim)) depth - 1 times."""
    if depth < 1:
        raise ValueError(f"mlp_depth must be at least 1, got {depth}")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


@dataclass
class MLPConfig:
    mlp_depth: int = checked(2, ">0")  # layers of the projection MLP (also avg_pool's)


class MLPConnector(nn.Module):
    Config = MLPConfig

    @staticmethod
    def derive(cfg, vision_width: int, grid: int) -> None:
        if cfg.num_tokens is None:
            cfg.num_tokens = grid * grid  # every patch

    @staticmethod
    def check(cfg, grid: int) -> None:
        if cfg.num_tokens != grid * grid:
            raise ConfigError(
                f"model.connector.num_tokens: {cfg.num_tokens} is not allowed for the mlp connector, which keeps "
                f"every patch; allowed: {grid * grid} ({grid}x{grid} patches) or null"
            )

    def __init__(self, cfg, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        self.check(cfg, grid)
        self.proj = projection_mlp(in_dim, out_dim, cfg.mlp_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, P, Dv) -> (B, P, D_llm)
