"""Shard patterns -> shard files, shard files -> raw webdataset samples, and samples -> tar members.

Written shards are deterministic: a sample's members `{key}.{ext}` sorted by extension, tar headers
without the writing machine's time, owner or mode, so the same samples give the same bytes.
"""
from __future__ import annotations

import glob
import io
import os
import re
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
            raise ConfigError(f"{key_path}: pattern {pattern!r} matches no shard file (looked for {full!r}); "
                              f"{what_is_there(full)}")
        shards += found
    return shards


def what_is_there(pattern: str, shown: int = 8) -> str:
    """What the deepest existing folder of a pattern holds, for an error message."""
    folder = Path(os.path.dirname(re.split(r"[{*?\[]", pattern)[0]) or ".")
    while not folder.is_dir():
        if folder == folder.parent:
            return "no folder of it exists"
        folder = folder.parent
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    if not names:
        return f"{folder} is empty"
    more = f", ... ({len(names)} entries)" if len(names) > shown else ""
    return f"{folder} holds: {', '.join(names[:shown])}{more}"


def read_shard(url: str, damaged: Counter) -> Iterator[dict]:
    """Raw samples ({"__key__", ext: bytes, ...}) of one tar. A tar that is cut short or unreadable is
    counted under its path in `damaged` (once per read) and read up to the damage."""

    def handler(exc: Exception) -> bool:
        damaged[url] = 1
        return False  # stop reading this shard

    if url.endswith(".tar") and not intact_end(url):  # (a compressed shard is checked by its decompressor)
        damaged[url] = 1
    yield from tarfile_samples([{"url": url}], handler=handler)


def intact_end(path: str) -> bool:
    """A tar ends with two zero blocks (its end-of-archive marker); a file cut short, even between two
    members (which the tar reader takes for a normal end), does not."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            f.seek(max(0, size - 1024))
            tail = f.read()
    except OSError:
        return False
    return size % 512 == 0 and len(tail) == 1024 and not tail.strip(b"\0")


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
