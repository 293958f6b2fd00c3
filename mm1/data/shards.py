"""Shard patterns -> shard files, shard files -> raw webdataset samples, and samples -> tar members.

Written shards are deterministic: a sample's members `{key}.{ext}` sorted by extension, tar headers
without the writing machine's time, owner or mode, so the same samples give the same bytes.
"""
from __future__ import annotations

import glob
import io
import os
import tarfile
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


def _member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def add_sample(tar: tarfile.TarFile, key: str, members: dict[str, bytes]) -> None:
    """One sample's members `{key}.{ext}` into an open tar, extensions sorted."""
    if "." in key:
        raise ValueError(f"sample key {key!r} must not contain '.' (webdataset splits on it)")
    for ext in sorted(members):
        tar.addfile(_member(f"{key}.{ext}", len(members[ext])), io.BytesIO(members[ext]))
