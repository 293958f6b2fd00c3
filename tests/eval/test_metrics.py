"""Parity tests for the evaluation metrics: VQA accuracy against the reference scripts' own scores
(and hand-derived cases of their branches), exact match, CIDEr-D against pycocoevalcap, the PTB tokeniser against known outputs of
Stanford's tokeniser (and against the Java itself when java is installed)."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import pytest

from mm1.eval.metrics import (
    PROTOCOLS, cider, cider_per_image, exact_match, ptb_tokenize, ptb_tokenize_lines, vqa_accuracy, vqa_normalize,
)
from mm1.eval.metrics.vqa import process_digit_article, process_punctuation
from tests.conftest import FIXTURES

METRIC_FIXTURES = FIXTURES / "metrics"
VQA_CASES = json.loads((METRIC_FIXTURES / "vqa_cases.json").read_text())
# Scores computed by running the reference scripts themselves (see the file's "source" entry and
# fixtures/metrics/score_with_reference_vqa.py, which regenerates it from the two source files).
REFERENCE = json.loads((METRIC_FIXTURES / "vqa_reference_cases.json").read_text())


def test_metrics_do_not_import_torch():
    code = "import sys, mm1.eval.metrics; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- VQA accuracy ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", VQA_CASES, ids=[f"{i}:{c['prediction']!r}" for i, c in enumerate(VQA_CASES)])
def test_vqa_accuracy_fixture(case):
    got = vqa_accuracy(case["prediction"], case["answers"], protocol=case["protocol"])
    assert got == pytest.approx(case["expected"], abs=1e-12), case["why"]


def test_reference_cases_cover_every_branch():
    cases = REFERENCE["cases"]
    identical = [c for c in cases if len(set(c["answers"])) == 1]
    assert len(cases) >= 500 and len(identical) >= 100
    assert sum(c["official"] != c["openflamingo"] for c in cases) >= 10  # the all-identical branch
    assert sum(c["official"] != c["official_2016"] for c in cases) >= 10
    for needle in ("\n", "\t", ",", ".", "!", "-", "two", "the ", "dont", "Yes"):
        assert any(needle in c["prediction"] or any(needle in a for a in c["answers"]) for c in cases), needle


def test_default_protocol_is_the_official_script():
    worst = max(abs(vqa_accuracy(c["prediction"], c["answers"]) - c["official"]) for c in REFERENCE["cases"])
    assert worst <= 1e-12


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_each_protocol_equals_its_source(protocol):
    for case in REFERENCE["cases"]:
        got = vqa_accuracy(case["prediction"], case["answers"], protocol=protocol)
        assert got == pytest.approx(case[protocol], abs=1e-12), (case["prediction"], case["answers"])


def test_one_answer_scores_zero_in_vqa_accuracy_and_one_in_exact_match():
    assert vqa_accuracy("yes", ["yes"]) == 0.0  # the leave-one-out formula has nothing left to match
    assert exact_match("yes", ["yes"]) == 1.0
    assert exact_match(" Yes.\n", ["yes"]) == 1.0
    assert exact_match("the two dogs", ["2 dogs"]) == 1.0
    assert exact_match("left side", ["left"]) == 0.0
    assert exact_match("no", ["yes", "no"]) == 1.0
    with pytest.raises(ValueError):
        exact_match("yes", [])


@pytest.mark.parametrize("text, expected", [
    ("Yes.", "yes"),
    ("  Two dogs\n", "2 dogs"),
    ("3.5", "3.5"),
    ("1,000,000", "1000000"),
    ("a, b", "b"),  # ', ' -> ''; 'a' is an article
    ("red,blue", "red blue"),
    ("hot-dog!", "hot dog"),
    ("(yes)", "yes"),
    ("dont isnt whats", "don't isn't what's"),
    ("Im", "im"),  # the map's capitalised keys never match after lower-casing
    ("somebody'd", "somebodyd"),
    ("The Eiffel Tower", "eiffel tower"),
    ("none of the above", "0 of above"),
    ("e.g.", "eg"),
    ("$5.50", "$5.50"),
])
def test_vqa_normalize(text, expected):
    assert vqa_normalize(text) == expected


def test_process_punctuation_keeps_spacing_quirks():
    assert process_punctuation("dog!") == "dog "  # replaced by a space, not stripped
    assert process_punctuation("dog !") == "dog "  # touching a space: deleted
    assert process_punctuation("1,5 (x)") == "15 x"  # a digit,digit comma: every mark deleted
    assert process_digit_article("  A  Ten ") == "10"


def test_vqa_accuracy_errors():
    with pytest.raises(ValueError):
        vqa_accuracy("yes", [])
    with pytest.raises(ValueError):
        vqa_accuracy("yes", "yes")
    with pytest.raises(ValueError, match="official, openflamingo, official_2016"):
        vqa_accuracy("yes", ["yes"], protocol="lenient")


# --- PTB tokenisation ------------------------------------------------------------------------------

# Outputs of pycocoevalcap's PTBTokenizer (Stanford CoreNLP 3.4.1 + its PUNCTUATIONS filter).
PTB_CASES = [
    ("A man (standing) in [the] {room}.", "a man -lrb- standing -rrb- in -lsb- the -rsb- -lcb- room -rcb-"),
    ("Don't stop, it's fine!", "do n't stop it 's fine"),
    ("I can't; we cannot.", "i ca n't we can not"),
    ('He said "hello" and \'bye\'', "he said hello and bye"),
    ("won't gonna wanna", "wo n't gon na wan na"),
    ("The U.S. flag", "the u.s. flag"),
    ("3.5 1,000 10:30 $5 50%", "3.5 1,000 10:30 $ 5 50 %"),
    ("e-mail x-ray state-of-the-art", "e-mail x-ray state-of-the-art"),
    ("dogs' toys, the boss's chair", "dogs toys the boss 's chair"),
    ("o'clock rock'n'roll 'em '90s", "o'clock rock 'n' roll 'em '90s"),
    ("Wait... what?!", "wait what ?!"),
    ("A dog -- running - fast", "a dog running fast"),
    ("em\u2014dash", "em dash"),
    ("caf\u00e9 Z\u00fcrich", "caf\u00e9 z\u00fcrich"),
    ("and/or 1/2", "and/or 1/2"),
    ("", ""),
    ("   ", ""),
    ("STOP sign", "stop sign"),
    ("Mr. Smith's dog.", "mr. smith 's dog"),
    ("It\u2019s a \u201cquoted\u201d word", "it 's a quoted word"),
    ("the letter a. next", "the letter a. next"),
    ("A sign that says 'EXIT'.", "a sign that says exit"),
    ("TWO DOGS PLAYING IN THE SNOW .", "two dogs playing in the snow"),
    ("a kitchen with a stove, a sink and a refrigerator", "a kitchen with a stove a sink and a refrigerator"),
    ("y'all l'amour d'arc", "y' all l'amour d'arc"),
    ("1 1/2 cups", "1\u00a01/2 cups"),
    ("they're we've I'm you'll he'd", "they 're we 've i 'm you 'll he 'd"),
    ("#1 @home AT&T", "# 1 @home at&t"),
    ("x\u00bd \u00a35", "x 1/2 # 5"),
    ("price: $3.50!", "price $ 3.50"),
    ("10% off; 2-for-1", "10 % off 2-for-1"),
]


@pytest.mark.parametrize("text, expected", PTB_CASES)
def test_ptb_tokenize_known_cases(text, expected):
    assert ptb_tokenize(text) == expected


def test_ptb_context_crosses_caption_boundaries():
    # The Java reads all captions as one text: "a." before a line starting "A " is a sentence end.
    assert ptb_tokenize_lines(["the letter a.", "A dog."]) == ["the letter a", "a dog"]
    assert ptb_tokenize_lines(["the letter a.", "two dogs"]) == ["the letter a.", "two dogs"]


# --- CIDEr-D against pycocoevalcap -----------------------------------------------------------------

VOCAB = "a the man woman dog cat on in with red blue sitting table two of is".split()


def _caption(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(lo, hi)))


def _corpus(rng: random.Random) -> tuple[dict, dict]:
    n_images = rng.randint(1, 12)
    refs = {f"img{i}": [_caption(rng, 1, 16) for _ in range(rng.randint(1, 5))] for i in range(n_images)}
    preds = {}
    for key, rs in refs.items():
        kind = rng.random()
        preds[key] = rng.choice(rs) if kind < 0.2 else "" if kind < 0.25 else _caption(rng, 0, 16)
    return preds, refs


def _pycoco_cider(preds: dict, refs: dict) -> tuple[float, list[float]]:
    cider_mod = pytest.importorskip("pycocoevalcap.cider.cider")
    score, scores = cider_mod.Cider().compute_score(refs, {k: [v] for k, v in preds.items()})
    return float(score), [float(s) for s in scores]


SPECIAL_CORPORA = {
    "identical": ({"a": "a man on a table", "b": "two red cats"},
                  {"a": ["a man on a table"], "b": ["two red cats", "a cat"]}),
    "empty_candidate": ({"a": "", "b": "a dog"}, {"a": ["a dog on a table", "a dog"], "b": ["a red dog"]}),
    "repeated_words": ({"a": "dog dog dog dog dog dog", "b": "the the the"},
                       {"a": ["a dog", "the dog is a dog"], "b": ["the cat", "a cat on the mat"]}),
    "one_word": ({"a": "dog", "b": "cat", "c": "red"}, {"a": ["dog"], "b": ["a cat"], "c": ["blue", "red car"]}),
    "single_image": ({"a": "a dog"}, {"a": ["a dog", "the dog"]}),
    "long": ({"a": " ".join(VOCAB * 3), "b": "a man"}, {"a": [" ".join(VOCAB)], "b": [" ".join(VOCAB * 2), "man"]}),
}


@pytest.mark.parametrize("name", list(SPECIAL_CORPORA))
def test_cider_special_cases_match_pycocoevalcap(name):
    preds, refs = SPECIAL_CORPORA[name]
    want, want_per_image = _pycoco_cider(preds, refs)
    assert cider(preds, refs, tokenize=False) == pytest.approx(want, abs=1e-12)
    per_image = cider_per_image(preds, refs, tokenize=False)
    assert list(per_image.values()) == pytest.approx(want_per_image, abs=1e-12)


def test_cider_random_corpora_match_pycocoevalcap():
    rng = random.Random(0)
    worst = 0.0
    for _ in range(60):
        preds, refs = _corpus(rng)
        want, want_per_image = _pycoco_cider(preds, refs)
        per_image = cider_per_image(preds, refs, tokenize=False)
        worst = max([worst, abs(cider(preds, refs, tokenize=False) - want)]
                    + [abs(a - b) for a, b in zip(per_image.values(), want_per_image, strict=True)])
    assert worst <= 1e-12


def test_cider_identical_captions_score_high_and_order_is_free():
    refs = {i: [f"a {w} sitting on a {v} table" for v in VOCAB[:3]] for i, w in enumerate(VOCAB[3:9])}
    preds = {i: rs[0] for i, rs in refs.items()}
    score = cider(preds, refs)
    assert score > 1.0
    assert cider(dict(reversed(list(preds.items()))), refs) == pytest.approx(score, abs=1e-12)


def test_cider_tokenizes_like_cocoevalcap():
    refs = {1: ["A dog, running!", "The dog runs."], 2: ["Two cats (sleeping)."]}
    preds = {1: "A DOG running.", 2: "two cats sleeping"}
    tokenized_refs = {1: ["a dog running", "the dog runs"], 2: ["two cats -lrb- sleeping -rrb-"]}
    tokenized_preds = {1: "a dog running", 2: "two cats sleeping"}
    assert cider(preds, refs) == cider(tokenized_preds, tokenized_refs, tokenize=False)


def test_cider_input_errors():
    with pytest.raises(ValueError, match="same image ids"):
        cider({1: "a"}, {2: ["a"]})
    with pytest.raises(ValueError, match="non-empty list"):
        cider({1: "a"}, {1: []})
    with pytest.raises(ValueError, match="must be a string"):
        cider({1: ["a"]}, {1: ["a"]})
    assert cider({}, {}) == 0.0


# --- the whole pipeline against the Java tokeniser, when java is there ------------------------------

JAVA_CAPTIONS = [c for c, _ in PTB_CASES] + [
    "A man riding a wave on top of a surfboard.", "Two dogs are playing with a frisbee in the park .",
    "A bottle of 'Coca-Cola' with the number 12 on it.", "A book titled \"The Art of War\" by Sun Tzu.",
    "the sign says: NO PARKING (7am-6pm) Mon.-Fri.", "An old-fashioned clock shows 10:45 a.m.",
    "A woman's hand holds an iPhone; the screen reads 'Hello!'", "A red double-decker bus in London, U.K.",
    "a STOP sign", "A man in a T-shirt that says I <3 NY", "Kids play soccer -- one kicks the ball...",
]


@pytest.fixture(scope="module")
def java_ptb():
    if shutil.which("java") is None:
        pytest.skip("java is not installed: no Stanford PTBTokenizer to compare with")
    tokenizer = pytest.importorskip("pycocoevalcap.tokenizer.ptbtokenizer")
    return tokenizer.PTBTokenizer()


def test_ptb_matches_java_tokenizer(java_ptb):
    captions = {i: [{"caption": c}] for i, c in enumerate(JAVA_CAPTIONS)}
    want = java_ptb.tokenize(captions)
    assert ptb_tokenize_lines(JAVA_CAPTIONS) == [want[i][0] for i in range(len(JAVA_CAPTIONS))]


def test_cider_pipeline_matches_cocoevalcap(java_ptb):
    rng = random.Random(1)
    refs = {i: rng.sample(JAVA_CAPTIONS, rng.randint(1, 5)) for i in range(20)}
    preds = {i: rng.choice(JAVA_CAPTIONS) if i % 3 else rng.choice(refs[i]) for i in refs}
    gts = java_ptb.tokenize({i: [{"caption": c} for c in rs] for i, rs in refs.items()})
    res = java_ptb.tokenize({i: [{"caption": c}] for i, c in preds.items()})
    want, _ = _pycoco_cider({i: res[i][0] for i in res}, gts)
    assert cider(preds, refs) == pytest.approx(want, abs=1e-12)
