"""Write small real webdataset shards for tests."""
from __future__ import annotations

import io
import json
from pathlib import Path

import webdataset as wds
from PIL import Image


def png(colour=(200, 30, 30), size=32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buf, format="PNG")
    return buf.getvalue()


def write_caption_shards(root: Path, shards: int, per_shard: int, prefix: str = "caption") -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    keys = []
    for s in range(shards):
        with wds.TarWriter(str(root / f"{prefix}-{s:06d}.tar")) as sink:
            for i in range(per_shard):
                key = f"{prefix}{s:03d}x{i:04d}"
                sink.write({"__key__": key, "png": png(), "txt": f"a red square number {i} .",
                            "json": json.dumps({"i": i})})
                keys.append(key)
    return keys


def write_text_shards(root: Path, shards: int, per_shard: int, prefix: str = "text") -> list[str]:
    root.mkdir(parents=True, exist_ok=True)
    keys = []
    for s in range(shards):
        with wds.TarWriter(str(root / f"{prefix}-{s:06d}.tar")) as sink:
            for i in range(per_shard):
                key = f"{prefix}{s:03d}x{i:04d}"
                sink.write({"__key__": key, "txt": f"a circle is a shape . {i}"})
                keys.append(key)
    return keys
