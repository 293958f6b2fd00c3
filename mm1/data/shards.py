"""Shard patterns -> shard files, and shard files -> raw webdataset samples."""
from __future__ import annotations

import glob
import os
from collections import Counter
from pathlib import Path
from typing import Iterator

import braceexpand
from webdataset.tariterators import tarfile_samples

from mm1.config.tree import ConfigError


def resolve_shards(patterns: list[str], root: str, key_path: str) -> list[str]:
    """Expand braces and globs; every pattern must match at least one file."""
    shards: list[str] = []
    for pattern in patterns:
        full = pattern if os.path.isabs(pattern) else str(Path(root) / pattern)
        found = []
        for item in braceexpand.braceexpand(full):
            found += sorted(glob.glob(item)) if glob.has_magic(item) else ([item] if os.path.isfile(item) else [])
        if not found:
            raise ConfigError(f"{key_path}: pattern {pattern!r} matches no shard file (looked for {full!r})")
        shards += found
    return shards


def read_shard(url: str, skips: Counter) -> Iterator[dict]:
    """Raw samples ({"__key__", ext: bytes, ...}) of one tar; a broken tar is counted and ends the shard."""

    def handler(exc: Exception) -> bool:
        skips["broken_tar"] += 1
        return False  # stop reading this shard; the samples before the damage were kept

    yield from tarfile_samples([{"url": url}], handler=handler)
