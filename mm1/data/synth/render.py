"""Draw a `Scene` as an RGB image with PIL.

The scene is drawn on a canvas of max(image_size, 64) px (the 64-unit layout
grid scaled up), then box-downsampled when image_size < 64. The label text uses
PIL's built-in bitmap font (6 x 11 px cells, no download), strokes thinned to
1 px, at an integer scale of canvas // 64: legible at 64 px, a gray smear
after a downsample to 32 px. That is the "fine detail" of the corpus. A
striped shape (`Obj.striped`, on the gray background) alternates rows one grid
unit high of its colour and of its complement about the gray (2 x gray -
colour), which average to the background: at 128 px the stripes are 2 px, so
the loader's bicubic resize keeps them at 64 px and averages them away at 32,
where the shape is gone.
"""
from __future__ import annotations

import io
import math
import threading
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mm1.data.synth.scene import CHAR_W, GRID, LABEL_PAD, TEXT_H, Label, Obj, Scene

RGB = {
    "red": (220, 40, 40),
    "green": (40, 175, 60),
    "blue": (50, 100, 235),
    "yellow": (240, 220, 40),
    "purple": (155, 60, 205),
    "orange": (250, 145, 25),
    "white": (245, 245, 245),
}
BACKGROUND_RGB = {"gray": (125, 125, 125), "black": (20, 20, 20), "brown": (105, 72, 45)}
FONT_INK_TOP = 2  # first row of ink in the bitmap font's 11-row cell
_FONT_LOCK = threading.Lock()  # the corpus may be written from several threads


@lru_cache(maxsize=1)
def _font():
    # Pillow >= 10.1: load_default() returns a FreeType font; the bitmap one has its own loader.
    loader = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)
    return loader()


def _polygon(obj: Obj, s: float) -> list[tuple[float, float]] | None:
    """Vertices of the shape on a canvas scaled by s; None for a circle."""
    cx, cy = (c * s for c in obj.centre)
    r = obj.radius * s
    if obj.shape == "square":
        a = 0.85 * r
        return [(cx - a, cy - a), (cx + a, cy - a), (cx + a, cy + a), (cx - a, cy + a)]
    if obj.shape == "triangle":
        return [(cx, cy - r), (cx + 0.95 * r, cy + 0.8 * r), (cx - 0.95 * r, cy + 0.8 * r)]
    if obj.shape == "star":
        pts = []
        for i in range(10):
            rad = r if i % 2 == 0 else 0.45 * r
            ang = -math.pi / 2 + i * math.pi / 5
            pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
        return pts
    if obj.shape == "cross":
        a, b = r, 0.35 * r
        return [(cx - b, cy - a), (cx + b, cy - a), (cx + b, cy - b), (cx + a, cy - b), (cx + a, cy + b),
                (cx + b, cy + b), (cx + b, cy + a), (cx - b, cy + a), (cx - b, cy + b), (cx - a, cy + b),
                (cx - a, cy - b), (cx - b, cy - b)]
    return None


def _draw_object(draw: ImageDraw.ImageDraw, obj: Obj, s: float, fill=None) -> None:
    fill = RGB[obj.colour] if fill is None else fill
    pts = _polygon(obj, s)
    if pts is None:
        cx, cy = (c * s for c in obj.centre)
        r = obj.radius * s
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(pts, fill=fill)


def stripe_colours(colour: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A striped shape's two colours: its own and its complement about the gray background (their mean)."""
    gray = BACKGROUND_RGB["gray"]
    return RGB[colour], tuple(2 * g - c for g, c in zip(gray, RGB[colour]))


def _draw_striped(img: Image.Image, obj: Obj, s: float) -> None:
    """The shape in rows one grid unit (s px) high, alternately its colour and its complement."""
    mask = Image.new("L", img.size, 0)
    _draw_object(ImageDraw.Draw(mask), obj, s, fill=255)
    own, complement = stripe_colours(obj.colour)
    odd = (np.floor(np.arange(img.height) / s).astype(np.int64) % 2 == 1)[:, None, None]
    stripes = np.where(odd, np.array(complement, np.uint8), np.array(own, np.uint8))
    img.paste(Image.fromarray(np.broadcast_to(stripes, (img.height, img.width, 3)).copy()), (0, 0), mask)


@lru_cache(maxsize=None)
def _glyphs(text: str) -> Image.Image:
    """The text's ink as an "L" mask, TEXT_H rows high, strokes thinned to 1 px.

    The bitmap font draws vertical strokes 2 px wide; dropping the last pixel
    of every horizontal run leaves 1-px strokes (horizontal bars keep their
    length), which a 2x downsample turns into a faint gray smear. Cached:
    callers must not modify the returned image.
    """
    w = CHAR_W * len(text)
    mask = Image.new("L", (w, 11), 0)
    with _FONT_LOCK:
        ImageDraw.Draw(mask).text((0, 0), text, font=_font(), fill=255)
    ink = np.asarray(mask)[FONT_INK_TOP:FONT_INK_TOP + TEXT_H] > 0
    prev = np.zeros_like(ink)
    prev[:, 1:] = ink[:, :-1]
    nxt = np.zeros_like(ink)
    nxt[:, :-1] = ink[:, 1:]
    thin = ink & ~(prev & ~nxt)
    return Image.fromarray((thin * 255).astype(np.uint8), mode="L")


def _draw_label(img: Image.Image, label: Label, s: float, k: int) -> None:
    x0, y0, x1, y1 = (round(v * s) for v in label.box())
    ImageDraw.Draw(img).rectangle([x0, y0, x1 - 1, y1 - 1], fill=(255, 255, 255))
    mask = _glyphs(label.text)
    mask = mask.resize((mask.width * k, mask.height * k), Image.NEAREST)
    img.paste((0, 0, 0), (x0 + LABEL_PAD * k, y0 + LABEL_PAD * k), mask)


def _add_noise(img: Image.Image, amplitude: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.asarray(img, dtype=np.int16)
    noise = rng.integers(-amplitude, amplitude + 1, size=arr.shape[:2], dtype=np.int16)
    return Image.fromarray(np.clip(arr + noise[..., None], 0, 255).astype(np.uint8))


def render(scene: Scene, image_size: int) -> Image.Image:
    """The scene as an RGB image of image_size x image_size px."""
    canvas = max(image_size, GRID)
    s, k = canvas / GRID, max(1, canvas // GRID)
    img = Image.new("RGB", (canvas, canvas), BACKGROUND_RGB[scene.background])
    draw = ImageDraw.Draw(img)
    for obj in scene.objects:
        if obj.striped:
            _draw_striped(img, obj, s)
        else:
            _draw_object(draw, obj, s)
    if scene.label is not None:
        _draw_label(img, scene.label, s, k)
    if scene.noise:
        img = _add_noise(img, scene.noise, scene.noise_seed)
    if canvas != image_size:
        img = img.resize((image_size, image_size), Image.BOX)
    return img


def label_box(scene: Scene, image_size: int) -> list[int] | None:
    """The label's box in pixels of the rendered image [x0, y0, x1, y1) (None without a label)."""
    if scene.label is None:
        return None
    s = image_size / GRID
    return [round(v * s) for v in scene.label.box()]


def png_bytes(img: Image.Image) -> bytes:
    """PNG encoding (deterministic: PIL writes no timestamps). Level 3 is faster and smaller than 6 here."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()
