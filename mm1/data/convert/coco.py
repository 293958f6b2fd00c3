"""COCO-captions style annotations + an image folder -> caption shards (img2dataset layout).

Source: a JSON file {"images": [{"id", "file_name", ...}], "annotations":
[{"image_id", "caption", "id"}, ...]} and the folder holding the `file_name`s.
Each sample is `KEY.jpg|png|webp` + `KEY.txt` (the caption) + `KEY.json`
(image id, annotation id, file name, caption, width, height).

`per_image=False` (default) writes one sample per (image, caption) pair, as
img2dataset-style data has; `per_image=True` writes one sample per image with
its first caption in annotation order. Left out and counted: annotations of an
unknown image (`unknown_image`), captions that are no UTF-8 string (`bad_caption`)
or only whitespace (`empty_caption`), images missing from the folder
(`missing_image`), images the reader would skip (`bad_image`, `tiny_image`,
`huge_image`), and with `per_image` images with no caption (`no_caption`).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mm1.data.convert.images import ShardImage, shard_image, under_root
from mm1.data.convert.writer import Members, Report, ShardOptions, is_utf8_text, write_converted


@dataclass(frozen=True)
class Pair:
    image: dict  # the COCO image record
    annotation: dict  # the COCO annotation record


def load_annotations(path: str | Path) -> tuple[list[dict], list[dict]]:
    """The `images` and `annotations` lists of a COCO captions file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COCO captions file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError) as err:  # RecursionError: nested too deep
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    for key in ("images", "annotations"):
        if not isinstance(data, dict) or not isinstance(data.get(key), list):
            raise ValueError(f"{path} has no {key!r} list: not a COCO captions file")
    for i, image in enumerate(data["images"]):
        if not (isinstance(image, dict) and isinstance(image.get("id"), (int, str)) and "file_name" in image):
            raise ValueError(f"{path}: images[{i}] lacks an 'id' (a number or string) or a 'file_name'")
    return data["images"], data["annotations"]


def caption_pairs(images: list[dict], annotations: list[dict], per_image: bool, skipped: Counter) -> list[Pair]:
    """(image, caption) pairs in annotation order; with `per_image`, each image's first caption only."""
    by_id = {image["id"]: image for image in images}
    pairs, taken = [], set()
    for ann in annotations:
        image_id = ann.get("image_id") if isinstance(ann, dict) else None
        image = by_id.get(image_id) if isinstance(image_id, (int, str)) else None
        if image is None:
            skipped["unknown_image"] += 1
        elif not is_utf8_text(ann.get("caption")):
            skipped["bad_caption"] += 1
        elif not ann["caption"].strip():
            skipped["empty_caption"] += 1
        elif not (per_image and image["id"] in taken):
            pairs.append(Pair(image, ann))
            taken.add(image["id"])
    if per_image:
        skipped["no_caption"] += sum(image["id"] not in taken for image in images)
    return pairs


class _ImageCache:
    """Decodes each image file once: later captions of a good image re-read its bytes only."""

    def __init__(self, image_dir: Path):
        self.image_dir = image_dir
        self.known: dict = {}  # image id -> reason it is left out, or (ext, width, height) of bytes kept as is

    def get(self, image: dict) -> ShardImage | str:
        path = under_root(self.image_dir, str(image["file_name"]))
        if path is None:
            return "image_outside_root"
        known = self.known.get(image["id"])
        if isinstance(known, tuple):
            return ShardImage(known[0], path.read_bytes(), known[1], known[2])
        if known is not None:
            return known
        if not path.is_file():
            self.known[image["id"]] = "missing_image"
            return "missing_image"
        data, reasons = path.read_bytes(), Counter()
        checked = shard_image(data, reasons)
        if checked is None:
            self.known[image["id"]] = next(iter(reasons))
            return self.known[image["id"]]
        if checked.data is data:  # re-encoded images (GIF, BMP, ...) are decoded again each time
            self.known[image["id"]] = (checked.ext, checked.width, checked.height)
        return checked


def pair_sample(pair: Pair, images: _ImageCache, report: Report) -> Members | None:
    image = images.get(pair.image)
    if isinstance(image, str):
        report.skipped[image] += 1
        return None
    caption = pair.annotation["caption"].strip()
    meta = {"image_id": pair.image["id"], "annotation_id": pair.annotation.get("id"),
            "file_name": pair.image["file_name"], "caption": caption, "width": image.width, "height": image.height}
    report.images += 1
    return {image.ext: image.data, "txt": caption.encode("utf-8"), "json": json.dumps(meta).encode("utf-8")}


def convert_coco(captions_json: str | Path, image_dir: str | Path, options: ShardOptions,
                 per_image: bool = False) -> Report:
    """Write caption shards for a COCO captions file and its image folder; see the module doc."""
    image_dir = Path(image_dir)
    images, annotations = load_annotations(captions_json)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"COCO image folder not found: {image_dir}")
    skipped: Counter = Counter()
    pairs = caption_pairs(images, annotations, per_image, skipped)
    cache = _ImageCache(image_dir)
    report = write_converted(pairs, lambda pair, rep: pair_sample(pair, cache, rep), options)
    report.skipped.update(skipped)
    return report
