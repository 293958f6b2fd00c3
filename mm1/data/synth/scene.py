"""Scene ground truth: which shapes sit where, the background and the small label.

Layout lives on a 64 x 64 grid (`GRID`), whatever the rendered size: five
slots (center, left, right, top, bottom) hold at most one shape each, and the
label, when there is one, sits in one of the four free corners. The renderer
scales the grid to the image size.

A *corner scene* (a share `data.synth.corner_scenes` of the scenes, 0 by
default) holds small shapes only, in pairs on a 4 x 4 grid of `CELL`-unit
cells: in each of 1-4 quarters of the image, one in the corner cell and one of
another colour in the cell between that corner and the center. The label, when
there is one, sits in a quarter without shapes.

A *striped scene* (a share `data.synth.striped_scenes` of the five-slot scenes,
0 by default) lies on the gray background, and its large shapes are drawn in
stripes one grid unit wide, alternately their colour and its complement about
the gray (`render.py`): the two average to the background, so the shape is
there at 64 px and gone at 32. Captions and questions name it as any shape.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from typing import Optional

from mm1.data.synth import grammar as g

GRID = 64
CELL = 16  # a corner scene's cells: 4 x 4, so that 16 image tokens give each cell one and 4 give a quarter one


def _cell_centre(quarter: str, inner: bool) -> tuple[int, int]:
    """Centre of a quarter's corner cell, or of its inner cell (the one between the corner and the center)."""
    col = (1 if inner else 0) if "left" in quarter else (2 if inner else 3)
    row = (1 if inner else 0) if "top" in quarter else (2 if inner else 3)
    return col * CELL + CELL // 2, row * CELL + CELL // 2


SLOT_CENTRES = {"center": (32, 32), "left": (11, 32), "right": (53, 32), "top": (32, 11), "bottom": (32, 53),
                **{g.corner_slot(c): _cell_centre(c, False) for c in g.CORNERS},
                **{g.inner_slot(c): _cell_centre(c, True) for c in g.CORNERS}}
RADIUS = {"small": 4, "large": 9}  # a small shape is 8 px wide at 64 px: its shape is a detail
JITTER = {"small": 4, "large": 1}  # max offset from the slot centre, in grid units
CORNER_JITTER = 2  # in a corner scene: a small shape (radius 4) stays inside its 16-unit cell
CHAR_W, TEXT_H, LABEL_PAD = 6, 9, 1  # bitmap font: 6 px per character, 9 rows of ink
CORNER_CELL = 21  # the corner squares no shape reaches (slots + radius + jitter stay outside)
OBJECT_COUNT_WEIGHTS = {1: 3.0, 2: 3.0, 3: 2.5, 4: 1.5}
REPEAT_KIND_PROB = 0.45  # chance that a further object repeats an earlier kind (makes counts > 1)
NOISE_LEVELS = (0, 0, 0, 4, 8, 12)  # +- amplitude of the background noise, 0 = plain


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    position: str
    dx: int = 0  # jitter from the slot centre, grid units
    dy: int = 0
    striped: bool = False  # drawn in fine stripes that average to a gray background (a striped scene's large shapes)

    @property
    def centre(self) -> tuple[int, int]:
        x, y = SLOT_CENTRES[self.position]
        return x + self.dx, y + self.dy

    @property
    def radius(self) -> int:
        return RADIUS[self.size]


def label_size(text: str) -> tuple[int, int]:
    """(width, height) of a label box on the grid."""
    return CHAR_W * len(text) + 2 * LABEL_PAD, TEXT_H + 2 * LABEL_PAD


