"""Source image bytes -> an image member fit for a shard, or a reason to leave it out.

JPEG, PNG and WebP bytes are kept as they are (no re-encoding, no quality loss);
any other format PIL reads (GIF, BMP, TIFF, ...) is re-encoded as PNG, since
mm1's reader takes only jpg/jpeg/png/webp members. Images the reader would skip
(undecodable, tiny, huge; see mm1.data.documents) are left out here already.
"""
from __future__ import annotations

import io
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from mm1.data.documents import MAX_IMAGE_PIXELS, MIN_IMAGE_SIDE

KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass
class ShardImage:
    ext: str  # member extension: jpg, png or webp
    data: bytes
    width: int
    height: int


def under_root(root: Path, name: str) -> Path | None:
    """`root / name` if it names a file inside `root`; None for `../`, absolute paths and links that leave it."""
    try:
        base, path = root.resolve(), (root / name).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    return path if path.is_relative_to(base) and path != base else None


def _png_bytes(img: Image.Image) -> bytes:
    has_alpha = "A" in img.getbands() or "transparency" in img.info
    buf = io.BytesIO()
    img.convert("RGBA" if has_alpha else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def shard_image(data: bytes, dropped: Counter) -> ShardImage | None:
    """Check that `data` decodes to a usable image; None (counted in `dropped` by reason) when not."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    dropped["huge_image"] += 1
                    return None
                if min(width, height) < MIN_IMAGE_SIDE:
                    dropped["tiny_image"] += 1
                    return None
                img.load()  # decodes fully: truncated or corrupt data fails here
                ext = KEPT_FORMATS.get(img.format)
                if ext is None:
                    ext, data = "png", _png_bytes(img)
                return ShardImage(ext, data, width, height)
    except Image.DecompressionBombError:
        dropped["huge_image"] += 1
    except Exception:  # PIL raises many types for damaged bytes
        dropped["bad_image"] += 1
    return None
