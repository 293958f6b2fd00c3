"""Image features for RICES demo selection, from the model's own vision encoder, cached on disk.

A feature is the mean of the encoder's patch features (the ones the connector
reads), L2-normalised, so a dot product is a cosine similarity. The cache file
is keyed by a hash of the encoder's weights, the image size and the list of
image files (path, size, mtime): new weights or changed files never reuse a
stale cache. Images that cannot be read get no feature; `ok` marks them.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from mm1.eval.prompts import SampleError, load_pixels

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mm1" / "rices"


@dataclass
class Features:
    features: torch.Tensor  # (N, D) unit vectors, zero rows where ok is False
    ok: list[bool]  # whether image i could be read


def weights_fingerprint(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _files_fingerprint(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}\0missing\n".encode())
    return h.hexdigest()


@torch.inference_mode()
def image_features(model, paths: list[Path], image_size: int, batch_size: int = 64) -> Features:
    """Mean-pooled, normalised vision-encoder features of each image file."""
    device = next(model.parameters()).device
    out = torch.zeros((len(paths), model.vision.width))
    ok = [False] * len(paths)
    for start in range(0, len(paths), batch_size):
        rows, pixels = [], []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                pixels.append(load_pixels(paths[i], image_size))
                rows.append(i)
            except SampleError:
                continue
        if not rows:
            continue
        patches = model.vision(torch.stack(pixels).to(device))  # (b, P, Dv)
        out[rows] = F.normalize(patches.float().mean(dim=1), dim=-1).cpu()
        for i in rows:
            ok[i] = True
    return Features(out, ok)


def cached_image_features(
    model, paths: list[Path], image_size: int, cache_dir: Path | str = DEFAULT_CACHE, batch_size: int = 64
) -> Features:
    """`image_features`, read from or written to `cache_dir`."""
    key = hashlib.sha256(
        json.dumps([weights_fingerprint(model.vision), image_size, _files_fingerprint(paths)]).encode()
    ).hexdigest()[:32]
    path = Path(cache_dir) / f"{key}.pt"
    if path.is_file():
        saved = torch.load(path, map_location="cpu", weights_only=True)
        return Features(saved["features"], [bool(x) for x in saved["ok"].tolist()])
    feats = image_features(model, paths, image_size, batch_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"features": feats.features, "ok": torch.tensor(feats.ok)}, tmp)
    tmp.replace(path)
    return feats
