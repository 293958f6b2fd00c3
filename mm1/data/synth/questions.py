"""Question/answer pairs about a scene, and simulated human answers for the VQA metric.

A `QA` knows its VQAv2 `question_type` (its opening words, e.g. "how many")
and `answer_type` ("yes/no", "number" or "other").
"""
from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

from mm1.data.synth import grammar as g
from mm1.data.synth.scene import Scene

# How often each kind of question is asked (kinds impossible for a scene are skipped).
QUESTION_WEIGHTS = {
    "colour": 3, "shape": 2, "detail": 2, "count_shape": 2, "count_colour": 1, "count_all": 1,
    "position": 2, "size": 1, "exists": 2, "background": 1,
}


@dataclass(frozen=True)
class QA:
    kind: str  # a key of grammar.QUESTIONS
    question: str
    answer: str
    question_type: str
    answer_type: str
    variant_kind: str  # a key of grammar.ANSWER_VARIANTS


# VQAv2-style question types: the question's opening words, longest match wins.
QUESTION_TYPES = (
    "how many", "what colour is the", "which colour is the", "what shape is the", "which shape is", "where is the",
    "what size is the", "is the", "is there a", "is there an", "are there any", "what does the", "what is written",
    "what word is", "what number is",
)


def question_type(question: str) -> str:
    matches = [t for t in QUESTION_TYPES if question.startswith(t + " ")]
    if not matches:
        raise ValueError(f"no question type for {question!r}; add its opening words to QUESTION_TYPES")
    return max(matches, key=len)


def _qa(kind, template, fields, answer, answer_type, variant_kind) -> QA:
    question = template.format(**fields)
    return QA(kind, question, answer, question_type(question), answer_type, variant_kind)


def _unique(scene: Scene, attr: str) -> list:
    """Objects whose value of attr ('shape', 'colour', ...) no other object shares."""
    counts = Counter(getattr(o, attr) for o in scene.objects)
    return [o for o in scene.objects if counts[getattr(o, attr)] == 1]


def _ask_colour(scene, rng, t):
    objs = _unique(scene, "shape")
    if objs:
        o = rng.choice(objs)
        return _qa("colour", t, {"shape": o.shape}, o.colour, "other", "colour")
    return None


def _ask_shape(scene, rng, t):
    objs = _unique(scene, "colour")
    if objs:
        o = rng.choice(objs)
        return _qa("shape", t, {"colour": o.colour}, o.shape, "other", "shape")
    return None


def _ask_detail(scene, rng, t):
    """The colour of the scene's one small object: a detail that fills most of a patch at 64 px and a
    quarter of one at 32 px, where the background swamps it."""
    small = [o for o in scene.objects if o.size == "small"]
    if len(small) == 1:
        return _qa("detail", t, {}, small[0].colour, "other", "colour")
    return None


def _ask_corner(scene, rng, t):
    """The colour of the small shape in one corner of a corner scene (`scene.py`): it shares its quarter
    with a small shape of another colour, so that at 4 image tokens (one per quarter) the two share a token
    and at 16 each has its own."""
    corners = [o for o in scene.objects if o.position in g.CORNER_SLOTS]
    if corners:
        o = rng.choice(corners)
        return _qa("corner", t, {"corner": o.position.removesuffix(" corner")}, o.colour, "other", "colour")
    return None


def _ask_count_shape(scene, rng, t):
    shape = rng.choice(g.SHAPES)
    return _qa("count_shape", t, {"plural": g.PLURALS[shape]}, str(scene.count(shape=shape)), "number", "number")


def _ask_count_colour(scene, rng, t):
    colour = rng.choice([o.colour for o in scene.objects] + list(g.COLOURS))
    return _qa("count_colour", t, {"colour": colour}, str(scene.count(colour=colour)), "number", "number")


def _ask_count_all(scene, rng, t):
    return _qa("count_all", t, {}, str(len(scene.objects)), "number", "number")


def _ask_attribute(kind):
    """Position or size of an object named by colour and shape (that pair must be unique)."""
    def ask_it(scene, rng, t):
        objs = [o for o in scene.objects if scene.count(o.shape, o.colour) == 1]
        if objs:
            o = rng.choice(objs)
            return _qa(kind, t, {"colour": o.colour, "shape": o.shape}, getattr(o, kind), "other", kind)
        return None
    return ask_it


