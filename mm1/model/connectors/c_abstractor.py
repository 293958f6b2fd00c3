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

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from mm1.fields import checked
from mm1.model.connectors.regnet import reg_stage
from mm1.model.connectors.common import hidden_from_vision, square_side


@dataclass
class CAbstractorConfig:
    hidden: Optional[int] = checked(None, ">0")  # inner width (also attention_pool's); None = the vision width
    depth: int = checked(3, ">0")  # RegNet bottleneck blocks per stage


class CAbstractor(nn.Module):
    Config = CAbstractorConfig

    @staticmethod
    def derive(cfg, vision_width: int, grid: int) -> None:
        hidden_from_vision(cfg, vision_width)

    @staticmethod
    def check(cfg, grid: int) -> None:
        square_side(cfg.num_tokens, grid, "c_abstractor")

    def __init__(self, cfg, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        side = square_side(cfg.num_tokens, grid, "c_abstractor")
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
