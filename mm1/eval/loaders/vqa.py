"""Loaders for the VQA benchmarks' official files: VQAv2 / OK-VQA, TextVQA,
VizWiz and GQA. Each returns one `EvalSample` per question."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mm1.eval.loaders.common import (
    Collector,
    EvalSample,
    LoadedSplit,
    Malformed,
    check_pattern,
    get,
    get_answer_dicts,
    get_id,
    get_strings,
    image_file,
    images_root,
    no_questions_file,
    read_json,
    top_level,
)

# COCO image names; {subtype} is e.g. "val2014" (from `split` or the file).
COCO_PATTERN = "COCO_{subtype}_{image_id:012d}.jpg"


def _coco_subtype(split: str | None, questions_doc: dict) -> str | None:
    """'val' -> 'val2014'; 'test2015' stays; else the file's own data_subtype."""
    if split:
        return split if split[-4:].isdigit() else f"{split}2014"
    subtype = questions_doc.get("data_subtype")
    return subtype if isinstance(subtype, str) else None


def _index_annotations(annotations: list, out: Collector) -> dict[str, dict]:
    by_qid: dict[str, dict] = {}
    for ann in annotations:
        try:
            qid = get_id(ann, "question_id")
        except Malformed as err:
            out.skip(f"annotation {err}")
            continue
        if qid in by_qid:
            out.skip("duplicate annotation")
            continue
        by_qid[qid] = ann
    return by_qid


def _vqav2_sample(
    q: Any, by_qid: dict[str, dict], root: Path, pattern: str, subtype: str | None
) -> EvalSample:
    qid, image_id = get_id(q, "question_id"), get(q, "image_id", int)
    question = get(q, "question", str)
    ann = by_qid.get(qid)
    if ann is None:
        raise Malformed("no annotation for question")
    if ann.get("image_id") != image_id:
        raise Malformed("image_id differs between question and annotation")
    answers = get_answer_dicts(ann)
    name = pattern.format(image_id=image_id, subtype=subtype)
    return EvalSample(qid, image_file(root, name), question, answers, str(image_id))


def load_vqav2(
    *, annotations: Path, questions: Path | None, images: Path, split: str | None = None,
    image_pattern: str | None = None,
) -> LoadedSplit:
    """VQAv2 or OK-VQA: `*_questions.json` joined to `*_annotations.json` on question_id.

    Image names follow `image_pattern` (fields: image_id: int, subtype: str),
    by default COCO's `COCO_{subtype}_{image_id:012d}.jpg` where subtype is
    `split` + "2014" ("val" -> "val2014"; a split that already ends in a year
    is kept), or the questions file's `data_subtype` when split is None.
    """
    if questions is None:
        raise ValueError("vqav2 needs questions= (the *_questions.json file)")
    q_doc = read_json(questions)
    q_list = top_level(q_doc, "questions", list, questions)
    a_list = top_level(read_json(annotations), "annotations", list, annotations)
    pattern = image_pattern or COCO_PATTERN
    subtype = _coco_subtype(split, q_doc)
    if subtype is None and "{subtype" in pattern:
        raise ValueError(f"{questions} has no data_subtype: pass split= (e.g. 'val') or image_pattern=")
    check_pattern(pattern, image_id=0, subtype=subtype)
    root, out = images_root(images), Collector()
    by_qid = _index_annotations(a_list, out)
    for q in q_list:
        out.add(lambda: _vqav2_sample(q, by_qid, root, pattern, subtype))
    asked = {str(q.get("question_id")) for q in q_list if isinstance(q, dict)}
    out.skip("annotation without question", len(by_qid.keys() - asked))
    return out.result()


def _textvqa_sample(entry: Any, root: Path, pattern: str) -> EvalSample:
    qid, image_id = get_id(entry, "question_id"), get(entry, "image_id", str)
    question, answers = get(entry, "question", str), get_strings(entry, "answers")
    return EvalSample(qid, image_file(root, pattern.format(image_id=image_id)), question, answers, image_id)


def load_textvqa(
    *, annotations: Path, questions: Path | None = None, images: Path, split: str | None = None,
    image_pattern: str = "{image_id}.jpg",
) -> LoadedSplit:
    """TextVQA_0.5.1_{train,val}.json: {"data": [{question, image_id, question_id, answers}]}.

    Both train and val images live in TextVQA's `train_images/` folder.
    """
    no_questions_file("textvqa", questions)
    data = top_level(read_json(annotations), "data", list, annotations)
    check_pattern(image_pattern, image_id="x")
    root, out = images_root(images), Collector()
    for entry in data:
        out.add(lambda: _textvqa_sample(entry, root, image_pattern))
    return out.result()


def _vizwiz_sample(entry: Any, root: Path) -> EvalSample:
    image, question = get(entry, "image", str), get(entry, "question", str)
    answers = get_answer_dicts(entry)
    path = image_file(root, image)
    return EvalSample(path.stem, path, question, answers, path.stem)


def load_vizwiz(
    *, annotations: Path, questions: Path | None = None, images: Path, split: str | None = None,
) -> LoadedSplit:
    """VizWiz {split}.json: a list of {image, question, answers: [{answer, answer_confidence}]}.

    id and image_id are the image file's stem ("VizWiz_val_00000000").
    """
    no_questions_file("vizwiz", questions)
    entries = top_level(read_json(annotations), None, list, annotations)
    root, out = images_root(images), Collector()
    for entry in entries:
        out.add(lambda: _vizwiz_sample(entry, root))
    return out.result()


def _gqa_sample(qid: str, entry: Any, root: Path, pattern: str) -> EvalSample:
    image_id = get(entry, "imageId", str)
    question, answer = get(entry, "question", str), get(entry, "answer", str)
    return EvalSample(qid, image_file(root, pattern.format(image_id=image_id)), question, (answer,), image_id)


def load_gqa(
    *, annotations: Path, questions: Path | None = None, images: Path, split: str | None = None,
    image_pattern: str = "{image_id}.jpg",
) -> LoadedSplit:
    """GQA {split}_balanced_questions.json: {qid: {imageId, question, answer, fullAnswer, ...}}.

    answers is the one short `answer` (not `fullAnswer`).
    """
    no_questions_file("gqa", questions)
    doc = top_level(read_json(annotations), None, dict, annotations)
    check_pattern(image_pattern, image_id="x")
    root, out = images_root(images), Collector()
    for qid, entry in doc.items():
        out.add(lambda: _gqa_sample(qid, entry, root, image_pattern))
    return out.result()
