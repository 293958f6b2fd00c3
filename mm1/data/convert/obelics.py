"""OBELICS-style rows (parquet or JSON lines) -> interleaved shards.

A row has parallel lists `texts` and `images` of equal length; at each position
one of the two is null. An image entry is one of:
- a dict {"bytes": ..., "path": ...}, as Hugging Face datasets store images in parquet
  (the bytes are used when present, else the path);
- raw bytes;
- a string: a `data:image/...;base64,` URI, a local file path (relative paths are
  taken from `image_root`, by default the folder of the row's file), or base64 bytes.
URLs are not downloaded (fetch them first, e.g. with img2dataset): they are
dropped as `url_image`. Each sample is `KEY.json` {"texts", "images", "source"}
with images named `"{j}.{ext}"` for the members `KEY.{j}.{ext}`.

Dropped images (counted in `dropped_images`): `url_image`, `missing_image`,
`bad_image`, `tiny_image`, `huge_image`; the rest of the document is kept. Skipped
rows (counted in `skipped`): `bad_row` (not an object, lists missing or of unequal
length, a position with both, a text that is no UTF-8 string), `no_text` (no non-empty text).
"""
from __future__ import annotations

import base64
import binascii
import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from mm1.data.convert.images import ShardImage, shard_image, under_root
from mm1.data.convert.writer import Members, Report, ShardOptions, is_utf8_text, write_converted

PARQUET_EXTS = (".parquet",)
JSONL_EXTS = (".jsonl", ".json", ".ndjson")
MIN_BASE64_CHARS = 64  # a shorter string that is no file is taken for a missing path, not for image bytes
Row = tuple[str, int, object, Path]  # (file name, row index, row, image root)


def _parquet_file(path: Path):
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError(f"reading {path} needs pyarrow: pip install pyarrow") from None
    try:
        parquet = pq.ParquetFile(path)
    except pyarrow.ArrowException as err:
        raise ValueError(f"{path} is not a readable parquet file: {err}") from None
    missing = [c for c in ("texts", "images") if c not in parquet.schema_arrow.names]
    if missing:
        raise ValueError(f"{path} lacks column(s) {missing}; it has {parquet.schema_arrow.names}")
    return parquet


def _parquet_rows(path: Path) -> Iterator[object]:
    for batch in _parquet_file(path).iter_batches(batch_size=64, columns=["texts", "images"]):
        yield from batch.to_pylist()


def _jsonl_rows(path: Path) -> Iterator[object]:
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                try:
                    yield json.loads(line)
                except (ValueError, RecursionError):  # also UnicodeDecodeError; nested too deep
                    yield None  # counted as bad_row


def read_rows(paths: list[str | Path], image_root: str | Path | None = None) -> Iterator[Row]:
    """Rows of every file in order, each with where it came from and where its relative image paths live."""
    for path in map(Path, paths):
        root = Path(image_root) if image_root is not None else path.parent
        reader = _parquet_rows if path.name.endswith(PARQUET_EXTS) else _jsonl_rows
        for i, row in enumerate(reader(path)):
            yield path.name, i, row, root


def check_inputs(paths: list[str | Path]) -> None:
    """Every input exists and has a known format (parquet files: the needed columns)."""
    if not paths:
        raise ValueError("no input files given")
    for path in map(str, paths):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input file not found: {path}")
        if not path.endswith(PARQUET_EXTS + JSONL_EXTS):
            raise ValueError(f"{path}: unknown format; expected one of {', '.join(PARQUET_EXTS + JSONL_EXTS)}")
        if path.endswith(PARQUET_EXTS):
            _parquet_file(Path(path))  # schema errors before any shard is written


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a long base64 string is no valid file name
        return False


def _string_image(entry: str, root: Path) -> bytes | str:
    """Bytes of an image given as a string, or the reason it is dropped."""
    if entry.startswith(("http://", "https://")):
        return "url_image"
    if entry.startswith("data:") and ";base64," in entry:
        entry = entry.split(";base64,", 1)[1]
    elif _is_file(root / entry):
        path = under_root(root, entry)
        return path.read_bytes() if path is not None else "image_outside_root"
    elif len(entry) < MIN_BASE64_CHARS:
        return "missing_image"
    try:
        return base64.b64decode("".join(entry.split()), validate=True)
    except (binascii.Error, ValueError):
        return "missing_image"


def image_bytes(entry: object, root: Path) -> bytes | str:
    """Bytes of one `images` entry, or the reason it is dropped."""
    if isinstance(entry, dict):
        data, path = entry.get("bytes"), entry.get("path")
        entry = data if data else path
    if isinstance(entry, (bytes, bytearray)):
        return bytes(entry)
    if isinstance(entry, str) and entry:
        return _string_image(entry, root)
    return "missing_image"


def _load_image(entry: object, root: Path, dropped: Counter) -> ShardImage | None:
    data = image_bytes(entry, root)
    if isinstance(data, str):
        dropped[data] += 1
        return None
    return shard_image(data, dropped)


def _well_formed(texts: object, images: object) -> bool:
    """Parallel lists of equal length; at each position a null text or a null image; texts UTF-8 strings."""
    if not (isinstance(texts, list) and isinstance(images, list) and len(texts) == len(images)):
        return False
    return all(t is None or (i is None and is_utf8_text(t)) for t, i in zip(texts, images))


def document_sample(row: Row, report: Report) -> Members | None:
    name, index, data, root = row
    texts, images = (data.get("texts"), data.get("images")) if isinstance(data, dict) else (None, None)
    if not _well_formed(texts, images):
        report.skipped["bad_row"] += 1
        return None
    if not any(isinstance(t, str) and t.strip() for t in texts):
        report.skipped["no_text"] += 1
        return None
    members: Members = {}
    out_texts, out_images = [], []
    for text, entry in zip(texts, images):
        if text is not None:
            out_texts.append(text)
            out_images.append(None)
        elif entry is not None and (image := _load_image(entry, root, report.dropped_images)) is not None:
            member = f"{len(members)}.{image.ext}"
            members[member] = image.data
            out_texts.append(None)
            out_images.append(member)
    report.images += len(members)
    doc = {"texts": out_texts, "images": out_images, "source": {"file": name, "row": index}}
    members["json"] = json.dumps(doc, ensure_ascii=False).encode("utf-8")
    return members


def convert_obelics(paths: list[str | Path], options: ShardOptions, image_root: str | Path | None = None) -> Report:
    """Write interleaved shards for OBELICS-style parquet / JSON-lines files; see the module doc."""
    check_inputs(paths)
    if image_root is not None and not Path(image_root).is_dir():
        raise FileNotFoundError(f"image root folder not found: {image_root}")
    return write_converted(read_rows(paths, image_root), document_sample, options)
