"""Text-only documents about the shape world: facts, numbers, short stories, text QA."""
from __future__ import annotations

import random

from mm1.data.synth import grammar as g
from mm1.data.synth.describe import be, group_phrase, object_phrase
from mm1.data.synth.scene import sample_scene

TEXT_KIND_WEIGHTS = {"facts": 2, "numbers": 2, "story": 3, "qa": 2}


def _number(n: int, rng: random.Random) -> str:
    return g.NUMBER_WORDS[n] if rng.random() < 0.5 else str(n)


def facts(rng: random.Random) -> str:
    return " ".join(rng.sample(g.FACTS, rng.randint(2, 4)))


def _sum_sentence(rng: random.Random) -> str:
    c = rng.randint(1, 10)
    a = rng.randint(0, c)
    return rng.choice(g.ARITHMETIC).format(a=_number(a, rng), b=_number(c - a, rng), c=_number(c, rng))


def numbers(rng: random.Random) -> str:
    start = rng.randint(0, 5)
    sentences = [", ".join(g.NUMBER_WORDS[start:start + rng.randint(3, 6)]) + "."]
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.6:
            sentences.append(_sum_sentence(rng))
        else:
            small, big = sorted(rng.sample(range(11), 2))
            sentences.append(rng.choice(g.COMPARISON).format(big=_number(big, rng), small=_number(small, rng)))
    return " ".join(sentences)


def story(rng: random.Random) -> str:
    """Objects come and go; the story ends with the right count."""
    scene = sample_scene(rng, label_prob=0.0)
    objects = list(scene.objects)
    with_size = rng.random() < 0.5
    phrase = g.join_list([group_phrase(grp, with_size, False) for grp in scene.groups()])
    sentences = [rng.choice(g.STORY_START).format(be=be(phrase), objects=phrase)]
    for _ in range(rng.randint(1, 2)):
        unique = [o for o in objects if sum(p.shape == o.shape and p.colour == o.colour for p in objects) == 1]
        if unique and (len(objects) > 1 and rng.random() < 0.5):
            gone = rng.choice(unique)
            objects.remove(gone)
            sentences.append(rng.choice(g.STORY_REMOVE).format(colour=gone.colour, shape=gone.shape))
        else:
            new = sample_scene(rng, label_prob=0.0).objects[0]
            objects.append(new)
            sentences.append(rng.choice(g.STORY_ADD).format(object=object_phrase(new, rng.random() < 0.5)))
    n = len(objects)
    count = g.NUMBER_WORDS[n]
    sentences.append(rng.choice(g.STORY_END).format(be="is" if n == 1 else "are", count=count,
                                                    shape_noun="shape" if n == 1 else "shapes"))
    return " ".join(sentences)


def text_question(rng: random.Random) -> tuple[str, str]:
    """(question, answer): corners of a shape, a small sum, or a colour mix. Only text documents hold
    these facts, so only text-only data can teach them (the synth_text eval task asks them)."""
    which = rng.randrange(3)
    if which == 0:
        shape = rng.choice(sorted(g.CORNER_COUNTS))
        return g.TEXT_QUESTIONS[0].format(shape=shape), str(g.CORNER_COUNTS[shape])
    if which == 1:
        a, b = rng.randint(0, 5), rng.randint(0, 5)
        return g.TEXT_QUESTIONS[1].format(a=_number(a, rng), b=_number(b, rng)), str(a + b)
    x, y, z = rng.choice(g.COLOUR_MIXES)
    return g.TEXT_QUESTIONS[2].format(x=x, y=y), z


def text_qa(rng: random.Random) -> str:
    pairs = [text_question(rng) for _ in range(rng.randint(2, 4))]
    return "\n".join(g.FEWSHOT_VQA.format(question=q, answer=a) for q, a in pairs)


BUILDERS = {"facts": facts, "numbers": numbers, "story": story, "qa": text_qa}


def text_document(rng: random.Random) -> tuple[str, str]:
    """(kind, text) of one random text-only document."""
    kind = rng.choices(list(TEXT_KIND_WEIGHTS), weights=list(TEXT_KIND_WEIGHTS.values()))[0]
    return kind, BUILDERS[kind](rng)
