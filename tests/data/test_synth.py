"""The embedded synthetic corpus: format, determinism, vocabulary, eval schemas, held-out scenes."""
from __future__ import annotations

import glob
import hashlib
import io
import json
import math
import os
import random
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from mm1.config.schema import SynthConfig
from mm1.data.synth import corpus_folder, corpus_is_complete, pretokenize, vocabulary, write_corpus
from mm1.data.synth.render import label_box, render
from mm1.data.synth.scene import scene_from_dict
from tests.conftest import ROOT

CFG = SynthConfig(seed=3, caption_samples=40, interleaved_samples=40, text_samples=40, eval_samples=40,
                  samples_per_shard=16, image_size=64)
STREAMS = {"caption": CFG.caption_samples, "interleaved": CFG.interleaved_samples, "text": CFG.text_samples}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_corpus(out, CFG, workers=1)
    return out


def _read(out: Path, stream: str) -> list[dict]:
    urls = sorted(glob.glob(str(out / stream / f"{stream}-*.tar")))
    return list(wds.WebDataset(urls, shardshuffle=False))


def _digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file()}


def _load(out: Path, rel: str):
    return json.loads((out / rel).read_text())


def test_layout_and_manifest(corpus):
    manifest = _load(corpus, "manifest.json")
    for stream, n in STREAMS.items():
        shards = manifest["shards"][stream]
        assert len(shards) == math.ceil(n / CFG.samples_per_shard)
        assert shards == [f"{stream}/{stream}-{i:06d}.tar" for i in range(len(shards))]
        assert manifest["counts"][stream] == n
    assert manifest["seed"] == CFG.seed and manifest["vocabulary_size"] == len(vocabulary())
    assert corpus_is_complete(corpus) and corpus_is_complete(corpus, CFG)
    assert not corpus_is_complete(corpus, replace(CFG, seed=4))
    assert not corpus_is_complete(corpus / "missing")


# sha256 over (path, sha256 of the bytes) of every file of the CFG corpus but the manifest, the marker and the
# corner set (eval/corner/, new in version 4), as generator version 3 wrote them (commit 8dd1fc2).
VERSION_3_BYTES = "1665ef5754ebff4b1bfa12f72a9cbfd923e306b2c41050429dfa53c870460f21"


def test_without_corner_scenes_the_corpus_is_version_3_byte_for_byte(corpus):
    """Results measured on version 3 stay valid: with data.synth.corner_scenes 0 (the default) version 4
    writes every shard and every version-3 eval file unchanged."""
    h = hashlib.sha256()
    files = [p for p in sorted(corpus.rglob("*")) if p.is_file() and p.name not in ("manifest.json", ".mm1-synth")
             and p.relative_to(corpus).parts[:2] != ("eval", "corner")]
    for p in files:
        h.update(str(p.relative_to(corpus)).encode() + b"\0" + hashlib.sha256(p.read_bytes()).digest())
    assert len(files) == 108 and h.hexdigest() == VERSION_3_BYTES


def test_without_galleries_or_striped_scenes_a_corpus_keeps_its_version_4_folder_and_manifest(corpus):
    """data.synth.gallery_docs and striped_scenes came after version 4: at 0 a config is named as before, so the
    corpora (and the encoder warm starts cached against their shards) of earlier runs are found, not written
    again."""
    assert corpus_folder(SynthConfig()).name == "v4-f97159e5f7"  # as version 4 named it (commit 2dfefa2)
    config = _load(corpus, "manifest.json")["config"]
    assert "gallery_docs" not in config and "striped_scenes" not in config and corpus_is_complete(corpus, CFG)
    assert corpus_folder(replace(CFG, gallery_docs=0.3)) != corpus_folder(CFG)
    assert corpus_folder(replace(CFG, striped_scenes=0.3)) not in (corpus_folder(CFG),
                                                                  corpus_folder(replace(CFG, gallery_docs=0.3)))


