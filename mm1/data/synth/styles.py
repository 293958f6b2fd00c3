"""Caption styles of gallery documents: the caption pairs' own ("plain") and three house styles.

A gallery (documents.gallery) captions each of its pictures in one style, kept through the document;
the four are equally common. The house styles use only words the corpus already has:
  tally      "2 red circles, 1 blue star."              each kind of shape with its count;
  inventory  "colour: red, blue. shape: circle, star."  the colours, then the shapes;
  places     "red circle on the left, blue star in the center."  each shape with its place.
Nothing in a picture tells which style a caption is in, only the captions already given in the
document: the few-shot captioning mechanism. synth_caption_style's references are in EVAL_STYLE
(docs/benchmark.md), as synth_dialect's answers are in one dialect.
"""
from __future__ import annotations

import random
import re

from mm1.data.synth import grammar as g
from mm1.data.synth.describe import caption
from mm1.data.synth.scene import Scene

STYLES = ("plain", "tally", "inventory", "places")
EVAL_STYLE = "tally"


def _one_of(words) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + ")"


def _items(item: str) -> str:
    return f"{item}(?: , {item})*"


_COLOUR, _SHAPE = _one_of(g.COLOURS), _one_of(g.SHAPES)
_FORMS = {  # each house style over the caption's pieces joined by single spaces ("2 red circles , 1 blue star .")
    "tally": re.compile(_items(rf"\d+ {_COLOUR} {_one_of(g.SHAPES + tuple(g.PLURALS.values()))}") + r" \."),
    "inventory": re.compile(rf"colour : {_items(_COLOUR)} \. shape : {_items(_SHAPE)} \."),
    "places": re.compile(_items(rf"{_COLOUR} {_SHAPE} {_one_of(g.POSITION_PHRASES.values())}") + r" \."),
}


def _kinds(scene: Scene) -> list[tuple[str, str, int]]:
    """(colour, shape, count) of each kind of shape (sizes merged), in order of first appearance."""
    counts: dict[tuple[str, str], int] = {}
    for o in scene.objects:
        counts[(o.colour, o.shape)] = counts.get((o.colour, o.shape), 0) + 1
    return [(colour, shape, n) for (colour, shape), n in counts.items()]


def _shuffled(items: list, rng: random.Random) -> list:
    items = list(items)
    rng.shuffle(items)
    return items


def tally(scene: Scene, rng: random.Random) -> str:
    items = [g.STYLE_TALLY_ITEM.format(count=g.DIGITS[n], colour=colour, noun=g.PLURALS[shape] if n > 1 else shape)
             for colour, shape, n in _shuffled(_kinds(scene), rng)]
    return ", ".join(items) + "."


def inventory(scene: Scene, rng: random.Random) -> str:
    colours = _shuffled(sorted({o.colour for o in scene.objects}), rng)
    shapes = _shuffled(sorted({o.shape for o in scene.objects}), rng)
    return g.STYLE_INVENTORY.format(colours=", ".join(colours), shapes=", ".join(shapes))


def places(scene: Scene, rng: random.Random) -> str:
    items = [g.STYLE_PLACES_ITEM.format(colour=o.colour, shape=o.shape, place=g.POSITION_PHRASES[o.position])
             for o in _shuffled(scene.objects, rng)]
    return ", ".join(items) + "."


WRITERS = {"plain": caption, "tally": tally, "inventory": inventory, "places": places}


def style_of(caption: str) -> str:
    """The house style `caption` is written in, by its form alone ("tally", "inventory" or "places"), else
    "plain" (the caption pairs' own, or anything else). Spacing around punctuation does not matter."""
    pieces = " ".join(g.pretokenize(caption.lower()))
    return next((name for name, form in _FORMS.items() if form.fullmatch(pieces)), "plain")


def styled_caption(scene: Scene, style: str, rng: random.Random) -> str:
    """One caption of `scene` in `style` (one of STYLES), in a random order of its parts."""
    return WRITERS[style](scene, rng)


def style_references(scene: Scene, style: str, rng: random.Random, n: int = 5) -> list[str]:
    """n references in `style`: the distinct orders of its parts (up to n), repeated in turn when a scene
    has fewer (a tally of one kind has one)."""
    refs: list[str] = []
    for _ in range(20 * n):
        text = styled_caption(scene, style, rng)
        if text not in refs:
            refs.append(text)
        if len(refs) == n:
            break
    return [refs[i % len(refs)] for i in range(n)]
