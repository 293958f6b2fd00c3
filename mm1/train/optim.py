"""AdamW with MM1's learning-rate law and a warmup + cosine schedule."""
from __future__ import annotations

import math

import torch
from torch import nn

from mm1.config.schema import OptimConfig


def mm1_lr(num_params: float) -> float:
    """MM1's fitted peak learning rate: exp(-0.4214 ln N - 0.5535), N = non-embedding parameters."""
    return math.exp(-0.4214 * math.log(num_params) - 0.5535)


def resolve_lr(cfg: OptimConfig, non_embedding_params: int) -> tuple[float, float]:
    """(peak lr, weight decay); 'auto' lr uses MM1's law and weight decay defaults to 0.1 x lr."""
    lr = mm1_lr(non_embedding_params) if cfg.lr == "auto" else float(cfg.lr)
    wd = 0.1 * lr if cfg.weight_decay is None else cfg.weight_decay
    return lr, wd


def lr_at(step: int, peak: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup to `peak`, then cosine decay to `min_ratio * peak` at `total` steps."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def build_optimizer(model: nn.Module, cfg: OptimConfig, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """Decay every tensor of two or more dimensions (weight matrices, convolutions, embeddings, learned
    positions and queries); biases and norm gains are not decayed."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(cfg.betas), eps=cfg.eps)
