"""Interleaved image-text documents (OBELICS-style) built from scenes.

A document is a list of parts, each a text string or a `Scene` (an image
slot). Three kinds teach different things:
  story   - prose that refers to the pictures by position and compares them (2-4 pictures);
  vqa     - few-shot VQA: "<image> question: ... short answer: ..." repeated (2-9 pictures, so
            that an 8-shot prompt and its query have the length of a training document). Half of them
            answer colour and shape questions in one of `grammar.DIALECTS`, the same one throughout
            the document: the in-context mechanism (only earlier answers tell the dialect);
  textvqa - few-shot questions about the small label text (2-4 pictures);
  gallery - only with data.synth.gallery_docs > 0, that share of the documents: pictures each followed by
            a caption, all in one of `styles.STYLES` (2-9 pictures, like an 8-shot captioning prompt):
            the few-shot captioning mechanism (only earlier captions tell the style).
Every document opens with a sentence, so an image right after <s> only ever starts a caption pair:
captioning is taught by the caption pairs alone (the zero-shot captioning mechanism).
"""
from __future__ import annotations

import random
from typing import Callable, Union

from mm1.data.synth import grammar as g
from mm1.data.synth.describe import be, objects_phrase
from mm1.data.synth.questions import QUESTION_WEIGHTS, ask, ask_text
from mm1.data.synth.scene import Scene
from mm1.data.synth.styles import STYLES, styled_caption

Part = Union[str, Scene]
NewScene = Callable[[float], Scene]  # label probability -> a fresh scene
DOC_KIND_WEIGHTS = {"story": 3, "vqa": 5, "textvqa": 1}
IMAGES_PER_DOC = {"story": (2, 3, 4), "vqa": tuple(range(2, 10)), "textvqa": (2, 3, 4), "gallery": tuple(range(2, 10))}
DIALECT_PROB = 0.5  # share of few-shot VQA documents that answer in a dialect
DIALECT_KINDS = ("colour", "shape")  # the questions whose answers a dialect renames


def _describe_nth(scene: Scene, i: int, n: int, rng: random.Random) -> str:
    objects = objects_phrase(scene, rng)
    if i == 0:
        templates = g.DOC_FIRST
    elif i == n - 1:
        templates = g.DOC_LAST
    else:
        templates = g.DOC_NEXT
    text = rng.choice(templates).format(objects=objects, be=be(objects), ordinal=g.ORDINALS[i])
    if scene.label is not None and rng.random() < 0.5:
        text += " " + rng.choice(g.DOC_LABEL).format(text=scene.label.text)
    return text


def _comparisons(scenes: list[Scene], a: int, b: int) -> list[str]:
    """Every true comparison sentence about pictures a and b."""
    out = []
    na, nb = len(scenes[a].objects), len(scenes[b].objects)
    if na != nb:
        more, less = (a, b) if na > nb else (b, a)
        out.append(g.DOC_COMPARE["more"].format(a=g.ORDINALS[more], b=g.ORDINALS[less]))
    else:
        out.append(g.DOC_COMPARE["same"].format(a=g.ORDINALS[a], b=g.ORDINALS[b]))
    shared = sorted({(o.colour, o.shape) for o in scenes[a].objects} & {(o.colour, o.shape) for o in scenes[b].objects})
    for colour, shape in shared:
        obj = f"{g.article(colour)} {colour} {shape}"
        out.append(g.DOC_COMPARE["both"].format(a=g.ORDINALS[a], b=g.ORDINALS[b], object=obj))
    labelled = [i for i in (a, b) if scenes[i].label is not None]
    if len(labelled) == 1 and all(s.label is None for i, s in enumerate(scenes) if i != labelled[0]):
        out.append(g.DOC_COMPARE["only_label"].format(a=g.ORDINALS[labelled[0]]))
    return out


def story(n: int, new_scene: NewScene, rng: random.Random) -> list[Part]:
    scenes = [new_scene(0.3) for _ in range(n)]
    parts: list[Part] = [rng.choice(g.DOC_INTRO).format(n=g.NUMBER_WORDS[n])]
    for i, scene in enumerate(scenes):
        parts += [scene, _describe_nth(scene, i, n, rng)]
    if rng.random() < 0.7:
        a, b = sorted(rng.sample(range(n), 2))
        parts[-1] += " " + rng.choice(_comparisons(scenes, a, b))
    return parts


def _quiz_intro(n: int, rng: random.Random) -> str:
    return rng.choice(g.QUIZ_INTRO).format(n=g.NUMBER_WORDS[n])


def fewshot_vqa(n: int, new_scene: NewScene, rng: random.Random, detail: str = "detail") -> list[Part]:
    """Plain answers to one question kind or to mixed kinds, or colour/shape answers in one dialect; the kind
    "detail" asks the question of kind `detail` (questions.detail_kind)."""
    dialect = rng.choice(g.DIALECTS) if rng.random() < DIALECT_PROB else None
    if dialect is not None:
        kinds = list(DIALECT_KINDS)
    else:
        kinds = [rng.choice(list(QUESTION_WEIGHTS))] if rng.random() < 0.5 else None  # one task, or mixed
    parts: list[Part] = [_quiz_intro(n, rng)]
    while len(parts) < 2 * n + 1:
        scene = new_scene(0.5)
        qa = ask(scene, rng, kinds, detail)
        if qa is not None:  # else the scene cannot answer this task; draw another
            answer = dialect[qa.answer] if dialect is not None else qa.answer
            parts += [scene, g.FEWSHOT_VQA.format(question=qa.question, answer=answer)]
    return parts


def fewshot_textvqa(n: int, new_scene: NewScene, rng: random.Random) -> list[Part]:
    parts: list[Part] = [_quiz_intro(n, rng)]
    for _ in range(n):
        scene = new_scene(1.0)
        qa = ask_text(scene, rng)
        parts += [scene, g.FEWSHOT_VQA.format(question=qa.question, answer=qa.answer)]
    return parts


def gallery(n: int, new_scene: NewScene, rng: random.Random) -> list[Part]:
    """An intro, then n pictures each followed by its caption, every caption in one style."""
    style = rng.choice(STYLES)
    parts: list[Part] = [rng.choice(g.DOC_INTRO).format(n=g.NUMBER_WORDS[n])]
    for _ in range(n):
        scene = new_scene(0.3)
        parts += [scene, styled_caption(scene, style, rng)]
    return parts


BUILDERS = {"story": story, "vqa": fewshot_vqa, "textvqa": fewshot_textvqa, "gallery": gallery}


def document(new_scene: NewScene, rng: random.Random, detail: str = "detail",
             gallery_prob: float = 0.0) -> tuple[str, list[Part]]:
    """(kind, parts) of one random interleaved document: a gallery with probability `gallery_prob`, else
    a story, few-shot VQA (asking detail questions of kind `detail`) or few-shot TextVQA document. With
    gallery_prob 0 no extra random number is drawn, so the documents are the generator version 4's."""
    if gallery_prob > 0 and rng.random() < gallery_prob:
        n = rng.choice(IMAGES_PER_DOC["gallery"])
        return "gallery", gallery(n, new_scene, rng)
    kind = rng.choices(list(DOC_KIND_WEIGHTS), weights=list(DOC_KIND_WEIGHTS.values()))[0]
    n = rng.choice(IMAGES_PER_DOC[kind])
    return kind, fewshot_vqa(n, new_scene, rng, detail) if kind == "vqa" else BUILDERS[kind](n, new_scene, rng)
