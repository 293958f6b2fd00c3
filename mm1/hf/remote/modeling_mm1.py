"""MM1ForConditionalGeneration: transformers' Llava with one of mm1's connectors as its projector.

Everything but the projector is Llava's: the CLIP vision tower (patch features of the last kept
layer, CLS dropped), image placeholders in `input_ids` replaced by the projector's tokens, the
causal LM, generation. The projector maps (N, P, Dv) patch features to (N, T, D) tokens, T =
`config.image_seq_length`; its module and parameter names are mm1's (mm1/model/connectors), so
mm1's weights load under `model.multi_modal_projector.`. Shipped in an exported folder by
`mm1 export --format hf`; imports only torch and transformers.

Shapes: N images, P = g * g patches, Dv vision width, T tokens per image, D decoder width.
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, LlavaForConditionalGeneration, LlavaModel
from transformers.models.llava.modeling_llava import LlavaPreTrainedModel

from .configuration_mm1 import MM1Config


def projection_mlp(in_dim: int, out_dim: int, depth: int) -> nn.Sequential:
    """Linear(in_dim, out_dim), then (GELU, Linear(out_dim, out_dim)) depth - 1 times."""
    layers: list[nn.Module] = [nn.Linear(in_dim, out_dim)]
    for _ in range(depth - 1):
        layers += [nn.GELU(), nn.Linear(out_dim, out_dim)]
    return nn.Sequential(*layers)


def to_grid(x: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, P, C) -> (N, C, g, g)"""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid, grid)


class MLPProjector(nn.Module):
    """LLaVA's projector: every patch, a GELU MLP."""

    def __init__(self, c: dict, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        self.proj = projection_mlp(in_dim, out_dim, c["mlp_depth"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # (N, P, D)


class AvgPoolProjector(nn.Module):
    """sqrt(T) x sqrt(T) adaptive average pooling of the patch grid, then the GELU MLP."""

    def __init__(self, c: dict, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        self.grid, self.side = grid, math.isqrt(c["num_tokens"])
        self.proj = projection_mlp(in_dim, out_dim, c["mlp_depth"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(to_grid(x, self.grid), self.side)  # (N, Dv, s, s)
        return self.proj(x.flatten(2).transpose(1, 2))  # (N, T, D)


class AttentionPoolProjector(nn.Module):
    """T learned, layer-normed queries cross-attend to the layer-normed patches, then a linear projection."""

    def __init__(self, c: dict, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        self.queries = nn.Parameter(torch.zeros(c["num_tokens"], c["hidden"]))
        self.query_norm = nn.LayerNorm(c["hidden"])
        self.norm = nn.LayerNorm(in_dim)
        self.attn = nn.MultiheadAttention(c["hidden"], c["heads"], kdim=in_dim, vdim=in_dim, batch_first=True)
        self.proj = nn.Linear(c["hidden"], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)  # (N, P, Dv)
        q = self.query_norm(self.queries).expand(x.shape[0], -1, -1)  # (N, T, hidden)
        x, _ = self.attn(q, x, x, need_weights=False)  # (N, T, hidden)
        return self.proj(x)  # (N, T, D)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a (N, C, H, W) map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def conv_norm(c_in: int, c_out: int, kernel: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    """Bias-free conv, LayerNorm2d (eps 1e-5), then SiLU unless `act` is False."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=False),
        bn=LayerNorm2d(c_out, eps=1e-5),
        act=nn.SiLU() if act else nn.Identity(),
    ))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.fc2 = nn.Conv2d(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc2(F.silu(self.fc1(x.mean((2, 3), keepdim=True)))))


class Bottleneck(nn.Module):
    """RegNet-Y bottleneck at stride 1: 1x1 -> depthwise 3x3 -> SE (1/4 of the input width) -> 1x1, residual, SiLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = conv_norm(c_in, c_out)
        self.conv2 = conv_norm(c_out, c_out, kernel=3, groups=c_out)
        self.se = SqueezeExcite(c_out, int(round(c_in * 0.25)))
        self.conv3 = conv_norm(c_out, c_out, act=False)
        self.downsample = conv_norm(c_in, c_out, act=False) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(self.conv3(self.se(self.conv2(self.conv1(x)))) + self.downsample(x))


def reg_stage(depth: int, c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(OrderedDict((f"b{i + 1}", Bottleneck(c_in if i == 0 else c_out, c_out)) for i in range(depth)))


class CAbstractorProjector(nn.Module):
    """Honeybee's C-Abstractor: + positions, RegNet stage, adaptive pool to sqrt(T)^2, RegNet stage, SiLU MLP."""

    def __init__(self, c: dict, in_dim: int, out_dim: int, grid: int):
        super().__init__()
        self.grid = grid
        self.pos_emb = nn.Parameter(torch.zeros(1, grid * grid, in_dim))
        self.net = nn.Sequential(
            reg_stage(c["depth"], in_dim, c["hidden"]),
            nn.AdaptiveAvgPool2d(math.isqrt(c["num_tokens"])),
            reg_stage(c["depth"], c["hidden"], c["hidden"]),
        )
        self.readout = nn.Sequential(nn.Linear(c["hidden"], out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.net(to_grid(x + self.pos_emb, self.grid))  # (N, hidden, s, s)
        return self.readout(x.flatten(2).transpose(1, 2))  # (N, T, D)


PROJECTORS = {
    "mlp": MLPProjector,
    "avg_pool": AvgPoolProjector,
    "attention_pool": AttentionPoolProjector,
    "c_abstractor": CAbstractorProjector,
}


def build_projector(config: MM1Config) -> nn.Module:
    kind = config.connector["kind"]
    if kind not in PROJECTORS:
        raise ValueError(f"connector kind {kind!r} is not one of {', '.join(PROJECTORS)}")
    vision = config.vision_config
    return PROJECTORS[kind](config.connector, vision.hidden_size, config.text_config.hidden_size,
                            vision.image_size // vision.patch_size)


class MM1Model(LlavaModel):
    config_class = MM1Config

    def __init__(self, config: MM1Config):
        LlavaPreTrainedModel.__init__(self, config)
        self.vision_tower = AutoModel.from_config(config.vision_config)
        self.multi_modal_projector = build_projector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()


class MM1ForConditionalGeneration(LlavaForConditionalGeneration):
    config_class = MM1Config

    def __init__(self, config: MM1Config):
        LlavaPreTrainedModel.__init__(self, config)
        self.model = MM1Model(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()


__all__ = ["MM1ForConditionalGeneration", "MM1Model"]