@dataclass(frozen=True)
class Label:
    text: str
    corner: str
    dx: int = 0  # offset from the image corner towards the centre, grid units (0 .. CORNER_CELL - size)
    dy: int = 0

    @property
    def kind(self) -> str:
        return "number" if self.text.isdigit() else "word"

    def box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the white label box on the grid, x1/y1 exclusive."""
        w, h = label_size(self.text)
        x0 = self.dx if "left" in self.corner else GRID - self.dx - w
        y0 = self.dy if "top" in self.corner else GRID - self.dy - h
        return x0, y0, x0 + w, y0 + h


@dataclass(frozen=True)
class Scene:
    objects: tuple[Obj, ...]
    background: str
    label: Optional[Label] = None
    noise: int = 0  # noise amplitude (0 = plain background)
    noise_seed: int = 0

    def find(self, shape=None, colour=None, size=None) -> list[Obj]:
        return [o for o in self.objects
                if shape in (None, o.shape) and colour in (None, o.colour) and size in (None, o.size)]

    def count(self, shape=None, colour=None, size=None) -> int:
        return len(self.find(shape, colour, size))

    def groups(self) -> list[list[Obj]]:
        """Objects grouped by kind (shape, colour, size), in order of first appearance."""
        out: dict[tuple, list[Obj]] = {}
        for o in self.objects:
            out.setdefault((o.shape, o.colour, o.size), []).append(o)
        return list(out.values())

    def key(self) -> str:
        """Semantic identity (what a caption or question can tell apart); ignores offsets and noise."""
        objs = sorted((o.shape, o.colour, o.size, o.position) for o in self.objects)
        label = [self.label.text, self.label.corner] if self.label else None
        return json.dumps([objs, self.background, label])

    def to_dict(self) -> dict:
        objects = [{"shape": o.shape, "colour": o.colour, "size": o.size, "position": o.position, "dx": o.dx,
                    "dy": o.dy, **({"striped": True} if o.striped else {})} for o in self.objects]
        label = None
        if self.label is not None:
            label = {"text": self.label.text, "corner": self.label.corner, "dx": self.label.dx, "dy": self.label.dy}
        return {"objects": objects, "background": self.background, "label": label, "noise": self.noise,
                "noise_seed": self.noise_seed}


def scene_from_dict(d: dict) -> Scene:
    """Inverse of `Scene.to_dict` (extra keys such as "label_box" are ignored)."""
    lab = d.get("label")
    label = Label(lab["text"], lab["corner"], lab["dx"], lab["dy"]) if lab else None
    objects = tuple(Obj(o["shape"], o["colour"], o["size"], o["position"], o["dx"], o["dy"], o.get("striped", False))
                    for o in d["objects"])
    return Scene(objects, d["background"], label, d["noise"], d["noise_seed"])


def _sample_objects(rng: random.Random) -> tuple[Obj, ...]:
    n = rng.choices(list(OBJECT_COUNT_WEIGHTS), weights=list(OBJECT_COUNT_WEIGHTS.values()))[0]
    kinds: list[tuple[str, str, str]] = []
    objects = []
    for position in rng.sample(g.POSITIONS, n):
        if kinds and rng.random() < REPEAT_KIND_PROB:
            kind = rng.choice(kinds)
        else:
            taken = {(k[0], k[1]) for k in kinds}  # never two kinds that differ by size only
            while True:
                kind = (rng.choice(g.SHAPES), rng.choice(g.COLOURS), rng.choice(g.SIZES))
                if kind[:2] not in taken:
                    break
            kinds.append(kind)
        j = JITTER[kind[2]]
        objects.append(Obj(*kind, position, rng.randint(-j, j), rng.randint(-j, j)))
    return tuple(objects)


def _sample_corner_objects(rng: random.Random, quarters: list[str]) -> tuple[Obj, ...]:
    """In 1 to len(quarters) of the quarters, a small shape in the corner cell and a small shape of another
    colour in the inner cell: at 4 image tokens the two share a token, at 16 each has its own."""
    objects, j = [], CORNER_JITTER
    for quarter in rng.sample(quarters, rng.randint(1, len(quarters))):
        for slot, colour in zip((g.corner_slot(quarter), g.inner_slot(quarter)), rng.sample(g.COLOURS, 2)):
            objects.append(Obj(rng.choice(g.SHAPES), colour, "small", slot, rng.randint(-j, j), rng.randint(-j, j)))
    return tuple(objects)


def _sample_label(rng: random.Random) -> Label:
    text = rng.choice(g.LABEL_TEXTS)
    w, h = label_size(text)
    return Label(text, rng.choice(g.CORNERS), rng.randint(0, CORNER_CELL - w), rng.randint(0, CORNER_CELL - h))


def _sample_layout(rng: random.Random, label_prob: float, corner_prob: float):
    """(objects, label, corner): a corner scene with probability `corner_prob`, else a scene of the five slots.
    With corner_prob 0 no extra random number is drawn, so such scenes are the generator version 3's."""
    if corner_prob > 0 and rng.random() < corner_prob:
        label = _sample_label(rng) if rng.random() < label_prob else None
        quarters = [c for c in g.CORNERS if label is None or c != label.corner]
        return _sample_corner_objects(rng, quarters), label, True
    objects = _sample_objects(rng)
    return objects, _sample_label(rng) if rng.random() < label_prob else None, False


def _striped(objects: tuple[Obj, ...]) -> tuple[Obj, ...]:
    return tuple(replace(o, striped=True) if o.size == "large" else o for o in objects)


def sample_scene(rng: random.Random, label_prob: float = 0.5, exclude=frozenset(), corner_prob: float = 0.0,
                 striped_prob: float = 0.0) -> Scene:
    """A random scene whose `key()` is not in `exclude` (held-out scenes); a corner scene with probability
    `corner_prob`, else a striped scene with probability `striped_prob` (with 0, no extra random number is
    drawn: version 4's scenes)."""
    for _ in range(10_000):
        objects, label, corner = _sample_layout(rng, label_prob, corner_prob)
        striped = not corner and striped_prob > 0 and rng.random() < striped_prob
        background = "gray" if striped else rng.choice(g.BACKGROUNDS)
        scene = Scene(_striped(objects) if striped else objects, background, label, rng.choice(NOISE_LEVELS),
                      rng.getrandbits(32))
        if scene.key() not in exclude:
            return scene
    raise RuntimeError("could not sample a scene outside the excluded set; too many held-out scenes")