def _ask_exists(scene, rng, t):
    if rng.random() < 0.5:  # about a present object
        o = rng.choice(scene.objects)
        shape, colour = o.shape, o.colour
    else:
        shape, colour = rng.choice(g.SHAPES), rng.choice(g.COLOURS)
    present = scene.count(shape, colour if "{colour}" in t else None) > 0
    fields = {"article": g.article(colour), "colour": colour, "shape": shape, "plural": g.PLURALS[shape]}
    return _qa("exists", t, fields, g.YES_NO[0] if present else g.YES_NO[1], "yes/no", "yes/no")


def _ask_background(scene, rng, t):
    return _qa("background", t, {}, scene.background, "other", "colour")


ASKERS = {
    "colour": _ask_colour, "shape": _ask_shape, "detail": _ask_detail, "count_shape": _ask_count_shape,
    "count_colour": _ask_count_colour, "count_all": _ask_count_all, "position": _ask_attribute("position"),
    "size": _ask_attribute("size"), "exists": _ask_exists, "background": _ask_background, "corner": _ask_corner,
}
def detail_kind(corner_prob: float) -> str:
    """What the weighted kind "detail" asks in a corpus whose share of corner scenes is `corner_prob`: "detail"
    (the lone small shape) or, with corner scenes, "corner" (the shape in a corner of a corner scene)."""
    return "corner" if corner_prob > 0 else "detail"


def ask(scene: Scene, rng: random.Random, kinds=None, detail: str = "detail") -> QA | None:
    """A random question about the scene's shapes, of one of `kinds` (default: all).

    Kinds are tried in a weighted random order; None when none of them fits the
    scene (e.g. "colour" needs a shape that occurs once). The kind "detail" asks
    the question of kind `detail` ("detail" or "corner", see `detail_kind`).
    """
    remaining = list(kinds or QUESTION_WEIGHTS)
    while remaining:
        kind = rng.choices(remaining, weights=[QUESTION_WEIGHTS[k] for k in remaining])[0]
        remaining.remove(kind)
        asked = detail if kind == "detail" else kind
        qa = ASKERS[asked](scene, rng, rng.choice(g.QUESTIONS[asked]))
        if qa is not None:
            return qa
    return None


def ask_detail(scene: Scene, rng: random.Random, detail: str = "detail") -> QA | None:
    """A detail question of kind `detail` ("detail" or "corner") about the scene, or None when it has none:
    "detail" needs exactly one small object, "corner" a corner scene."""
    return ASKERS[detail](scene, rng, rng.choice(g.QUESTIONS[detail]))


def ask_striped(scene: Scene, rng: random.Random) -> QA | None:
    """The colour of a striped shape (`scene.py`), named by its shape, which no other shape of the scene has;
    None when the scene has no such shape. At 32 px the shape is gone (its stripes average to the gray)."""
    objs = [o for o in _unique(scene, "shape") if o.striped]
    if objs:
        o = rng.choice(objs)
        return _qa("colour", rng.choice(g.QUESTIONS["colour"]), {"shape": o.shape}, o.colour, "other", "colour")
    return None


def ask_text(scene: Scene, rng: random.Random) -> QA:
    """A question about the small rendered label (the scene must have one)."""
    label = scene.label
    if label is None:
        raise ValueError("ask_text needs a scene with a label")
    t = rng.choice(g.QUESTIONS["text"])
    return _qa("text", t, {"corner": label.corner, "kind": label.kind}, label.text, "other", "text")


def _variants(qa: QA) -> list[str]:
    fields = {
        "answer": qa.answer,
        "word": g.NUMBER_WORDS[int(qa.answer)] if qa.answer.isdigit() and int(qa.answer) <= 10 else qa.answer,
        "phrase": g.POSITION_PHRASES.get(qa.answer, qa.answer),
        "synonym": g.SIZE_SYNONYMS.get(qa.answer, qa.answer),
        "kind": "number" if qa.answer.isdigit() else "word",
    }
    return [t.format(**fields) for t in g.ANSWER_VARIANTS[qa.variant_kind]]


def human_answers(qa: QA, rng: random.Random, n: int = 10) -> list[str]:
    """n annotator answers: mostly the true answer, a few rewordings (VQA normalisation matters)."""
    variants = _variants(qa)
    n_main = n if not variants else rng.choice([n, n - 1, n - 2, n - 2, n - 3])
    answers = [qa.answer] * n_main + [rng.choice(variants) for _ in range(n - n_main)]
    rng.shuffle(answers)
    return answers
