"""The embedded benchmark's mechanisms (docs/benchmark.md): each finding's cause is really in the data.

- in-context: the dialect of an answer is not a function of the query; only a document's earlier answers
  tell it, and the eval task's answers are in one dialect that a plain or other-dialect answer misses;
- detail: a small object's colour fills most of a patch at 64 px and is swamped by the background at
  32 px (the loader's own resize); in a corpus with corner scenes, the corner asked about shares its quarter
  of the image (one image token at 4 tokens) with a small shape of another colour, which at 16 tokens sits
  in a token of its own; in a corpus with striped scenes, a striped shape's colour is in the pixels at 64 px
  and its stripes average to the gray background at 32, where the shape is gone;
- zero-shot captioning: an image right after <s> only ever starts a caption pair;
- text-only: the facts the text task asks about appear in text documents only;
- few-shot captioning: a gallery captions every picture in one of four styles, all as common and none a
  function of the picture, and synth_caption_style's references are in one of them, which a caption in
  another style misses.
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np
import pytest
import webdataset as wds

from mm1.config.schema import SynthConfig
from mm1.data.image import resized
from mm1.data.synth import grammar as g
from mm1.data.synth import write_corpus
from mm1.data.synth.answers import answer_kind, answer_shares, kinds, named_quarter, named_striped
from mm1.data.synth.documents import DIALECT_KINDS, fewshot_vqa, gallery
from mm1.data.synth.evalsets import EVAL_DIALECT
from mm1.data.synth.render import BACKGROUND_RGB, RGB, render, stripe_colours
from mm1.data.synth.scene import JITTER, Obj, Scene, sample_scene, scene_from_dict
from mm1.data.synth.streams import interleaved_sample, text_sample
from mm1.data.synth.styles import EVAL_STYLE, STYLES, style_of, styled_caption
from mm1.eval.metrics import exact_match, vqa_accuracy
from mm1.eval.metrics.cider import cider

CFG = SynthConfig(seed=5, caption_samples=20, interleaved_samples=20, text_samples=20, eval_samples=300,
                  samples_per_shard=20, image_size=128)
ANSWER = re.compile(r"short answer: (\w+)")
INVERSE = {word: (i, plain) for i, d in enumerate(g.DIALECTS) for plain, word in d.items()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    write_corpus(out, CFG, workers=1)
    return out


@pytest.fixture(scope="module")
def corner_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corner")
    write_corpus(out, replace(CFG, corner_scenes=0.3, caption_samples=0, interleaved_samples=60), workers=1)
    return out


@pytest.fixture(scope="module")
def striped_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("striped")
    write_corpus(out, replace(CFG, striped_scenes=0.7, caption_samples=60, interleaved_samples=0), workers=1)
    return out


@pytest.fixture(scope="module")
def gallery_corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("gallery")
    write_corpus(out, replace(CFG, gallery_docs=0.5, caption_samples=0, interleaved_samples=60), workers=1)
    return out


def _load(corpus, rel):
    return json.loads((corpus / rel).read_text())


def _vqa_docs(n: int):
    rng = random.Random(0)
    return [fewshot_vqa(rng.randint(2, 9), lambda p: sample_scene(rng, p), rng) for _ in range(n)]


def test_dialects_are_distinct_made_up_words():
    words = [w for d in g.DIALECTS for w in d.values()]
    plain = set(g.COLOURS) | set(g.SHAPES)
    assert len(set(words)) == len(words) == len(g.DIALECTS) * len(plain)
    assert not set(words) & (set(g.vocabulary()) - set(words))  # no dialect word means anything else
    assert all(set(d) == plain for d in g.DIALECTS) and len(g.DIALECTS) >= 4


def test_a_document_keeps_one_dialect_and_every_dialect_is_as_common():
    per_doc, by_dialect = [], Counter()
    for parts in _vqa_docs(2000):
        answers = [ANSWER.search(p).group(1) for p in parts if isinstance(p, str) and ANSWER.search(p)]
        dialects = {INVERSE[a][0] for a in answers if a in INVERSE}
        per_doc.append(dialects)
        if dialects:
            assert all(a in INVERSE for a in answers)  # a dialect document answers nothing in plain words
            by_dialect[dialects.pop()] += 1
    assert all(len(d) <= 1 for d in per_doc)
    share = sum(by_dialect.values()) / len(per_doc)
    assert 0.4 < share < 0.6
    counts = [by_dialect[i] for i in range(len(g.DIALECTS))]
    assert max(counts) < 1.3 * min(counts)  # no dialect is the weights' obvious default


def test_the_same_question_gets_every_dialect_in_training():
    """The query alone cannot tell the answer's word: the same (question, true answer) is answered in
    plain words and in each dialect by different documents."""
    seen = defaultdict(set)
    for parts in _vqa_docs(3000):
        for part in parts:
            if isinstance(part, str) and (m := ANSWER.search(part)):
                word = m.group(1)
                dialect, plain = INVERSE.get(word, (None, word))
                seen[(part.split(" short answer:")[0], plain)].add(dialect)
    full = [q for q, dialects in seen.items() if dialects >= {None, *range(len(g.DIALECTS))}]
    common = [q for q, dialects in seen.items() if len(dialects) >= 3]
    assert len(full) >= 10 and len(common) > 0.5 * sum(len(d) > 0 for d in seen.values() if len(d) > 1)


def test_dialect_task_needs_its_dialect(corpus):
    anns = _load(corpus, "eval/dialect/val_annotations.json")["annotations"]
    questions = {q["question_id"]: q["question"] for q in _load(corpus, "eval/dialect/val_questions.json")["questions"]}
    assert len(anns) >= 200
    for ann in anns:
        answers = [a["answer"] for a in ann["answers"]]
        dialect, plain = INVERSE[ann["multiple_choice_answer"]]
        assert dialect == EVAL_DIALECT and len(set(answers)) == 1
        assert vqa_accuracy(ann["multiple_choice_answer"], answers) == 1.0
        assert vqa_accuracy(plain, answers) == 0.0  # the query's plain answer scores nothing
        other = g.DIALECTS[(EVAL_DIALECT + 1) % len(g.DIALECTS)][plain]
        assert vqa_accuracy(other, answers) == 0.0
        assert any(questions[ann["question_id"]].startswith(t.split("{")[0])
                   for kind in DIALECT_KINDS for t in g.QUESTIONS[kind])


def test_a_small_object_fills_most_of_a_patch_only_at_high_resolution():
    """How much of its most-covered 8-px patch a lone object fills, from the loader's resized pixels (the
    patch's mean colour projected between the background and the object's colour): a small object fills
    about a tenth at 32 px, where the background swamps its colour, and far more at 64 px; a large object
    fills most of a patch at 64 px (the control)."""
    assert _median_fill(32, "small") < 0.15
    assert _median_fill(64, "small") > 2.5 * _median_fill(32, "small")
    assert _median_fill(64, "large") > 0.8


def _median_fill(size: int, obj_size: str, patch: int = 8, n: int = 200) -> float:
    rng = random.Random(1)
    fills = []
    for _ in range(n):
        colour, background, j = rng.choice(g.COLOURS), rng.choice(g.BACKGROUNDS), JITTER[obj_size]
        obj = Obj(rng.choice(g.SHAPES), colour, obj_size, rng.choice(g.POSITIONS), rng.randint(-j, j),
                  rng.randint(-j, j))
        pix = resized(render(Scene((obj,), background), 128), size).astype(float)
        k = size // patch
        means = pix.reshape(k, patch, k, patch, 3).mean((1, 3)).reshape(-1, 3)
        bg, fg = np.array(BACKGROUND_RGB[background], float), np.array(RGB[colour], float)
        best = means[((means - bg) ** 2).sum(-1).argmax()]
        fills.append(float(np.dot(best - bg, fg - bg) / np.dot(fg - bg, fg - bg)))
    return float(np.median(fills))


def test_detail_questions_ask_the_colour_of_the_lone_small_object(corpus):
    scenes = _load(corpus, "eval/scenes/val.json")
    anns = _load(corpus, "eval/detail/val_annotations.json")["annotations"]
    questions = {q["question_id"]: q["question"] for q in _load(corpus, "eval/detail/val_questions.json")["questions"]}
    assert len(anns) >= 0.2 * CFG.eval_samples  # about 29% of scenes hold exactly one small object
    for ann in anns:
        assert questions[ann["question_id"]] in g.QUESTIONS["detail"]
        small = [o for o in scenes[str(ann["image_id"])]["objects"] if o["size"] == "small"]
        assert len(small) == 1 and ann["multiple_choice_answer"] == small[0]["colour"]


def test_corner_questions_ask_a_corner_that_shares_its_quarter_with_another_colour(corner_corpus):
    """synth_corner's answer is the colour of the shape in the named corner; the same quarter of the image
    holds a small shape of another colour, drawn inside its own cell: at 16 image tokens (a 4 x 4 grid of
    cells) the two sit in different tokens, at 4 (one per quarter) in the same one (the token mechanism)."""
    scenes = _load(corner_corpus, "eval/scenes/val.json")
    anns = _load(corner_corpus, "eval/corner/val_annotations.json")["annotations"]
    questions = {q["question_id"]: q["question"]
                 for q in _load(corner_corpus, "eval/corner/val_questions.json")["questions"]}
    assert 0.2 * CFG.eval_samples <= len(anns) <= 0.4 * CFG.eval_samples  # 30% of scenes are corner scenes
    templates = [re.escape(t).replace(re.escape("{corner}"), "(.+)") for t in g.QUESTIONS["corner"]]
    asked = Counter()
    for ann in anns:
        corner = next(m[1] for t in templates if (m := re.fullmatch(t, questions[ann["question_id"]])))
        scene = scene_from_dict(scenes[str(ann["image_id"])])
        pair = {o.position: o for o in scene.objects if o.position.startswith(corner + " ")}
        outer, inner = pair[g.corner_slot(corner)], pair[g.inner_slot(corner)]
        assert ann["multiple_choice_answer"] == outer.colour != inner.colour
        assert all(o.size == "small" for o in scene.objects) and len(scene.objects) % 2 == 0
        assert scene.label is None or all(not o.position.startswith(scene.label.corner + " ") for o in scene.objects)
        cells = [_cells_drawn(o, scene.background, 4) for o in (outer, inner)]
        assert all(len(c) == 1 for c in cells) and cells[0] != cells[1]  # a token each at 16 tokens
        assert _cells_drawn(outer, scene.background, 2) == _cells_drawn(inner, scene.background, 2)  # one at 4
        asked[corner] += 1
    assert set(asked) == set(g.CORNERS)


def test_a_striped_shape_is_in_the_pixels_at_64_px_and_gone_at_32():
    """The loader's own resize of every colour and shape, striped on the gray background: at 32 px the
    inside of the shape is the gray's and only a faint outline is left (an MLP on such pixels reads the colour
    16.5% of the time, chance 14, docs/benchmark.md); at 64 px the rows alternate
    between the two stripe colours' sides of the gray, and the rows of the shape's own colour say which
    colour it is (the nearest of the seven, on every case)."""
    gray = np.array(BACKGROUND_RGB["gray"], float)
    palette = np.array([RGB[c] for c in g.COLOURS], float)
    for colour in g.COLOURS:
        own, complement = (np.array(c, float) for c in stripe_colours(colour))
        assert np.allclose((own + complement) / 2, gray)
        for shape in g.SHAPES:
            scene = Scene((Obj(shape, colour, "large", "center", 0, 0, striped=True),), "gray")
            low = resized(render(scene, 128), 32).astype(float)
            assert np.abs(low[15:17, 15:17] - gray).max() <= 4  # the inside
            assert np.abs(low - gray).max() <= 50 and np.abs(low - gray).mean() < 1.5  # a faint outline
            high = resized(render(scene, 128), 64).astype(float)[28:36, 30:34]  # rows through the centre
            side = np.sign((high - gray) @ (own - gray))
            assert (side[0::2] == side[0, 0]).all() and (side[1::2] == -side[0, 0]).all()
            rows = high[0::2] if side[0, 0] > 0 else high[1::2]
            read = gray + (rows.mean((0, 1)) - gray) / np.abs(rows.mean((0, 1)) - gray).max() * np.abs(own - gray).max()
            assert g.COLOURS[((palette - read) ** 2).sum(-1).argmin()] == colour


def test_striped_scenes_are_five_slot_scenes_on_gray_with_every_large_shape_striped():
    rng = random.Random(4)
    scenes = [sample_scene(rng, 0.5, corner_prob=0.3, striped_prob=0.5) for _ in range(2000)]
    striped = [sc for sc in scenes if any(o.striped for o in sc.objects)]
    corner = [sc for sc in scenes if any(o.position in g.CORNER_SLOTS for o in sc.objects)]
    assert 0.15 < len(striped) / len(scenes) < 0.35 and not set(map(id, striped)) & set(map(id, corner))
    gray = sum(sc.background == "gray" for sc in scenes) / len(scenes)  # striped, and a third of the others
    assert abs(gray - (0.7 * 0.5 + (1 - 0.7 * 0.5) / 3)) < 0.05
    for sc in striped:
        assert sc.background == "gray" and all(o.striped == (o.size == "large") for o in sc.objects)
        assert scene_from_dict(json.loads(json.dumps(sc.to_dict()))) == sc
    assert all(not o.striped for sc in scenes if sc.background != "gray" for o in sc.objects)


def test_stripes_questions_ask_the_colour_of_a_striped_shape(striped_corpus, corpus):
    """synth_stripes names the shape (no other shape of the scene has its shape) and its answer is that
    striped shape's colour; the shards teach striped shapes with the captions any shape gets; a corpus
    without striped scenes has no stripes set at all."""
    scenes = _load(striped_corpus, "eval/scenes/val.json")
    anns = _load(striped_corpus, "eval/stripes/val_annotations.json")["annotations"]
    questions = {q["question_id"]: q["question"]
                 for q in _load(striped_corpus, "eval/stripes/val_questions.json")["questions"]}
    assert 0.15 * CFG.eval_samples <= len(anns) <= 0.45 * CFG.eval_samples
    for ann in anns:
        shape = next(s for s in g.SHAPES if questions[ann["question_id"]] in
                     [t.format(shape=s) for t in g.QUESTIONS["colour"]])
        objects = scene_from_dict(scenes[str(ann["image_id"])]).objects
        named = [o for o in objects if o.shape == shape]
        assert len(named) == 1 and named[0].striped and ann["multiple_choice_answer"] == named[0].colour
    assert len({a["multiple_choice_answer"] for a in anns}) == len(g.COLOURS)
    captions = [(json.loads(s["json"])["scene"], s["txt"].decode()) for tar in
                sorted((striped_corpus / "caption").glob("*.tar")) for s in wds.WebDataset(str(tar), shardshuffle=False)]
    assert any(o["striped"] and o["colour"] in text for sc, text in captions for o in sc["objects"] if "striped" in o)
    assert not (corpus / "eval" / "stripes").exists()
    assert "stripes" not in _load(corpus, "manifest.json")["eval"]


def test_corner_answer_kinds_tell_the_named_cell_from_its_quarter_and_the_rest(corner_corpus):
    """tools/answer_kinds.py's kinds on every corner question of a real corpus: the annotated answer is the
    corner, the other colour of its quarter the neighbour, other quarters' colours, absent colours and
    non-colours each their own kind, a dialect's word too unless read as the colour it renames; the shares
    over a run's rows add up to 1."""
    scenes = {k: scene_from_dict(d) for k, d in _load(corner_corpus, "eval/scenes/val.json").items()}
    anns = _load(corner_corpus, "eval/corner/val_annotations.json")["annotations"]
    questions = {q["question_id"]: q["question"]
                 for q in _load(corner_corpus, "eval/corner/val_questions.json")["questions"]}
    rows, seen = [], Counter()
    for ann in anns:
        scene, question = scenes[str(ann["image_id"])], questions[ann["question_id"]]
        quarter = named_quarter(question)
        by_slot = {o.position: o.colour for o in scene.objects}
        assert answer_kind("synth_corner", scene, question, ann["multiple_choice_answer"]) == "corner"
        assert answer_kind("synth_corner", scene, question, by_slot[g.inner_slot(quarter)] + " colour") == "neighbour"
        assert answer_kind("synth_corner", scene, question, "yes") == "not a colour"
        renamed = g.DIALECTS[ann["question_id"] % len(g.DIALECTS)][ann["multiple_choice_answer"]]
        assert answer_kind("synth_corner", scene, question, renamed) == "in a dialect"
        assert answer_kind("synth_corner", scene, question, renamed, dialects=True) == "corner"
        for colour in g.COLOURS:
            kind = answer_kind("synth_corner", scene, question, colour)
            seen[kind] += 1
            if colour not in by_slot.values():
                assert kind == "not in the scene"
            elif colour not in (by_slot[g.corner_slot(quarter)], by_slot[g.inner_slot(quarter)]):
                assert kind == "other quarter"
        rows.append({"image_id": ann["image_id"], "question": question, "prediction": ann["multiple_choice_answer"]})
    assert seen["other quarter"] > 0 and seen["not in the scene"] > 0
    shares = answer_shares("synth_corner", rows + [dict(rows[0], prediction="no")], scenes)
    assert shares["n"] == len(rows) + 1 and sum(shares[k] for k in kinds("synth_corner")) == pytest.approx(1)
    assert shares["corner"] == pytest.approx(len(rows) / (len(rows) + 1))
    with pytest.raises(ValueError, match="not a corner question"):
        named_quarter("what colour is the small shape?")
    with pytest.raises(ValueError, match="no answer kinds for task 'synth_vqa'"):
        answer_kind("synth_vqa", scene, question, "red")


