"""Attention-pooling connector, one of the three compared in MM1.

MM1 (McKinzie et al., 2024, arXiv 2403.09611, section 3.2): T learnable
queries cross-attend to the patch features, then a linear projection to the
decoder width. It is the attentional pooler of CoCa / open_clip
(`open_clip.transformer.AttentionalPooler`) followed by that projection: the
queries start as standard normals and are layer-normed (so they differ, and
attend to different patches, from the first step), the patch features are
layer-normed, and keys and values are projected from the vision width
(`kdim`/`vdim`) into the attention width `hidden`. Parity with open_clip's
module is tested (tests/model/test_connectors.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from mm1.errors import ConfigError
from mm1.fields import checked
from mm1.model.connectors.common import hidden_from_vision


@dataclass
class AttentionPoolConfig:
    hidden: Optional[int] = checked(None, ">0")  # attention width (also c_abstractor's); None = the vision width
    heads: int = checked(8, ">0")  # attention heads


class AttentionPoolConnector(nn.Module):
    Config = AttentionPoolConfig

    @staticmethod
    def derive(cfg, vision_width: int, grid: int) -> None:
        hidden_from_vision(cfg, vision_width)

    @staticmethod
    def check(cfg, grid: int) -> None:
        if cfg.hidden % cfg.heads:
            raise ConfigError(f"model.connector.heads: {cfg.heads} does not divide model.connector.hidden "
                              f"({cfg.hidden})")

    def __init__(self, cfg, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        self.check(cfg, grid)
        self.queries = nn.Parameter(torch.randn(cfg.num_tokens, cfg.hidden))
        self.query_norm = nn.LayerNorm(cfg.hidden)
        self.norm = nn.LayerNorm(in_dim)
        self.attn = nn.MultiheadAttention(cfg.hidden, cfg.heads, kdim=in_dim, vdim=in_dim, batch_first=True)
        self.proj = nn.Linear(cfg.hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # (B, P, Dv)
        q = self.query_norm(self.queries).expand(x.shape[0], -1, -1)  # (B, T, hidden)
        x, _ = self.attn(q, x, x, need_weights=False)  # (B, T, hidden)
        return self.proj(x)  # (B, T, D_llm)
