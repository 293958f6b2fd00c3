"""Image preprocessing: squash-resize to the encoder's resolution and CLIP-normalise.

A batch normalises all its images in one pass (`normalise` on the stacked uint8
pixels), in numpy: per-image tensor ops cost more than the arithmetic on small
images, and torch would split a batch-sized op over the threads the training step
uses, which costs more still when the loader runs in the training process (a busy
CPU). The values are bitwise those of `(x / 255 - mean) / std` in float32.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mm1.model.vision import IMAGE_MEAN, IMAGE_STD

_MEAN = np.array(IMAGE_MEAN, dtype=np.float32).reshape(3, 1, 1)
_STD = np.array(IMAGE_STD, dtype=np.float32).reshape(3, 1, 1)


def resized(image: Image.Image, size: int) -> np.ndarray:
    """PIL image -> (size, size, 3) uint8 pixels (bicubic squash-resize when the size differs)."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


def normalise(pixels: np.ndarray) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> (N, 3, S, S) contiguous float: (x / 255 - mean) / std per channel."""
    x = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)  # (N, 3, S, S)
    x /= np.float32(255.0)
    x -= _MEAN
    x /= _STD
    return torch.from_numpy(x)


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> (3, size, size) float tensor."""
    return normalise(np.stack([resized(image, size)]))[0]
