"""Image preprocessing: squash-resize to the encoder's resolution, as uint8 pixels.

Batches carry uint8 pixels (N, 3, S, S); the vision encoder normalises them on its
own device (`mm1.model.vision.normalise_pixels`). Normalising in the loader would
cost more CPU time than decoding a small image, and float pixels are four times
the bytes to pass between loader workers and to copy to a GPU.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def resized(image: Image.Image, size: int) -> np.ndarray:
    """PIL image -> (size, size, 3) uint8 pixels (bicubic squash-resize when the size differs)."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) contiguous uint8."""
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> (3, size, size) uint8 tensor."""
    return to_tensor(np.stack([resized(image, size)]))[0]
