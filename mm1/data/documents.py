"""Raw webdataset samples -> documents: ordered text segments and images.

Shard formats (see docs/data.md):
- caption: `{key}.jpg|png|webp` + `{key}.txt` (+ `{key}.json`), as img2dataset writes them;
- interleaved: `{key}.json` = {"texts": [...], "images": [...]} parallel lists (OBELICS style);
  an image entry names a member of the sample, e.g. "0.png" for `{key}.0.png`;
- text: `{key}.txt`.
A sample that cannot be used is skipped and counted by reason, never raised.
"""
from __future__ import annotations

import io
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Union

from PIL import Image

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp")
MIN_IMAGE_SIDE = 8
MAX_IMAGE_PIXELS = 64_000_000

Segment = Union[str, Image.Image]


@dataclass
class Document:
    source: str
    segments: list[Segment]
    key: str = ""
    origin: dict = field(default_factory=dict)  # the reader position it was read at (set by the loader)

    @property
    def num_images(self) -> int:
        return sum(isinstance(s, Image.Image) for s in self.segments)


def decode_image(data: bytes, skips: Counter) -> Optional[Image.Image]:
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                skips["huge_image"] += 1
                return None
            img = img.convert("RGB")
    except Exception:  # PIL raises many types for damaged bytes
        skips["bad_image"] += 1
        return None
    if min(img.size) < MIN_IMAGE_SIDE:
        skips["tiny_image"] += 1
        return None
    return img


def decode_text(data: Optional[bytes], skips: Counter) -> Optional[str]:
    if data is None:
        skips["missing_key"] += 1
        return None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        skips["bad_text"] += 1
        return None
    if not text:
        skips["empty_text"] += 1
        return None
    return text


def caption_document(sample: dict, source: str, skips: Counter) -> Optional[Document]:
    ext = next((e for e in IMAGE_EXTS if e in sample), None)
    if ext is None:
        skips["missing_key"] += 1
        return None
    text = decode_text(sample.get("txt"), skips)
    if text is None:
        return None
    image = decode_image(sample[ext], skips)
    return None if image is None else Document(source, [image, text], sample["__key__"])


def text_document(sample: dict, source: str, skips: Counter) -> Optional[Document]:
    text = decode_text(sample.get("txt"), skips)
    return None if text is None else Document(source, [text], sample["__key__"])


def interleaved_document(sample: dict, source: str, skips: Counter) -> Optional[Document]:
    try:
        meta = json.loads(sample["json"])
        texts, images = meta["texts"], meta["images"]
        assert isinstance(texts, list) and isinstance(images, list) and len(texts) == len(images)
    except (KeyError, ValueError, AssertionError, TypeError, RecursionError):  # nested too deep: RecursionError
        skips["bad_document"] += 1
        return None
    segments: list[Segment] = []
    for text, image_name in zip(texts, images):
        if image_name is not None:
            image = decode_image(sample.get(str(image_name), b""), skips)
            if image is not None:  # a bad image is dropped, the rest of the document kept
                segments.append(image)
        elif isinstance(text, str) and text.strip():
            segments.append(text.strip())
    if not segments:
        skips["empty_document"] += 1
        return None
    return Document(source, segments, sample["__key__"])


DECODERS = {"caption": caption_document, "interleaved": interleaved_document, "text": text_document}
