"""The closed language of the synthetic corpus: word lists, templates, vocabulary.

Text convention. Every generated text (captions, documents, questions, answers,
eval references) is lowercase English with ordinary punctuation, e.g.
"two red circles, a blue square and a label that says cat." A tokenizer must
pre-tokenize with the regex `PRETOKENIZE_PATTERN` (`\\w+|[^\\w\\s]`, applied with
`re.findall`; see `pretokenize`). Every piece it yields is an entry of
`vocabulary()`; punctuation marks are separate pieces (".", ",", "?", ":"),
numbers are whole pieces ("12"), and no text contains apostrophes or hyphens.

Every literal word of generated text comes from this module: the word lists
and the templates below. The generators (captions, questions, documents) only
fill template fields with list words or with the few function words in
`GLUE`, so `vocabulary()` can be computed by reading this module alone.
Template fields are `{name}` placeholders filled with `str.format`.
"""
from __future__ import annotations

import re
from functools import lru_cache

PRETOKENIZE_PATTERN = re.compile(r"\w+|[^\w\s]")

SHAPES = ("circle", "square", "triangle", "star", "cross")
PLURALS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars", "cross": "crosses"}
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange", "white")
SIZES = ("small", "large")
POSITIONS = ("center", "left", "right", "top", "bottom")  # the five slots of a scene of shapes
CORNERS = ("top left", "top right", "bottom left", "bottom right")


def corner_slot(quarter: str) -> str:
    """A corner scene's slot in the corner cell of a quarter ("top left" -> "top left corner")."""
    return f"{quarter} corner"


def inner_slot(quarter: str) -> str:
    """A corner scene's slot between a quarter's corner and the center ("top left of the center")."""
    return f"{quarter} of the center"


CORNER_SLOTS = tuple(corner_slot(c) for c in CORNERS)
INNER_SLOTS = tuple(inner_slot(c) for c in CORNERS)
POSITION_PHRASES = {
    "center": "in the center",
    "left": "on the left",
    "right": "on the right",
    "top": "at the top",
    "bottom": "at the bottom",
    **{slot: f"in the {slot}" for slot in CORNER_SLOTS},
    **{slot: slot for slot in INNER_SLOTS},
}
BACKGROUNDS = ("gray", "black", "brown")
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
DIGITS = tuple(str(i) for i in range(11))
YES_NO = ("yes", "no")
ORDINALS = ("first", "second", "third", "fourth")
# The small rendered text ("label"): at most 3 characters so it fits a corner.
LABEL_WORDS = (
    "cat", "dog", "sun", "car", "box", "cup", "hat", "key", "map", "pen", "bus", "egg",
    "fox", "owl", "bee", "jam", "log", "net", "pot", "toy", "zip", "web", "van", "gum",
)
LABEL_NUMBERS = ("12", "17", "23", "28", "31", "36", "42", "45", "54", "59", "63", "68", "71", "76", "85", "94")
LABEL_TEXTS = LABEL_WORDS + LABEL_NUMBERS
# Function words the generators insert outside templates (articles, list joins, agreement).
GLUE = ("a", "an", "the", "and", ",", ".", "is", "are", "shape", "shapes", "word", "number", "label", "picture",
        "pictures")

CAPTION = (
    "{objects}.",
    "there {be} {objects}.",
    "a picture of {objects}.",
    "an image with {objects}.",
    "{total} {shape_noun}: {objects}.",
    "{objects} on a {background} background.",
    "a {background} background with {objects}.",
)
LABEL_SENTENCE = (
    "a label in the {corner} corner says {text}.",
    "the label says {text}.",
    "the {kind} {text} is written in the {corner} corner.",
    "there is a label with the {kind} {text}.",
)
QUESTIONS = {
    "colour": ("what colour is the {shape}?", "which colour is the {shape}?"),
    "shape": ("what shape is the {colour} one?", "which shape is {colour}?"),
    "detail": ("what colour is the small one?", "which colour is the small shape?"),
    "corner": ("what colour is the shape in the {corner} corner?",
               "which colour is the small one in the {corner} corner?"),
    "count_shape": ("how many {plural} are there?", "how many {plural} are in the picture?"),
    "count_colour": ("how many {colour} shapes are there?",),
    "count_all": ("how many shapes are there?", "how many shapes are in the picture?"),
    "position": ("where is the {colour} {shape}?",),
    "size": ("is the {colour} {shape} small or large?", "what size is the {colour} {shape}?"),
    "exists": ("is there {article} {colour} {shape}?", "are there any {plural}?"),
    "background": ("what colour is the background?",),
    "text": (
        "what does the label say?",
        "what is written on the label?",
        "what is written in the {corner} corner?",
        "what {kind} is on the label?",
    ),
}
# Plausible human rewordings of an answer (the VQA metric's normalisation maps some back).
ANSWER_VARIANTS = {
    "colour": ("{answer} one", "{answer} colour"),
    "shape": ("a {answer}", "{answer} shape"),
    "number": ("{word}",),
    "position": ("{phrase}", "{answer} side"),
    "size": ("{synonym}",),
    "yes/no": (),
    "text": ("{answer}.", "the {kind} {answer}", "it says {answer}"),
}
SIZE_SYNONYMS = {"small": "tiny", "large": "big"}

# Interleaved documents (OBELICS-style); few-shot shapes follow OpenFlamingo's prompts, lowercased.
FEWSHOT_VQA = "question: {question} short answer: {answer}"

# Answer dialects: each renames every colour and shape answer with its own made-up word. A few-shot VQA
# document either answers in plain words or keeps one dialect throughout; nothing but the answers already
# given in a context tells which dialect is in use (the in-context mechanism, see docs/benchmark.md).
_CONSONANTS, _VOWELS = "bdfgklmnprstvz", "aeiou"
DIALECT_WORDS_PER = len(COLOURS) + len(SHAPES)


