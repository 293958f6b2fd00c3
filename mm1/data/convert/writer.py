"""Write converted samples into deterministic webdataset shards.

A shard is `{out_dir}/{prefix}-{i:06d}.tar`, holding `samples_per_shard` samples
(the last one fewer). Samples are named `{n:09d}` in write order, as img2dataset
names them; a sample's members are `{key}.{ext}`, sorted by extension. Tar
headers carry no time, owner or mode of the converting machine, so the same
input and seed give the same bytes. `shuffled` mixes the sample order before
writing, so that a reader that takes shards and samples in order gets mixed data.
"""
from __future__ import annotations

import os
import random
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mm1.data.shards import add_sample

T = TypeVar("T")
Members = dict[str, bytes]  # extension (e.g. "txt", "0.png") -> member bytes
# why an image the input names is left out (images.shard_image, the converters' path and URL checks)
IMAGE_REASONS = ("missing_image", "url_image", "image_outside_root", "bad_image", "tiny_image", "huge_image")


class ImageLossError(ValueError):
    """More of the images an input names were left out than ShardOptions.max_dropped_images allows."""


def is_utf8_text(value: object) -> bool:
    """A string that UTF-8 can encode (JSON allows lone surrogates such as "\\ud800", which it cannot)."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shuffled(items: Iterable[T], buffer_size: int, seed: int) -> Iterator[T]:
    """`items` in a seeded random order, holding at most `buffer_size` of them at a time.

    `buffer_size` <= 1 keeps the order; `buffer_size` >= the number of items gives
    a uniform full permutation.
    """
    if buffer_size <= 1:
        yield from items
        return
    rng = random.Random(seed)
    buffer: list[T] = []
    for item in items:
        buffer.append(item)
        if len(buffer) >= buffer_size:
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


class ShardWriter:
    """Append samples; a new shard starts every `samples_per_shard` samples. Use as a context manager."""

    def __init__(self, out_dir: str | Path, prefix: str, samples_per_shard: int, overwrite: bool = False):
        if samples_per_shard < 1:
            raise ValueError(f"samples_per_shard must be >= 1, got {samples_per_shard}")
        if not prefix or "/" in prefix:
            raise ValueError(f"shard prefix must be a non-empty file name part, got {prefix!r}")
        self.out_dir, self.prefix, self.per_shard = Path(out_dir), prefix, samples_per_shard
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._clear_old_shards(overwrite)
        self.samples = 0
        self.shards: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._tmp: Path | None = None

    def _clear_old_shards(self, overwrite: bool) -> None:
        old = sorted(self.out_dir.glob(f"{self.prefix}-*.tar"))
        if old and not overwrite:
            raise FileExistsError(f"{self.out_dir} already holds {len(old)} shard(s) named {self.prefix}-*.tar "
                                  f"(e.g. {old[0].name}); choose another folder or prefix, or overwrite them "
                                  "(--overwrite)")
        for path in old:
            path.unlink()

    def write(self, members: Members) -> str:
        """Add one sample; returns its key."""
        if not members:
            raise ValueError("a sample needs at least one member")
        if self._tar is None:
            self._open_next()
        key = f"{self.samples:09d}"
        add_sample(self._tar, key, members)
        self.samples += 1
        if self.samples % self.per_shard == 0:
            self._finish()
        return key

    def _open_next(self) -> None:
        path = self.out_dir / f"{self.prefix}-{len(self.shards):06d}.tar"
        self._tmp = path.with_name(path.name + ".tmp")
        self._tar = tarfile.open(self._tmp, "w", format=tarfile.USTAR_FORMAT)

    def _finish(self) -> None:
        self._tar.close()
        path = self._tmp.with_name(self._tmp.name[: -len(".tmp")])
        os.replace(self._tmp, path)
        self.shards.append(str(path))
        self._tar = self._tmp = None

    def close(self) -> list[str]:
        """Finish the last shard; returns the paths of all shards written."""
        if self._tar is not None:
            self._finish()
        return self.shards

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif self._tar is not None:  # a failed conversion leaves no half-written shard
            self._tar.close()
            self._tmp.unlink(missing_ok=True)
            self._tar = self._tmp = None


@dataclass
class ShardOptions:
    """Where and how a converter writes its shards."""

    out_dir: str | Path
    prefix: str
    samples_per_shard: int = 10_000
    shuffle_buffer: int = 10_000  # source items held for shuffling; <= 1 keeps the source order
    seed: int = 0
    overwrite: bool = False  # replace shards `{prefix}-*.tar` already in out_dir (else an error)
    max_dropped_images: float = 0.2  # a larger share of the images the input names left out is an error


@dataclass
class Report:
    """What a conversion wrote and what it left out, by reason."""

    out_dir: str = ""
    samples: int = 0
    images: int = 0
    shards: list[str] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)  # whole source samples/rows/lines left out
    dropped_images: Counter = field(default_factory=Counter)  # images left out of documents that were kept

    def images_lost(self) -> Counter:
        """Images the input names that were left out, by reason (with their sample, or alone)."""
        return Counter({k: v for k, v in self.skipped.items() if k in IMAGE_REASONS}) + self.dropped_images

    def summary(self) -> str:
        def reasons(counts: Counter) -> str:
            return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"

        lines = [f"wrote {self.samples} samples ({self.images} images) in {len(self.shards)} shards to {self.out_dir}",
                 f"skipped {sum(self.skipped.values())} samples: {reasons(self.skipped)}"]
        if self.dropped_images:
            lines.append(f"dropped {sum(self.dropped_images.values())} images: {reasons(self.dropped_images)}")
        return "\n".join(lines)


def write_converted(items: Iterable[T], make: Callable[[T, Report], Members | None],
                    options: ShardOptions) -> Report:
    """Shuffle source `items`, turn each into a sample with `make` (None: left out, counted by `make`), write."""
    report = Report(out_dir=str(options.out_dir))
    with ShardWriter(options.out_dir, options.prefix, options.samples_per_shard, options.overwrite) as writer:
        for item in shuffled(items, options.shuffle_buffer, options.seed):
            members = make(item, report)
            if members is not None:
                writer.write(members)
    report.samples, report.shards = writer.samples, writer.shards
    check_image_loss(report, options.max_dropped_images)
    return report


def check_image_loss(report: Report, max_share: float) -> None:
    """ImageLossError, after removing the shards just written, when more than `max_share` of the images
    the input names were left out: a conversion that lost its images is no success."""
    lost = report.images_lost()
    named = report.images + sum(lost.values())
    if not named or sum(lost.values()) <= max_share * named:
        return
    for shard in report.shards:
        Path(shard).unlink(missing_ok=True)
    reasons = ", ".join(f"{k}={v}" for k, v in sorted(lost.items()))
    raise ImageLossError(
        f"{sum(lost.values())} of the {named} images the input names were left out ({reasons}), more than "
        f"--max-dropped-images {max_share:g}; the {len(report.shards)} shard(s) written were removed. Check "
        f"where the images are (relative paths are read from the image folder for COCO, from each input "
        f"file's folder or --image-root for OBELICS rows; URLs must be fetched first, e.g. with img2dataset), "
        f"or allow it with --max-dropped-images 1")
