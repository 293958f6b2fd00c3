"""Benchmark annotation loaders, each on a hand-written fixture in the official format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mm1.eval.loaders import LOADERS, EvalSample, LoadedSplit, load_split
from tests.conftest import FIXTURES

FIX = FIXTURES / "eval"
IMAGES = Path("/data/images")  # never created: loaders must not touch image files


def _ids(split: LoadedSplit) -> list[str]:
    return [s.id for s in split]


# --- registry and argument errors ---------------------------------------------------


def test_registry_lists_every_format():
    assert set(LOADERS) == {
        "vqav2", "okvqa", "textvqa", "vizwiz", "gqa", "coco_karpathy", "nocaps", "textcaps", "text_qa",
    }


def test_unknown_format_lists_known_ones():
    with pytest.raises(ValueError, match="unknown eval format 'vqa3'") as err:
        load_split("vqa3", annotations=FIX / "vizwiz" / "val.json", images=IMAGES)
    for name in LOADERS:
        assert name in str(err.value)


@pytest.mark.parametrize("fmt", sorted(LOADERS))
def test_missing_annotation_file_is_named(fmt, tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_split(fmt, annotations=missing, questions=tmp_path / "q.json", images=IMAGES, split="val")


def test_missing_questions_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="q_missing.json"):
        load_split(
            "vqav2", annotations=FIX / "vqav2" / "v2_mscoco_val2014_annotations.json",
            questions=tmp_path / "q_missing.json", images=IMAGES,
        )


def test_vqav2_requires_questions():
    with pytest.raises(ValueError, match="questions"):
        load_split("vqav2", annotations=FIX / "vqav2" / "v2_mscoco_val2014_annotations.json", images=IMAGES)


def test_single_file_formats_refuse_a_questions_file():
    with pytest.raises(ValueError, match="questions=None"):
        load_split("vizwiz", annotations=FIX / "vizwiz" / "val.json", questions=FIX / "vizwiz" / "val.json",
                   images=IMAGES)


def test_wrong_top_level_raises(tmp_path):
    bad = tmp_path / "TextVQA_0.5.1_val.json"
    bad.write_text(json.dumps({"questions": []}))
    with pytest.raises(ValueError, match="'data'"):
        load_split("textvqa", annotations=bad, images=IMAGES)


def test_invalid_json_raises(tmp_path):
    bad = tmp_path / "val.json"
    bad.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_split("vizwiz", annotations=bad, images=IMAGES)


# --- VQAv2 / OK-VQA -------------------------------------------------------------------

VQA_ANN = FIX / "vqav2" / "v2_mscoco_val2014_annotations.json"
VQA_Q = FIX / "vqav2" / "v2_OpenEnded_mscoco_val2014_questions.json"


def test_vqav2_joins_questions_and_annotations(caplog):
    with caplog.at_level(logging.WARNING):
        split = load_split(
            "vqav2", annotations=VQA_ANN, questions=VQA_Q, images=IMAGES / "val2014", split="val"
        )
    assert _ids(split) == ["262148000", "262148001", "393225000"]
    first = split[0]
    assert first == EvalSample(
        id="262148000",
        image=IMAGES / "val2014" / "COCO_val2014_000000262148.jpg",
        question="Where is he looking?",
        answers=("down", "down", "at table", "skateboard", "down", "table", "down", "down", "down", "down"),
        image_id="262148",
    )
    assert all(len(s.answers) == 10 for s in split)
    assert split.skipped == {"bad 'answers'": 1, "missing 'question'": 1}
    assert split.num_skipped == 2 and len(split) == 3
    assert "skipped 2 malformed entries" in caplog.text


def test_vqav2_subtype_comes_from_the_file_without_split():
    split = load_split("vqav2", annotations=VQA_ANN, questions=VQA_Q, images=IMAGES)
    assert split[2].image == IMAGES / "COCO_val2014_000000393225.jpg"


def test_vqav2_split_with_year_is_kept():
    split = load_split("vqav2", annotations=VQA_ANN, questions=VQA_Q, images=IMAGES, split="train2014")
    assert split[0].image.name == "COCO_train2014_000000262148.jpg"


def test_vqav2_image_pattern_override_for_synthetic_set():
    split = load_split(
        "vqav2", annotations=VQA_ANN, questions=VQA_Q, images=IMAGES, image_pattern="{image_id:012d}.png"
    )
    assert split[0].image == IMAGES / "000000262148.png"


def test_vqav2_bad_image_pattern_raises():
    with pytest.raises(ValueError, match="image_pattern"):
        load_split(
            "vqav2", annotations=VQA_ANN, questions=VQA_Q, images=IMAGES, image_pattern="{imageid}.png"
        )


def test_vqav2_needs_subtype_when_pattern_uses_it(tmp_path):
    q = json.loads(VQA_Q.read_text())
    del q["data_subtype"]
    (tmp_path / "q.json").write_text(json.dumps(q))
    with pytest.raises(ValueError, match="split="):
        load_split("vqav2", annotations=VQA_ANN, questions=tmp_path / "q.json", images=IMAGES)


def test_okvqa_same_format():
    split = load_split(
        "okvqa", annotations=FIX / "okvqa" / "mscoco_val2014_annotations.json",
        questions=FIX / "okvqa" / "OpenEnded_mscoco_val2014_questions.json", images=IMAGES, split="val",
    )
    assert _ids(split) == ["2971475", "5242805"]
    assert split[0].answers[:6] == ("race",) * 6 and len(split[0].answers) == 10
    assert split[0].image == IMAGES / "COCO_val2014_000000297147.jpg"
    assert split[1].question.startswith("What is the name of the famous dreamworks")
    assert split.skipped == {"annotation without question": 1, "bad 'answers'": 1}


def test_relative_images_dir_becomes_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    split = load_split("vqav2", annotations=VQA_ANN, questions=VQA_Q, images=Path("coco/../coco/val2014"))
    assert split[0].image == tmp_path / "coco" / "val2014" / "COCO_val2014_000000262148.jpg"
    assert split[0].image.is_absolute()


# --- TextVQA, VizWiz, GQA ---------------------------------------------------------------


def test_textvqa():
    split = load_split("textvqa", annotations=FIX / "textvqa" / "TextVQA_0.5.1_val.json", images=IMAGES)
    assert _ids(split) == ["34602", "34603", "34605"]
    s = split[0]
    assert s.image == IMAGES / "0054c91397f2fe05.jpg" and s.image_id == "0054c91397f2fe05"
    assert s.question == "what is the brand of phone?"
    assert len(s.answers) == 10 and s.answers.count("nokia") == 9
    assert split.skipped == {"bad 'answers'": 1}


def test_vizwiz():
    split = load_split("vizwiz", annotations=FIX / "vizwiz" / "val.json", images=IMAGES / "val")
    assert _ids(split) == ["VizWiz_val_00000000", "VizWiz_val_00000001", "VizWiz_val_00000003"]
    s = split[1]
    assert s.image == IMAGES / "val" / "VizWiz_val_00000001.jpg" and s.image_id == "VizWiz_val_00000001"
    assert s.question == "Can you tell me what this medicine is please?"
    assert len(s.answers) == 10 and s.answers[3] == "unsuitable"
    assert split[0].answers == ("unanswerable",) * 10
    assert split.skipped == {"missing 'question'": 1}


def test_vizwiz_refuses_path_escape(tmp_path):
    entries = json.loads((FIX / "vizwiz" / "val.json").read_text())
    entries[0]["image"] = "../../etc/passwd"
    (tmp_path / "val.json").write_text(json.dumps(entries))
    split = load_split("vizwiz", annotations=tmp_path / "val.json", images=IMAGES)
    assert split.skipped == {"missing 'question'": 1, "unsafe image path": 1}


def test_gqa():
    split = load_split("gqa", annotations=FIX / "gqa" / "testdev_balanced_questions.json", images=IMAGES)
    assert _ids(split) == ["20968379", "20968380", "201640614"]
    s = split[2]
    assert s.answers == ("table",) and s.question == "What piece of furniture is the cup on?"
    assert s.image == IMAGES / "2354786.jpg" and s.image_id == "2354786"
    assert split[0].image == IMAGES / "n288870.jpg"
    assert split.skipped == {"missing 'answer'": 1}


# --- captioning ----------------------------------------------------------------------

KARPATHY = FIX / "coco_karpathy" / "dataset_coco.json"


def test_coco_karpathy_test_split():
    split = load_split("coco_karpathy", annotations=KARPATHY, images=IMAGES, split="test")
    assert _ids(split) == ["391895", "60623"]
    s = split[0]
    assert s.image == IMAGES / "val2014" / "COCO_val2014_000000391895.jpg"
    assert s.question is None and s.image_id == "391895"
    assert s.answers == (
        "A man with a red helmet on a small moped on a dirt road.",
        "Man riding a motor bike on a dirt road on the countryside.",
        "A man riding on the back of a motorcycle.",
    )
    assert split.skipped == {"bad 'sentences'": 1}


def test_coco_karpathy_train_and_restval():
    train = load_split("coco_karpathy", annotations=KARPATHY, images=IMAGES, split="train")
    assert _ids(train) == ["57870"] and train.skipped == {}
    assert train[0].image == IMAGES / "train2014" / "COCO_train2014_000000057870.jpg"
    merged = load_split(
        "coco_karpathy", annotations=KARPATHY, images=IMAGES, split="train", restval_as_train=True
    )
    assert _ids(merged) == ["522418", "57870"]
    assert _ids(load_split("coco_karpathy", annotations=KARPATHY, images=IMAGES, split="val")) == ["184613"]


def test_coco_karpathy_split_errors():
    with pytest.raises(ValueError, match="split="):
        load_split("coco_karpathy", annotations=KARPATHY, images=IMAGES)
    with pytest.raises(ValueError, match=r"splits present: \['restval', 'test', 'train', 'val'\]"):
        load_split("coco_karpathy", annotations=KARPATHY, images=IMAGES, split="testing")


def test_nocaps_groups_captions_per_image():
    split = load_split("nocaps", annotations=FIX / "nocaps" / "nocaps_val_4500_captions.json", images=IMAGES)
    assert _ids(split) == ["0", "1", "2"]
    s = split[0]
    assert s.image == IMAGES / "0013ea2087020901.jpg" and s.question is None and s.image_id == "0"
    assert s.answers == (
        "A baby is standing in front of a house.",
        "A little girl in a white jacket and sandals.",
        "A young child stands in front of a house.",
    )
    assert split[2].answers == ("A jellyfish floating in dark blue water.",)
    assert split.skipped == {"caption missing 'caption'": 1, "missing 'file_name'": 1}


def test_nocaps_orphans_and_captionless_images(tmp_path):
    doc = json.loads((FIX / "nocaps" / "nocaps_val_4500_captions.json").read_text())
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != 1]
    doc["annotations"].append({"image_id": 99, "id": 990, "caption": "Nothing here."})
    (tmp_path / "nocaps.json").write_text(json.dumps(doc))
    split = load_split("nocaps", annotations=tmp_path / "nocaps.json", images=IMAGES)
    assert _ids(split) == ["0", "2"]
    assert split.skipped == {
        "caption for unknown image": 1, "caption missing 'caption'": 1,
        "missing 'file_name'": 1, "no captions": 1,
    }


TEXTCAPS = FIX / "textcaps" / "TextCaps_0.1_val.json"


def test_textcaps_groups_entries_by_image():
    split = load_split("textcaps", annotations=TEXTCAPS, images=IMAGES / "train_images")
    assert _ids(split) == ["003a8ae2ef43b901", "00685bc495504d61"]
    s = split[0]
    assert s.image == IMAGES / "train_images" / "003a8ae2ef43b901.jpg" and s.question is None
    assert s.answers == (
        "A black Canon camera with a zoom lens is on a white table.",
        "A Canon EOS camera sitting on a table.",
        "The front of a Canon camera with the lens attached.",
    )
    assert len(split[1].answers) == 2
    assert split.skipped == {"missing 'image_id'": 1}


def test_textcaps_without_reference_strs_uses_caption_strs(tmp_path):
    doc = json.loads(TEXTCAPS.read_text())
    for entry in doc["data"]:
        entry.pop("reference_strs")
        entry.pop("reference_tokens")
    doc["data"][1]["caption_str"] = 17  # one bad caption in the middle of a group
    (tmp_path / "TextCaps_0.1_train.json").write_text(json.dumps(doc))
    split = load_split("textcaps", annotations=tmp_path / "TextCaps_0.1_train.json", images=IMAGES)
    assert split[0].answers == (
        "A black Canon camera with a zoom lens is on a white table.",
        "The front of a Canon camera with the lens attached.",
    )
    assert split[1].answers == (
        "A bottle of Duvel beer next to a full glass.",
        "A Duvel beer bottle and a glass on a bar.",
    )
    assert split.skipped == {"bad 'caption_str'": 1, "missing 'image_id'": 1}


def test_textcaps_test_split_has_no_captions(tmp_path):
    doc = {"dataset_type": "test", "data": [{"image_id": "0a1b", "image_path": "test/0a1b.jpg"}]}
    (tmp_path / "TextCaps_0.1_test.json").write_text(json.dumps(doc))
    split = load_split("textcaps", annotations=tmp_path / "TextCaps_0.1_test.json", images=IMAGES)
    assert len(split) == 0 and split.skipped == {"no captions": 1}


# --- shared behaviour ----------------------------------------------------------------


def test_duplicate_ids_are_skipped(tmp_path):
    doc = json.loads((FIX / "textvqa" / "TextVQA_0.5.1_val.json").read_text())
    doc["data"].append(dict(doc["data"][0]))
    (tmp_path / "tv.json").write_text(json.dumps(doc))
    split = load_split("textvqa", annotations=tmp_path / "tv.json", images=IMAGES)
    assert len(split) == 3 and split.skipped == {"bad 'answers'": 1, "duplicate id": 1}


def test_non_object_entries_are_skipped(tmp_path):
    entries = json.loads((FIX / "vizwiz" / "val.json").read_text()) + ["oops", None]
    (tmp_path / "val.json").write_text(json.dumps(entries))
    split = load_split("vizwiz", annotations=tmp_path / "val.json", images=IMAGES)
    assert len(split) == 3 and split.skipped == {"entry is not a JSON object": 2, "missing 'question'": 1}


def test_loaders_are_pure_python():
    import ast

    import mm1.eval.loaders as pkg

    for source in Path(pkg.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] in {"torch", "numpy", "PIL"} for n in names), source


def test_text_qa_has_no_images_and_skips_bad_entries(tmp_path):
    path = tmp_path / "text.json"
    path.write_text(json.dumps({"data": [
        {"question_id": 7, "question": "what is two plus three?", "answers": ["5"]},
        {"question_id": 8, "question": "what colour do red and blue make?"},  # no answers
        {"question_id": 7, "question": "again?", "answers": ["x"]},  # duplicate id
    ]}))
    split = load_split("text_qa", annotations=path, images=tmp_path)
    assert list(split) == [EvalSample("7", None, "what is two plus three?", ("5",), "")]
    assert split.skipped == {"missing 'answers'": 1, "duplicate id": 1}