def test_stripes_answer_kinds_tell_the_named_shape_from_the_rest_of_the_scene(striped_corpus):
    """tools/answer_kinds.py's kinds on every stripes question of a real corpus: the annotated answer is the
    named shape, the colour of another striped shape, of a solid (small) shape, a colour absent from the scene,
    a dialect's word (unless read as its colour) and a non-colour each their own kind; the shares add up to 1."""
    scenes = {k: scene_from_dict(d) for k, d in _load(striped_corpus, "eval/scenes/val.json").items()}
    anns = _load(striped_corpus, "eval/stripes/val_annotations.json")["annotations"]
    questions = {q["question_id"]: q["question"]
                 for q in _load(striped_corpus, "eval/stripes/val_questions.json")["questions"]}
    rows, seen = [], Counter()
    for ann in anns:
        scene, question = scenes[str(ann["image_id"])], questions[ann["question_id"]]
        named = named_striped(scene, question)
        assert named.colour == ann["multiple_choice_answer"] and named.shape in question
        assert answer_kind("synth_stripes", scene, question, "the " + named.colour + " one") == "named shape"
        assert answer_kind("synth_stripes", scene, question, "gray") == "not a colour"
        renamed = g.DIALECTS[ann["question_id"] % len(g.DIALECTS)][named.colour]
        assert answer_kind("synth_stripes", scene, question, renamed) == "in a dialect"
        assert answer_kind("synth_stripes", scene, question, renamed, dialects=True) == "named shape"
        for colour in g.COLOURS:
            kind = answer_kind("synth_stripes", scene, question, colour)
            seen[kind] += 1
            holders = [o for o in scene.objects if o.colour == colour]
            if not holders:
                assert kind == "not in the scene"
            elif colour != named.colour:
                assert kind == ("another striped shape" if any(o.striped for o in holders) else "a solid shape")
        rows.append({"image_id": ann["image_id"], "question": question, "prediction": "gray"})
    assert all(seen[k] > 0 for k in kinds("synth_stripes")[:-2])
    shares = answer_shares("synth_stripes", rows, scenes)
    assert shares["n"] == len(rows) and shares["not a colour"] == 1
    with pytest.raises(ValueError, match="not a stripes question"):
        named_striped(scenes[str(anns[0]["image_id"])], "what colour is the small shape?")


