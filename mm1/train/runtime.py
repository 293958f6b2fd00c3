"""Device, precision and seeding for a run."""
from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from mm1.config.schema import TrainConfig


def pick_device(name: str, key: str = "train.device") -> torch.device:
    """auto | cpu | cuda -> the device; `key` names the setting in the error when no GPU is visible."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}: 'cuda' was asked for but no GPU is visible; allowed here: auto, cpu")
    return torch.device(name)


def autocast_dtype(cfg: TrainConfig, device: torch.device):
    """bf16 where asked, or on 'auto' where the device has fast bf16 (GPUs); else None (fp32)."""
    if cfg.precision == "fp32":
        return None
    if cfg.precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
