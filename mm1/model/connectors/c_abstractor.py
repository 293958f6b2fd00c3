"""C-Abstractor: the convolutional connector of Honeybee, MM1's default.

Honeybee (Cha et al., 2024, arXiv 2312.06742) and MM1 (McKinzie et al., 2024,
arXiv 2403.09611, section 3.2): a learnable positional embedding is added to
the patch features, a RegNet stage (Dv -> hidden) runs on the patch grid, an
adaptive average pool brings the grid to sqrt(T) x sqrt(T), a second RegNet
stage (hidden -> hidden) follows, and a two-layer SiLU MLP reads each cell out
to the decoder width. Locality is kept by the convolutions, so the token count
is a free knob (any perfect square up to the patch count).

Module names follow Honeybee's (`pos_emb`, `net.0/1/2`, `readout.0/2`). One
difference: Honeybee's `pos_emb` also covers the CLS token (P + 1 rows) before
dropping it; here the encoder gives no CLS token, so it has P rows.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from mm1.config.schema import ConnectorConfig
from mm1.model.connectors.regnet import reg_stage


class CAbstractor(nn.Module):
    def __init__(self, cfg: ConnectorConfig, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        side = math.isqrt(cfg.num_tokens)
        if side * side != cfg.num_tokens or side > grid:
            raise ValueError(
                f"c_abstractor needs num_tokens to be a perfect square of at most {grid * grid} "
                f"({grid}x{grid} patches); got {cfg.num_tokens}"
            )
        self.grid = grid
        self.pos_emb = nn.Parameter(torch.zeros(1, grid * grid, in_dim))
        nn.init.trunc_normal_(self.pos_emb, std=0.02)
        self.net = nn.Sequential(
            reg_stage(cfg.depth, in_dim, cfg.hidden),
            nn.AdaptiveAvgPool2d(side),
            reg_stage(cfg.depth, cfg.hidden, cfg.hidden),
        )
        self.readout = nn.Sequential(nn.Linear(cfg.hidden, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, P, D = x.shape  # (B, P, Dv)
        if P != self.grid * self.grid:
            raise ValueError(f"c_abstractor expects {self.grid * self.grid} patches ({self.grid}x{self.grid}), got {P}")
        x = x + self.pos_emb  # (B, P, Dv)
        x = x.transpose(1, 2).reshape(B, D, self.grid, self.grid)  # (B, Dv, g, g)
        x = self.net(x)  # (B, hidden, s, s), s = sqrt(T)
        x = x.flatten(2).transpose(1, 2)  # (B, T, hidden)
        return self.readout(x)  # (B, T, D_llm)
