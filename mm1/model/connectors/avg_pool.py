"""Average-pooling connector, one of the three compared in MM1.

MM1 (McKinzie et al., 2024, arXiv 2403.09611, section 3.2): n x n adaptive
average pooling of the patch grid (8x8 = 64 or 12x12 = 144 tokens), then a
projection to the decoder width (here the LLaVA-style GELU MLP of `mlp.py`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mm1.model.connectors.mlp import MLPConfig, projection_mlp
from mm1.model.connectors.common import square_side


class AvgPoolConnector(nn.Module):
    Config = MLPConfig  # its projection is the mlp connector's

    @staticmethod
    def derive(cfg, vision_width: int, grid: int) -> None:
        pass

    @staticmethod
    def check(cfg, grid: int) -> None:
        square_side(cfg.num_tokens, grid, "avg_pool")

    def __init__(self, cfg, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        self.grid, self.side = grid, square_side(cfg.num_tokens, grid, "avg_pool")
        self.proj = projection_mlp(in_dim, out_dim, cfg.mlp_depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, P, D = x.shape  # (B, P, Dv)
        if P != self.grid * self.grid:
            raise ValueError(f"avg_pool expects {self.grid * self.grid} patches ({self.grid}x{self.grid}), got {P}")
        x = x.transpose(1, 2).reshape(B, D, self.grid, self.grid)  # (B, Dv, g, g)
        x = F.adaptive_avg_pool2d(x, self.side)  # (B, Dv, s, s), s = sqrt(T)
        x = x.flatten(2).transpose(1, 2)  # (B, T, Dv)
        return self.proj(x)  # (B, T, D_llm)