def test_incomplete_corpus_detected(tmp_path):
    cfg = replace(CFG, caption_samples=5, interleaved_samples=3, text_samples=3, eval_samples=4)
    write_corpus(tmp_path, cfg)
    assert corpus_is_complete(tmp_path, cfg)
    (tmp_path / "eval/images/val/000002000001.png").unlink()
    assert not corpus_is_complete(tmp_path, cfg)
    write_corpus(tmp_path, cfg)
    (tmp_path / "text/text-000000.tar").write_bytes(b"")
    assert not corpus_is_complete(tmp_path, cfg)


def test_caption_shards(corpus):
    samples = _read(corpus, "caption")
    assert [s["__key__"] for s in samples] == [f"c{i:07d}" for i in range(CFG.caption_samples)]
    for s in samples:
        assert {"png", "txt", "json"} <= set(s)
        meta = json.loads(s["json"])
        assert meta["caption"] == s["txt"].decode() and meta["width"] == meta["height"] == CFG.image_size
        img = Image.open(io.BytesIO(s["png"]))
        assert img.size == (CFG.image_size, CFG.image_size) and img.mode == "RGB"
        assert 1 <= len(meta["scene"]["objects"]) <= 4


def test_interleaved_shards(corpus):
    samples = _read(corpus, "interleaved")
    assert len(samples) == CFG.interleaved_samples
    kinds = set()
    for s in samples:
        doc = json.loads(s["json"])
        kinds.add(doc["kind"])
        assert len(doc["texts"]) == len(doc["images"]) == len(doc["scenes"])
        assert all((t is None) != (i is None) for t, i in zip(doc["texts"], doc["images"]))
        names = [i for i in doc["images"] if i is not None]
        most = 9 if doc["kind"] == "vqa" else 4
        assert 2 <= len(names) <= most and names == [f"{j}.png" for j in range(len(names))]
        assert {k for k in s if k.endswith(".png")} == set(names)
        assert doc["texts"][0], "every document opens with text: an image after <s> starts only caption pairs"
    assert kinds == {"story", "vqa", "textvqa"}


def test_text_shards(corpus):
    samples = _read(corpus, "text")
    assert [s["__key__"] for s in samples] == [f"t{i:07d}" for i in range(CFG.text_samples)]
    assert all(s["txt"].decode().strip() for s in samples)


@pytest.mark.slow
def test_deterministic_across_processes(corpus, tmp_path):
    """Same seed -> identical bytes, under another hash seed and with 2 worker processes; another seed differs."""
    code = ("import sys; from mm1.config.schema import SynthConfig; from mm1.data.synth import write_corpus; "
            f"write_corpus(sys.argv[1], SynthConfig(**{json.dumps(CFG.__dict__)}), workers=2)")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "again")], check=True, env=env,
                   cwd=ROOT)
    assert _digests(tmp_path / "again") == _digests(corpus)
    other = write_corpus(tmp_path / "other", replace(CFG, seed=CFG.seed + 1))
    first = other["shards"]["caption"][0]
    assert (tmp_path / "other" / first).read_bytes() != (corpus / first).read_bytes()


def _all_texts(out: Path):
    for s in _read(out, "caption"):
        yield s["txt"].decode()
    for s in _read(out, "interleaved"):
        yield from (t for t in json.loads(s["json"])["texts"] if t is not None)
    for s in _read(out, "text"):
        yield s["txt"].decode()
    for split in ("train", "val"):
        yield from (q["question"] for q in _load(out, f"eval/vqa/{split}_questions.json")["questions"])
        for a in _load(out, f"eval/vqa/{split}_annotations.json")["annotations"]:
            yield a["multiple_choice_answer"]
            yield from (x["answer"] for x in a["answers"])
        for d in _load(out, f"eval/textvqa/{split}.json")["data"]:
            yield d["question"]
            yield from d["answers"]
    for im in _load(out, "eval/caption/captions.json")["images"]:
        yield from (s["raw"] for s in im["sentences"])


