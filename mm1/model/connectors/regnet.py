"""RegNet bottleneck pieces for the C-Abstractor, without a timm dependency.

Honeybee (Cha et al., 2024, arXiv 2312.06742) builds its C-Abstractor from
timm's RegNet `RegStage`/`Bottleneck` (Radosavovic et al., 2020) with
bottle_ratio 1, group_size 1 (a depthwise 3x3 conv), SE ratio 0.25 of the
block's input width, SiLU and a channels-first LayerNorm (timm's
`LayerNormAct2d`, eps 1e-5). This file rebuilds those blocks. Attribute names
(`conv1.conv`, `conv1.bn`, `se.fc1`, `downsample`, `b1`...) follow timm's, so
a Honeybee checkpoint's state dict loads as-is; `bn` holds a LayerNorm here.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class ConvNorm(nn.Sequential):
    """Bias-free conv, LayerNorm2d, then SiLU unless `act` is False."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, groups: int = 1, act: bool = True):
        super().__init__(OrderedDict(
            conv=nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
            bn=LayerNorm2d(c_out),
            act=nn.SiLU() if act else nn.Identity(),
        ))


class SqueezeExcite(nn.Module):
    """Channel gate: spatial mean, 1x1 conv down, SiLU, 1x1 conv up, sigmoid. The 1x1 convs have biases."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        s = self.fc2(F.silu(self.fc1(s)))  # (B, C, 1, 1)
        return x * torch.sigmoid(s)  # (B, C, H, W)


class Bottleneck(nn.Module):
    """RegNet-Y bottleneck at stride 1: 1x1 -> depthwise 3x3 -> SE -> 1x1, residual add, SiLU."""

    def __init__(self, c_in: int, c_out: int, se_ratio: float = 0.25):
        super().__init__()
        self.conv1 = ConvNorm(c_in, c_out)
        self.conv2 = ConvNorm(c_out, c_out, kernel=3, groups=c_out)
        self.se = SqueezeExcite(c_out, int(round(c_in * se_ratio)))  # SE width follows the *input* width
        self.conv3 = ConvNorm(c_out, c_out, act=False)
        self.downsample = ConvNorm(c_in, c_out, act=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv3(self.se(self.conv2(self.conv1(x))))  # (B, C_out, H, W)
        return F.silu(y + self.downsample(x))  # (B, C_out, H, W)


def reg_stage(depth: int, c_in: int, c_out: int) -> nn.Sequential:
    """`depth` bottlenecks, the first c_in -> c_out, the rest c_out -> c_out (timm's `RegStage`)."""
    return nn.Sequential(OrderedDict(
        (f"b{i + 1}", Bottleneck(c_in if i == 0 else c_out, c_out)) for i in range(depth)
    ))
