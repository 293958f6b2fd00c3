"""Which shape of a corner scene a synth_corner answer names.

Each quarter of a corner scene holds two small shapes of different colours: one in the corner cell of a
4 x 4 grid, one in the cell beside it towards the center (`scene.py`). A model that finds the named
quarter but cannot tell its cells apart (the mechanism's prediction for 2 x 2 image tokens) answers the
corner's colour and its neighbour's about equally often; one that reads the cell answers the corner's.
VQA accuracy counts only the first; `answer_kind` tells the failures apart, and `answer_shares` gives the
share of each kind over a run's predictions, the figures docs/ablations/README.md quotes.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable

from mm1.data.synth import grammar as g
from mm1.data.synth.scene import Scene

KINDS = ("corner", "neighbour", "other quarter", "not in the scene", "not a colour")


def named_quarter(question: str) -> str:
    """The quarter a corner question names ("... in the top left corner?" -> "top left")."""
    for quarter in g.CORNERS:
        if g.corner_slot(quarter) in question:
            return quarter
    raise ValueError(f"not a corner question (names none of {', '.join(g.CORNER_SLOTS)}): {question!r}")


def answer_kind(scene: Scene, question: str, prediction: str) -> str:
    """One of KINDS: the colour the prediction names (its first colour word), looked up in the scene."""
    colour = next((w for w in prediction.lower().split() if w in g.COLOURS), None)
    if colour is None:
        return "not a colour"
    quarter = named_quarter(question)
    by_slot = {o.position: o.colour for o in scene.objects}
    if colour == by_slot.get(g.corner_slot(quarter)):
        return "corner"
    if colour == by_slot.get(g.inner_slot(quarter)):
        return "neighbour"
    return "other quarter" if colour in by_slot.values() else "not in the scene"


def answer_shares(predictions: Iterable[dict], scenes: dict[str, Scene]) -> dict[str, float]:
    """Share (0-1) of each of KINDS over synth_corner predictions (rows of predictions.jsonl: "image_id",
    "question", "prediction"), with "n", the number of rows."""
    counts = Counter(answer_kind(scenes[str(p["image_id"])], p["question"], p["prediction"]) for p in predictions)
    n = sum(counts.values())
    if n == 0:
        raise ValueError("no synth_corner predictions to count")
    return {**{k: counts[k] / n for k in KINDS}, "n": n}
