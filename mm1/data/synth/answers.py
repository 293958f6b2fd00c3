"""Which shape of the scene a wrong answer names, for the tasks whose failures tell mechanisms apart.

- synth_corner: each quarter of a corner scene holds two small shapes of different colours, one in the
  corner cell of a 4 x 4 grid, one in the cell beside it towards the center (`scene.py`). A model that finds
  the named quarter but cannot tell its cells apart (the mechanism's prediction for 2 x 2 image tokens)
  answers the corner's colour and its neighbour's about equally often; one that reads the cell answers the
  corner's.
- synth_detail: the question asks the colour of the scene's one small shape. A model that cannot see it
  (at 32 px the background swamps it) answers a large shape's colour, or one no shape has; a model that has
  not learnt the answer's form answers no shape colour (a word of the question, "large", "small", a shape's
  name, or the background's colour: brown, black or gray are not shape colours).
- synth_stripes: the question names a striped shape by its form. A model that cannot see it (at 32 px its
  stripes average to the gray background) answers as if it were not there: a solid shape's colour, or one
  that no shape of the scene has; one that sees it answers its colour.

For each, an answer in a dialect's words (the renamed colours of the in-context mechanism, grammar.py) is
wrong for VQA accuracy, which wants plain words at 0 shots; its kind is "in a dialect", or, with
`dialects=True`, the kind of the plain colour it renames (does the model see the shape, whatever words it
answers in?). VQA accuracy counts only the right answer; `answer_kind` tells the failures apart, and
`answer_shares` gives the share of each kind over a run's predictions, the figures docs/ablations/README.md
quotes (tools/answer_kinds.py prints them).
"""
from __future__ import annotations

from collections import Counter
from typing import Callable, Iterable

from mm1.data.synth import grammar as g
from mm1.data.synth.scene import Obj, Scene


def named_quarter(question: str) -> str:
    """The quarter a corner question names ("... in the top left corner?" -> "top left")."""
    for quarter in g.CORNERS:
        if g.corner_slot(quarter) in question:
            return quarter
    raise ValueError(f"not a corner question (names none of {', '.join(g.CORNER_SLOTS)}): {question!r}")


def _corner_kind(scene: Scene, question: str, colour: str) -> str:
    quarter = named_quarter(question)
    by_slot = {o.position: o.colour for o in scene.objects}
    if colour == by_slot.get(g.corner_slot(quarter)):
        return "corner"
    if colour == by_slot.get(g.inner_slot(quarter)):
        return "neighbour"
    return "other quarter" if colour in by_slot.values() else "not in the scene"


def named_striped(scene: Scene, question: str) -> Obj:
    """The striped shape a stripes question names by its form (the scene's only shape of that form)."""
    words = set(question.lower().rstrip("?").split())
    named = [o for o in scene.objects if o.striped and o.shape in words]
    if len(named) != 1:
        raise ValueError(f"not a stripes question about this scene (names {len(named)} striped shapes): {question!r}")
    return named[0]


def _stripes_kind(scene: Scene, question: str, colour: str) -> str:
    if colour == named_striped(scene, question).colour:
        return "named shape"
    if any(o.striped and o.colour == colour for o in scene.objects):
        return "another striped shape"
    return "a solid shape" if any(o.colour == colour for o in scene.objects) else "not in the scene"


def _detail_kind(scene: Scene, question: str, colour: str) -> str:
    small = [o for o in scene.objects if o.size == "small"]
    if len(small) != 1:
        raise ValueError(f"not a detail scene (it has {len(small)} small shapes, the task asks about one)")
    if colour == small[0].colour:
        return "small shape"
    return "a large shape" if any(o.colour == colour for o in scene.objects) else "not in the scene"


# task -> (the kinds a colour answer can be, the right answer's first; the function that tells which one a
# colour is). An answer without a plain colour word is one of OTHER, which ends every task's kinds.
TASKS: dict[str, tuple[tuple[str, ...], Callable[[Scene, str, str], str]]] = {
    "synth_corner": (("corner", "neighbour", "other quarter", "not in the scene"), _corner_kind),
    "synth_detail": (("small shape", "a large shape", "not in the scene"), _detail_kind),
    "synth_stripes": (("named shape", "another striped shape", "a solid shape", "not in the scene"), _stripes_kind),
}
OTHER = ("in a dialect", "not a colour")
DIALECT_COLOURS = {word: plain for d in g.DIALECTS for plain, word in d.items() if plain in g.COLOURS}


def kinds(task: str) -> tuple[str, ...]:
    if task not in TASKS:
        raise ValueError(f"no answer kinds for task {task!r}; one of {', '.join(TASKS)}")
    return TASKS[task][0] + OTHER


def answer_kind(task: str, scene: Scene, question: str, prediction: str, dialects: bool = False) -> str:
    """One of kinds(task): the colour the prediction names (its first colour word, or with `dialects` also a
    dialect's colour word, read as the colour it renames), looked up in the scene."""
    kinds(task)
    words = prediction.lower().split()
    colour = next((w if w in g.COLOURS else DIALECT_COLOURS[w] for w in words
                   if w in g.COLOURS or (dialects and w in DIALECT_COLOURS)), None)
    if colour is not None:
        return TASKS[task][1](scene, question, colour)
    return "in a dialect" if any(w in DIALECT_COLOURS for w in words) else "not a colour"


def answer_shares(task: str, predictions: Iterable[dict], scenes: dict[str, Scene],
                  dialects: bool = False) -> dict[str, float]:
    """Share (0-1) of each of kinds(task) over the task's predictions (rows of predictions.jsonl: "image_id",
    "question", "prediction"), with "n", the number of rows."""
    counts = Counter(answer_kind(task, scenes[str(p["image_id"])], p["question"], p["prediction"], dialects)
                     for p in predictions)
    n = sum(counts.values())
    if n == 0:
        raise ValueError(f"no {task} predictions to count")
    return {**{k: counts[k] / n for k in kinds(task)}, "n": n}