def test_vocabulary_covers_every_text(corpus):
    vocab = vocabulary()
    assert vocab == sorted(set(vocab)) and len(vocab) < 400
    known = set(vocab)
    for text in _all_texts(corpus):
        assert text == text.lower()
        unknown = [t for t in pretokenize(text) if t not in known]
        assert not unknown, (text, unknown)


def test_vqa_files(corpus):
    for split in ("train", "val"):
        qs = _load(corpus, f"eval/vqa/{split}_questions.json")
        ans = _load(corpus, f"eval/vqa/{split}_annotations.json")
        assert {"info", "task_type", "data_type", "data_subtype", "questions"} <= set(qs)
        assert len(qs["questions"]) == len(ans["annotations"]) == CFG.eval_samples
        by_qid = {a["question_id"]: a for a in ans["annotations"]}
        for q in qs["questions"]:
            assert set(q) == {"image_id", "question", "question_id"}
            a = by_qid[q["question_id"]]
            assert set(a) == {"question_id", "image_id", "question_type", "answer_type",
                              "multiple_choice_answer", "answers"}
            assert a["image_id"] == q["image_id"] and a["answer_type"] in ("yes/no", "number", "other")
            assert q["question"].startswith(a["question_type"])
            assert [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
            assert all(set(x) == {"answer", "answer_confidence", "answer_id"} for x in a["answers"])
            assert a["multiple_choice_answer"] in [x["answer"] for x in a["answers"]]
            assert (corpus / f"eval/images/{split}/{q['image_id']:012d}.png").is_file()


def test_vqa_answers_need_normalisation(corpus):
    answers = [[x["answer"] for x in a["answers"]]
               for a in _load(corpus, "eval/vqa/val_annotations.json")["annotations"]]
    assert any(len(set(a)) > 1 for a in answers)  # some human answers differ in wording


def test_textvqa_files(corpus):
    for split in ("train", "val"):
        data = _load(corpus, f"eval/textvqa/{split}.json")
        assert {"dataset_name", "dataset_type", "data"} <= set(data) and len(data["data"]) == CFG.eval_samples
        scenes = _load(corpus, f"eval/scenes/{split}.json")
        for d in data["data"]:
            assert {"question", "image_id", "image_classes", "question_id", "answers", "image_width",
                    "image_height", "set_name"} <= set(d)
            assert len(d["answers"]) == 10 and d["set_name"] == split
            assert (corpus / f"eval/images/{split}/{d['image_id']}.png").is_file()
            assert d["answers"].count(scenes[str(int(d["image_id"]))]["label"]["text"]) >= 5


def test_caption_file(corpus):
    data = _load(corpus, "eval/caption/captions.json")
    assert data["dataset"] == "coco" and len(data["images"]) == 2 * CFG.eval_samples
    sentids = []
    for i, im in enumerate(data["images"]):
        assert im["imgid"] == i and im["filepath"] == im["split"] in ("train", "val")
        assert im["filename"] == f"{im['cocoid']:012d}.png"
        assert (corpus / "eval/images" / im["filepath"] / im["filename"]).is_file()
        assert len(im["sentences"]) == 5 and len({s["raw"] for s in im["sentences"]}) == 5
        for s in im["sentences"]:
            assert s["imgid"] == i and s["tokens"] and set(s) == {"raw", "tokens", "imgid", "sentid"}
        sentids += im["sentids"]
    assert sentids == list(range(len(sentids)))


def _ink_fraction(img: Image.Image, box) -> float:
    """Share of near-black pixels inside a label box."""
    x0, y0, x1, y1 = box
    return float((np.asarray(img.convert("L"), dtype=float)[y0:y1, x0:x1] < 60).mean())


def test_label_is_visible_at_full_resolution(corpus):
    labelled = 0
    for sample in _read(corpus, "caption"):
        scene = json.loads(sample["json"])["scene"]
        if scene["label"]:
            labelled += 1
            img = Image.open(io.BytesIO(sample["png"]))
            x0, y0, x1, y1 = scene["label_box"]
            assert np.asarray(img.convert("L"), dtype=float)[y0:y1, x0:x1].std() > 40  # glyphs on a white box
            assert _ink_fraction(img, scene["label_box"]) > 0.1
    assert labelled > 0


def test_label_is_fine_detail(corpus):
    """The label's 1-px strokes are crisp at 64 px and a gray smear after a 2x downsample."""
    scenes = _load(corpus, "eval/scenes/val.json")
    for image_id, scene in scenes.items():
        img = Image.open(corpus / f"eval/images/val/{int(image_id):012d}.png")
        low = img.resize((32, 32), Image.BOX).resize((64, 64), Image.NEAREST)
        assert _ink_fraction(img, scene["label_box"]) > 0.1
        assert _ink_fraction(low, scene["label_box"]) < 0.05


@pytest.mark.parametrize("size", [32, 64, 96, 128])
def test_render_sizes(size):
    from mm1.data.synth.scene import sample_scene

    scene = sample_scene(random.Random(0), label_prob=1.0)
    img = render(scene, size)
    assert img.size == (size, size) and img.mode == "RGB"
    x0, y0, x1, y1 = label_box(scene, size)
    assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size


def test_eval_scenes_held_out(corpus):
    eval_keys, eval_hashes = set(), set()
    for split in ("train", "val"):
        eval_keys |= {scene_from_dict(d).key() for d in _load(corpus, f"eval/scenes/{split}.json").values()}
        eval_hashes |= {hashlib.sha256(p.read_bytes()).digest() for p in (corpus / "eval/images" / split).iterdir()}
    assert len(eval_keys) == 2 * CFG.eval_samples  # distinct within and across splits
    train_keys, train_hashes = set(), set()
    for s in _read(corpus, "caption"):
        train_keys.add(scene_from_dict(json.loads(s["json"])["scene"]).key())
        train_hashes.add(hashlib.sha256(s["png"]).digest())
    for s in _read(corpus, "interleaved"):
        train_keys |= {scene_from_dict(d).key() for d in json.loads(s["json"])["scenes"] if d}
        train_hashes |= {hashlib.sha256(v).digest() for k, v in s.items() if k.endswith(".png")}
    assert not eval_keys & train_keys and not eval_hashes & train_hashes


def test_scene_round_trip():
    from mm1.data.synth.scene import sample_scene

    rng = random.Random(1)
    for _ in range(50):
        scene = sample_scene(rng)
        assert scene_from_dict(json.loads(json.dumps(scene.to_dict()))) == scene


def test_label_never_covers_a_shape():
    from mm1.data.synth.scene import sample_scene

    rng = random.Random(2)
    for _ in range(500):
        scene = sample_scene(rng, label_prob=1.0)
        x0, y0, x1, y1 = scene.label.box()
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        for o in scene.objects:
            (cx, cy), r = o.centre, o.radius
            assert cx + r < x0 or cx - r >= x1 or cy + r < y0 or cy - r >= y1, (scene, o)


def test_rewrite_removes_stale_shards(tmp_path):
    small = replace(CFG, caption_samples=20, interleaved_samples=2, text_samples=2, eval_samples=2, samples_per_shard=5)
    write_corpus(tmp_path, small)
    assert len(list((tmp_path / "caption").glob("*.tar"))) == 4
    write_corpus(tmp_path, replace(small, caption_samples=6))
    assert sorted(p.name for p in (tmp_path / "caption").iterdir()) == ["caption-000000.tar", "caption-000001.tar"]
    assert corpus_is_complete(tmp_path, replace(small, caption_samples=6))
