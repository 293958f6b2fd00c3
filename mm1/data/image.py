"""Image preprocessing: squash-resize to the encoder's resolution and CLIP-normalise."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from mm1.model.vision import IMAGE_MEAN, IMAGE_STD

_MEAN = torch.tensor(IMAGE_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGE_STD).view(3, 1, 1)


def preprocess(image: Image.Image, size: int) -> torch.Tensor:
    """PIL image -> (3, size, size) float tensor."""
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)  # (3, S, S)
    return (pixels.float() / 255.0 - _MEAN) / _STD
