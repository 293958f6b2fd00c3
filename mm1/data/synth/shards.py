"""Deterministic webdataset shards and JSON files (same input, same bytes)."""
from __future__ import annotations

import json
import os
import random
import tarfile
from pathlib import Path
from typing import Iterable

from mm1.data.shards import add_sample

Sample = tuple[str, dict[str, bytes]]  # (key, {extension: bytes}) -> tar members key.extension


def sample_rng(seed: int, stream: str, index: int) -> random.Random:
    """The private random stream of one sample: independent of every other sample and of order."""
    return random.Random(f"mm1.synth/{seed}/{stream}/{index}")


def write_tar(path: Path, samples: Iterable[Sample]) -> None:
    """One shard: members `{key}.{ext}` grouped by sample, extensions sorted; written atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, members in samples:
            add_sample(tar, key, members)
    os.replace(tmp, path)


def json_bytes(obj, indent=None) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=indent).encode("utf-8")


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