def _nonce_words(n: int) -> list[str]:
    """n distinct made-up consonant-vowel-consonant-vowel words, in a fixed order."""
    words = [a + b + c + d for a in _CONSONANTS for b in _VOWELS for c in _CONSONANTS for d in _VOWELS]
    return words[:: len(words) // n][:n]


def _dialects(k: int) -> tuple[dict[str, str], ...]:
    words = _nonce_words(k * DIALECT_WORDS_PER)
    answers = COLOURS + SHAPES
    return tuple({a: words[i * DIALECT_WORDS_PER + j] for j, a in enumerate(answers)} for i in range(k))


DIALECTS = _dialects(4)

# House caption styles of gallery documents (styles.py), made only of the corpus's own words: a tally of the
# kinds ("2 red circles, 1 blue star."), an inventory of colours and shapes, or each shape with its place.
STYLE_TALLY_ITEM = "{count} {colour} {noun}"
STYLE_INVENTORY = "colour: {colours}. shape: {shapes}."
STYLE_PLACES_ITEM = "{colour} {shape} {place}"
DOC_INTRO = ("here are {n} pictures.", "look at these pictures.", "some pictures of shapes.")
QUIZ_INTRO = ("a quiz about {n} pictures.", "questions about some pictures.", "answer the questions.")
DOC_FIRST = ("the first picture shows {objects}.", "in the first one there {be} {objects}.")
DOC_NEXT = ("in the next one there {be} {objects}.", "the {ordinal} picture shows {objects}.", "then {objects}.")
DOC_LAST = ("the last one has {objects}.", "the last picture shows {objects}.")
DOC_LABEL = ("its label says {text}.", "the label says {text}.")
DOC_COMPARE = {
    "more": "the {a} picture has more shapes than the {b} one.",
    "same": "the {a} and the {b} picture have the same number of shapes.",
    "both": "both the {a} and the {b} picture have {object}.",
    "only_label": "only the {a} picture has a label.",
}

# Text-only documents.
FACTS = (
    "a circle has no corners.",
    "a triangle has three corners.",
    "a square has four corners.",
    "a star has five points.",
    "a cross has four arms.",
    "a triangle has three sides.",
    "a square has four sides of the same size.",
    "red and yellow make orange.",
    "red and blue make purple.",
    "blue and yellow make green.",
    "a large shape is bigger than a small shape.",
    "a small shape is smaller than a large shape.",
)
CORNER_COUNTS = {"circle": 0, "triangle": 3, "square": 4}
COLOUR_MIXES = (("red", "yellow", "orange"), ("red", "blue", "purple"), ("blue", "yellow", "green"))
ARITHMETIC = ("{a} plus {b} is {c}.", "{a} and {b} make {c}.", "{c} minus {b} is {a}.")
COMPARISON = ("{big} is more than {small}.", "{small} is less than {big}.")
STORY_START = ("there {be} {objects}.", "once there {be} {objects}.")
STORY_ADD = ("then {object} came.", "then came {object}.")
STORY_REMOVE = ("then the {colour} {shape} went away.",)
STORY_END = ("now there {be} {count} {shape_noun}.",)
TEXT_QUESTIONS = (  # asked in text-only documents as FEWSHOT_VQA lines, and by the synth_text eval task
    "how many corners does a {shape} have?",
    "what is {a} plus {b}?",
    "what colour do {x} and {y} make?",
)

_FIELD = re.compile(r"\{[^}]*\}")


def pretokenize(text: str) -> list[str]:
    """Split text into vocabulary pieces (words, numbers, single punctuation marks)."""
    return PRETOKENIZE_PATTERN.findall(text)


def article(word: str) -> str:
    """'a' or 'an' for the word that follows."""
    return "an" if word[0] in "aeiou" else "a"


def join_list(items: list[str]) -> str:
    """'x', 'x and y', 'x, y and z'."""
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _template_strings():
    """Every template and listed phrase of this module, fields included."""
    groups = [CAPTION, LABEL_SENTENCE, DOC_INTRO, QUIZ_INTRO, DOC_FIRST, DOC_NEXT, DOC_LAST, DOC_LABEL, FACTS,
              ARITHMETIC, COMPARISON, STORY_START, STORY_ADD, STORY_REMOVE, STORY_END, TEXT_QUESTIONS,
              (FEWSHOT_VQA, STYLE_TALLY_ITEM, STYLE_INVENTORY, STYLE_PLACES_ITEM), tuple(DOC_COMPARE.values()),
              tuple(POSITION_PHRASES.values())]
    groups += list(QUESTIONS.values()) + list(ANSWER_VARIANTS.values())
    return [s for group in groups for s in group]


@lru_cache(maxsize=1)
def _vocabulary() -> tuple[str, ...]:
    words = set(GLUE)
    for group in (SHAPES, tuple(PLURALS.values()), COLOURS, SIZES, POSITIONS, CORNERS, CORNER_SLOTS, INNER_SLOTS,
                  BACKGROUNDS, NUMBER_WORDS, DIGITS, YES_NO, ORDINALS, LABEL_TEXTS, tuple(SIZE_SYNONYMS.values()),
                  *(tuple(d.values()) for d in DIALECTS)):
        for phrase in group:
            words.update(pretokenize(phrase))
    for template in _template_strings():
        words.update(pretokenize(_FIELD.sub(" ", template)))
    return tuple(sorted(words))


def vocabulary() -> list[str]:
    """Every piece any generated text (training or eval) can contain, sorted."""
    return list(_vocabulary())
