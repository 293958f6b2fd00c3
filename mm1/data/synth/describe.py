"""Captions of a scene: templated, with random wording, order and detail."""
from __future__ import annotations

import random

from mm1.data.synth import grammar as g
from mm1.data.synth.scene import Label, Obj, Scene

LABEL_MENTION_PROB = 0.6  # a caption mentions the label (when there is one) this often


def object_phrase(obj: Obj, with_size: bool = True, definite: bool = False) -> str:
    """'a small red circle', 'an orange star', 'the red circle'."""
    words = ([obj.size] if with_size else []) + [obj.colour, obj.shape]
    det = "the" if definite else g.article(words[0])
    return " ".join([det] + words)


def group_phrase(group: list[Obj], with_size: bool, with_position: bool) -> str:
    """'two large red circles' or, for a single object, 'a red circle on the left'."""
    if len(group) == 1:
        phrase = object_phrase(group[0], with_size)
        return phrase + " " + g.POSITION_PHRASES[group[0].position] if with_position else phrase
    o = group[0]
    words = [g.NUMBER_WORDS[len(group)]] + ([o.size] if with_size else []) + [o.colour, g.PLURALS[o.shape]]
    return " ".join(words)


def objects_phrase(scene: Scene, rng: random.Random) -> str:
    """All objects of the scene as one noun phrase, in a random group order."""
    groups = scene.groups()
    rng.shuffle(groups)
    with_size, with_position = rng.random() < 0.5, rng.random() < 0.4
    return g.join_list([group_phrase(grp, with_size, with_position) for grp in groups])


def be(phrase: str) -> str:
    """'is' for a phrase starting with a singular noun phrase, else 'are'."""
    return "is" if phrase.split()[0] in ("a", "an", "the") else "are"


def label_sentence(label: Label, rng: random.Random) -> str:
    template = rng.choice(g.LABEL_SENTENCE)
    return template.format(corner=label.corner, text=label.text, kind=label.kind)


def caption(scene: Scene, rng: random.Random, label_prob: float = LABEL_MENTION_PROB) -> str:
    """One caption: the objects in a random template, sometimes followed by the label."""
    objects = objects_phrase(scene, rng)
    n = len(scene.objects)
    text = rng.choice(g.CAPTION).format(
        objects=objects, be=be(objects), total=g.NUMBER_WORDS[n], shape_noun="shape" if n == 1 else "shapes",
        background=scene.background)
    if scene.label is not None and rng.random() < label_prob:
        text += " " + label_sentence(scene.label, rng)
    return text


def reference_captions(scene: Scene, rng: random.Random, n: int = 5) -> list[str]:
    """n distinct captions of one scene (COCO-style references)."""
    refs: list[str] = []
    for _ in range(100 * n):
        cap = caption(scene, rng, label_prob=0.5)
        if cap not in refs:
            refs.append(cap)
        if len(refs) == n:
            return refs
    raise RuntimeError(f"could not write {n} distinct captions for {scene.key()}")