def test_detail_answer_kinds_tell_the_small_shape_from_the_large_ones(corpus):
    """tools/answer_kinds.py's kinds on every detail question of a real corpus: the small shape's colour (the
    annotated answer), a large shape's, a colour absent from the scene, a dialect's word and a word of the
    question ("large", not a colour) are each their own kind."""
    scenes = {k: scene_from_dict(d) for k, d in _load(corpus, "eval/scenes/val.json").items()}
    anns = _load(corpus, "eval/detail/val_annotations.json")["annotations"]
    questions = {q["question_id"]: q["question"] for q in _load(corpus, "eval/detail/val_questions.json")["questions"]}
    rows, seen = [], Counter()
    for ann in anns:
        scene, question = scenes[str(ann["image_id"])], questions[ann["question_id"]]
        assert answer_kind("synth_detail", scene, question, ann["multiple_choice_answer"]) == "small shape"
        assert answer_kind("synth_detail", scene, question, "large") == "not a colour"
        renamed = g.DIALECTS[ann["question_id"] % len(g.DIALECTS)][ann["multiple_choice_answer"]]
        assert answer_kind("synth_detail", scene, question, renamed) == "in a dialect"
        assert answer_kind("synth_detail", scene, question, renamed, dialects=True) == "small shape"
        for colour in set(g.COLOURS) - {ann["multiple_choice_answer"]}:
            kind = answer_kind("synth_detail", scene, question, colour)
            seen[kind] += 1
            assert kind == ("a large shape" if any(o.colour == colour for o in scene.objects) else "not in the scene")
        rows.append({"image_id": ann["image_id"], "question": question, "prediction": ann["multiple_choice_answer"]})
    assert seen["a large shape"] > 0 and seen["not in the scene"] > 0
    assert answer_shares("synth_detail", rows, scenes)["small shape"] == 1
    two_small = next(s for s in scenes.values() if sum(o.size == "small" for o in s.objects) == 2)
    with pytest.raises(ValueError, match="not a detail scene"):
        answer_kind("synth_detail", two_small, "what colour is the small one?", "red")


