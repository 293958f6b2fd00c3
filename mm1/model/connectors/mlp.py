"""MLP connector: LLaVA's projector, one image token per patch.

LLaVA-1.5 (Liu et al., 2023, arXiv 2310.03744) maps every patch feature to the
decoder width with a small GELU MLP (`mlp2x_gelu`); nothing is pooled, so T = P.
`projection_mlp` is shared with the average-pooling connector.
"""
from __future__ import annotations

import torch
from torch import nn

from mm1.config.schema import ConnectorConfig


def projection_mlp(in_dim: int, out_dim: int, depth: int) -> nn.Sequential:
    """Linear(in_dim, out_dim), then (GELU, Linear(out_dim, out_dim)) depth - 1 times."""
    if depth < 1:
        raise ValueError(f"mlp_depth must be at least 1, got {depth}")
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


class MLPConnector(nn.Module):
    def __init__(self, cfg: ConnectorConfig, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        if cfg.num_tokens not in (None, grid * grid):
            raise ValueError(
                f"the mlp connector keeps every patch, so num_tokens must be {grid * grid} "
                f"({grid}x{grid} patches); got {cfg.num_tokens}"
            )
        self.proj = projection_mlp(in_dim, out_dim, cfg.mlp_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (B, P, Dv) -> (B, P, D_llm)