def _cells_drawn(obj, background: str, grid: int, size: int = 128) -> set[tuple[int, int]]:
    """The cells of a grid x grid division of the image that the object's pixels fall in."""
    pixels = np.asarray(render(Scene((obj,), background), size))
    ys, xs = np.nonzero((pixels == RGB[obj.colour]).all(-1))
    assert len(ys) > 0
    return {(int(y) * grid // size, int(x) * grid // size) for y, x in zip(ys, xs)}


def test_corner_questions_are_taught_only_in_a_corpus_with_corner_scenes(corpus, corner_corpus):
    """With corner_scenes > 0 the few-shot VQA documents ask corner questions (the detail kind), and no
    lone-small-shape ones; the default corpus has no corner scene, and its synth_corner set is empty."""
    def asked(out):
        kinds = Counter()
        for tar in sorted((out / "interleaved").glob("*.tar")):
            for s in wds.WebDataset(str(tar), shardshuffle=False):
                for text in json.loads(s["json"])["texts"]:
                    if text and "short answer" in text:
                        question = text.split("question: ")[1].split(" short answer")[0]
                        kinds.update(k for k in ("corner", "detail") if _fits(question, g.QUESTIONS[k]))
        return kinds
    assert asked(corner_corpus)["corner"] > 0 and asked(corner_corpus)["detail"] == 0
    assert _load(corpus, "eval/corner/val_annotations.json")["annotations"] == []
    scenes = _load(corpus, "eval/scenes/val.json").values()
    assert not any(o["position"] not in g.POSITIONS for sc in scenes for o in sc["objects"])


def _fits(question: str, templates) -> bool:
    return any(re.fullmatch(re.escape(t).replace(re.escape("{corner}"), ".+"), question) for t in templates)


def test_no_interleaved_document_opens_with_an_image():
    for i in range(300):
        _, members = interleaved_sample(0, i, 16, frozenset())
        doc = json.loads(members["json"])
        assert doc["texts"][0] and doc["images"][0] is None


def test_text_facts_live_in_text_documents_only(corpus):
    data = _load(corpus, "eval/text/val.json")["data"]
    assert len(data) == CFG.eval_samples
    assert all(exact_match(d["answers"][0], d["answers"]) == 1.0 for d in data)
    asked = [re.compile(re.sub(r"\\\{\w+\\\}", r"\\w+", re.escape(t))) for t in g.TEXT_QUESTIONS]
    assert all(any(p.fullmatch(d["question"]) for p in asked) for d in data)
    text_docs = [text_sample(0, i, 16, frozenset())[1]["txt"].decode() for i in range(300)]
    assert all(any(p.search(doc) for doc in text_docs) for p in asked)
    for i in range(300):
        _, members = interleaved_sample(0, i, 16, frozenset())
        texts = [t for t in json.loads(members["json"])["texts"] if t]
        assert not any(p.search(t) for t in texts for p in asked)


def test_a_gallery_keeps_one_style_and_every_style_is_as_common_whatever_the_picture():
    """Only the captions already given tell a gallery's style: one style per document, the four equally
    common, and for every number of shapes in a picture each style is about as common."""
    rng = random.Random(0)
    per_doc, by_count = Counter(), defaultdict(Counter)
    for _ in range(800):
        parts = gallery(rng.randint(2, 9), lambda p: sample_scene(rng, p), rng)
        assert isinstance(parts[0], str) and not isinstance(parts[1], str)  # opens with a sentence
        pairs = list(zip(parts[1::2], parts[2::2]))
        styles = {style_of(text) for _, text in pairs}
        assert len(styles) == 1
        per_doc.update(styles)
        for scene, text in pairs:
            by_count[len(scene.objects)][style_of(text)] += 1
    assert set(per_doc) == set(STYLES) and min(per_doc.values()) > 800 / 4 * 0.8
    for n, counts in by_count.items():
        assert all(counts[s] > 0.15 * sum(counts.values()) for s in STYLES), (n, counts)


def test_house_styles_use_only_the_corpus_words_and_say_what_the_scene_holds():
    rng = random.Random(1)
    vocab = set(g.vocabulary())
    for _ in range(300):
        scene = sample_scene(rng, 0.5, corner_prob=0.3)
        for style in STYLES:
            text = styled_caption(scene, style, rng)
            assert set(g.pretokenize(text)) <= vocab and style_of(text) == style, (style, text)
            assert style_of(" ".join(g.pretokenize(text))) == style  # as a model's pieces decode
        tally = styled_caption(scene, "tally", rng)
        said = Counter()
        for item in tally[:-1].split(", "):
            count, colour, noun = item.split()
            said[(colour, noun if noun in g.SHAPES else next(k for k, v in g.PLURALS.items() if v == noun))] += int(count)
        assert said == Counter((o.colour, o.shape) for o in scene.objects)


def test_caption_style_task_needs_its_style(gallery_corpus):
    """synth_caption_style's references are tallies; a tally of the scene scores far above a caption in the
    plain style (the synth_caption references of the same images), which only demonstrations can correct."""
    styled = {im["cocoid"]: [s["raw"] for s in im["sentences"]] for im in
              _load(gallery_corpus, "eval/caption_style/captions.json")["images"]}
    plain = {im["cocoid"]: [s["raw"] for s in im["sentences"]] for im in
             _load(gallery_corpus, "eval/caption/captions.json")["images"]}
    assert set(styled) == set(plain) and len(styled) == 2 * CFG.eval_samples
    assert all(style_of(r) == EVAL_STYLE for refs in styled.values() for r in refs)
    scenes = {**_load(gallery_corpus, "eval/scenes/val.json"), **_load(gallery_corpus, "eval/scenes/train.json")}
    rng = random.Random(2)
    own = {i: styled_caption(scene_from_dict(scenes[str(i)]), EVAL_STYLE, rng) for i in styled}
    other = {i: refs[0] for i, refs in plain.items()}
    assert cider(own, styled) > 3 * cider(other, styled) and cider(own, styled) > 2.0
    assert cider(other, plain) > 3 * cider(own, plain)  # and the other way round on synth_caption


def test_galleries_are_taught_only_in_a_corpus_with_them(corpus, gallery_corpus):
    def kinds(out):
        return Counter(json.loads(s["json"])["kind"] for tar in sorted((out / "interleaved").glob("*.tar"))
                       for s in wds.WebDataset(str(tar), shardshuffle=False))
    assert "gallery" not in kinds(corpus) and 0.3 < kinds(gallery_corpus)["gallery"] / 60 < 0.7
    assert not (corpus / "eval" / "caption_style").exists()
