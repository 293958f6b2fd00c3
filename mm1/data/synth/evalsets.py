"""Held-out evaluation sets in the real benchmarks' file formats (VQAv2, TextVQA, COCO Karpathy).

Every eval image carries a label, so one image serves every image task: one
VQA question about the shapes, one TextVQA question about the label, five
reference captions, a detail question (the colour of the small object, when the
scene has exactly one), a corner question (the colour of the shape in one
corner, when it is a corner scene: only corpora with data.synth.corner_scenes
> 0 have them), a stripes question (the colour of a striped shape, only in
corpora with data.synth.striped_scenes > 0, whose eval files have this set)
and a dialect question (a colour or shape answered in
`EVAL_DIALECT`, when the scene allows one); with galleries in the corpus
(data.synth.gallery_docs > 0), five more references in `styles.EVAL_STYLE`
(the synth_caption_style task). Scenes come from
their own random streams ("eval-val", "eval-train"), are distinct from one
another, and their keys are excluded from the training streams. The text
questions (no image) come from the streams "eval-text-val" / "eval-text-train".
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mm1.data.synth import grammar as g
from mm1.data.synth.describe import reference_captions
from mm1.data.synth.documents import DIALECT_KINDS
from mm1.data.synth.grammar import pretokenize
from mm1.data.synth.questions import QA, ask, ask_detail, ask_striped, ask_text, human_answers
from mm1.data.synth.textdocs import text_question
from mm1.data.synth.render import png_bytes, render
from mm1.data.synth.scene import Scene, sample_scene
from mm1.data.synth.shards import json_bytes, sample_rng, write_bytes
from mm1.data.synth.streams import scene_record
from mm1.data.synth.styles import EVAL_STYLE, style_references

SPLITS = ("val", "train")  # val is drawn first; train (the few-shot demonstrations) avoids its scenes
ID_BASE = {"train": 1_000_000, "val": 2_000_000}  # image_id = base + index: unique across splits
TEXT_ID_BASE = {"train": 3_000_000, "val": 4_000_000}  # question ids of the text questions
N_ANSWERS, N_REFERENCES = 10, 5
EVAL_DIALECT = 0  # the index in grammar.DIALECTS that synth_dialect answers in (all are equally common in training)
QUESTION_SETS = {"vqa": 0, "detail": 2, "dialect": 3, "corner": 4, "stripes": 5}  # VQAv2 format: question_id =
# image_id * 1000 + this; "stripes" only in a corpus with striped scenes (`question_sets`)


@dataclass
class EvalItem:
    image_id: int
    scene: Scene
    vqa: QA
    vqa_answers: list[str]
    text: QA
    text_answers: list[str]
    references: list[str]
    detail: QA | None = None
    detail_answers: list[str] | None = None
    dialect: QA | None = None  # answer already in EVAL_DIALECT
    corner: QA | None = None
    corner_answers: list[str] | None = None
    style_references: list[str] | None = None  # in EVAL_STYLE; only for a corpus with galleries
    stripes: QA | None = None  # the colour of a striped shape; only in a corpus with striped scenes
    stripes_answers: list[str] | None = None


def image_file(split: str, image_id: int) -> str:
    """Path of an eval image relative to the corpus root."""
    return f"eval/images/{split}/{image_id:012d}.png"


def question_sets(striped: bool) -> list[str]:
    """The VQAv2-format question sets of a corpus (with striped scenes or without)."""
    return [name for name in QUESTION_SETS if striped or name != "stripes"]


def heldout_scenes(seed: int, n: int, corner_prob: float = 0.0, striped_prob: float = 0.0) -> dict[str, list[Scene]]:
    """n distinct labelled scenes per split (a share `corner_prob` of them corner scenes, a share `striped_prob`
    of the others striped scenes), no scene shared between splits."""
    seen: set[str] = set()
    out = {}
    for split in SPLITS:
        out[split] = []
        for i in range(n):
            scene = sample_scene(sample_rng(seed, f"eval-{split}", i), 1.0, seen, corner_prob, striped_prob)
            seen.add(scene.key())
            out[split].append(scene)
    return out


def _dialect_qa(scene: Scene, rng) -> QA | None:
    qa = ask(scene, rng, list(DIALECT_KINDS))
    if qa is None:
        return None
    return QA(qa.kind, qa.question, g.DIALECTS[EVAL_DIALECT][qa.answer], qa.question_type, qa.answer_type, "yes/no")


def _item(seed: int, split: str, i: int, scene: Scene, detail: str, caption_style: bool) -> EvalItem:
    rng = sample_rng(seed, f"eval-{split}-language", i)
    vqa, text = ask(scene, rng, detail=detail), ask_text(scene, rng)
    item = EvalItem(ID_BASE[split] + i, scene, vqa, human_answers(vqa, rng, N_ANSWERS), text,
                    human_answers(text, rng, N_ANSWERS), reference_captions(scene, rng, N_REFERENCES))
    rng = sample_rng(seed, f"eval-{split}-detail", i)
    item.detail = ask_detail(scene, rng)
    item.detail_answers = human_answers(item.detail, rng, N_ANSWERS) if item.detail else None
    item.dialect = _dialect_qa(scene, sample_rng(seed, f"eval-{split}-dialect", i))
    rng = sample_rng(seed, f"eval-{split}-corner", i)
    item.corner = ask_detail(scene, rng, "corner")
    item.corner_answers = human_answers(item.corner, rng, N_ANSWERS) if item.corner else None
    rng = sample_rng(seed, f"eval-{split}-stripes", i)
    item.stripes = ask_striped(scene, rng)
    item.stripes_answers = human_answers(item.stripes, rng, N_ANSWERS) if item.stripes else None
    if caption_style:
        item.style_references = style_references(scene, EVAL_STYLE, sample_rng(seed, f"eval-{split}-style", i),
                                                 N_REFERENCES)
    return item


def _questions_of(items: list[EvalItem], name: str) -> list[tuple[int, int, QA, list[str]]]:
    """(image_id, question_id, qa, human answers) of one question set; items without one are left out."""
    out = []
    for it in items:
        qa = {"vqa": it.vqa, "detail": it.detail, "dialect": it.dialect, "corner": it.corner,
              "stripes": it.stripes}[name]
        if qa is not None:
            answers = {"vqa": it.vqa_answers, "detail": it.detail_answers, "corner": it.corner_answers,
                       "stripes": it.stripes_answers}.get(name) or [qa.answer] * N_ANSWERS
            out.append((it.image_id, it.image_id * 1000 + QUESTION_SETS[name], qa, answers))
    return out


def _vqa_files(split: str, entries: list[tuple[int, int, QA, list[str]]]) -> tuple[dict, dict]:
    """VQAv2 questions and annotations of (image_id, question_id, qa, human answers) entries."""
    header = {"info": {"description": "mm1 synthetic shapes VQA", "version": "2.0"},
              "license": {"name": "Apache-2.0"}, "data_type": "mm1_synth", "data_subtype": split}
    questions = [{"image_id": image_id, "question": qa.question, "question_id": qid}
                 for image_id, qid, qa, _ in entries]
    annotations = []
    for image_id, qid, qa, human in entries:
        answers = [{"answer": a, "answer_confidence": "yes" if a == qa.answer else "maybe", "answer_id": j + 1}
                   for j, a in enumerate(human)]
        annotations.append({"question_id": qid, "image_id": image_id, "question_type": qa.question_type,
                            "answer_type": qa.answer_type, "multiple_choice_answer": qa.answer, "answers": answers})
    return ({**header, "task_type": "Open-Ended", "questions": questions},
            {**header, "annotations": annotations})


def text_questions(seed: int, split: str, n: int) -> dict:
    """n questions about the facts of the text-only documents, {"data": [{"question_id", "question",
    "answers": [answer]}]} (the `text_qa` eval format)."""
    data = []
    for i in range(n):
        question, answer = text_question(sample_rng(seed, f"eval-text-{split}", i))
        data.append({"question_id": TEXT_ID_BASE[split] + i, "question": question, "answers": [answer]})
    return {"dataset_name": "mm1_synth_text", "split": split, "data": data}


def _textvqa_file(split: str, items: list[EvalItem], image_size: int) -> dict:
    """TextVQA 0.5.1 layout; image_id is the 12-digit file stem (a string, as in TextVQA)."""
    data = [{"question": it.text.question, "image_id": f"{it.image_id:012d}",
             "image_classes": sorted({o.shape for o in it.scene.objects}),
             "flickr_original_url": "", "flickr_300k_url": "", "image_width": image_size, "image_height": image_size,
             "answers": it.text_answers, "question_tokens": [t for t in pretokenize(it.text.question) if t.isalnum()],
             "question_id": it.image_id * 1000 + 1, "set_name": split} for it in items]
    return {"dataset_name": "textvqa", "dataset_type": split, "dataset_version": "0.5.1", "data": data}


def _karpathy_file(items_by_split: dict[str, list[EvalItem]], styled: bool = False) -> dict:
    """COCO Karpathy-split layout (dataset_coco.json) of the references (`styled`: the EVAL_STYLE ones);
    filepath is the split's image folder name."""
    images, sentid = [], 0
    for split in sorted(items_by_split):
        for it in items_by_split[split]:
            imgid = len(images)
            refs = it.style_references if styled else it.references
            sentences = [{"raw": r, "tokens": [t for t in pretokenize(r) if t.isalnum()], "imgid": imgid,
                          "sentid": sentid + j} for j, r in enumerate(refs)]
            images.append({"filepath": split, "filename": f"{it.image_id:012d}.png", "imgid": imgid, "split": split,
                           "sentences": sentences, "sentids": [s["sentid"] for s in sentences],
                           "cocoid": it.image_id})
            sentid += len(sentences)
    return {"images": images, "dataset": "coco"}


def _write_split(out: Path, seed: int, split: str, items: list[EvalItem], image_size: int,
                 striped: bool) -> dict[str, str]:
    """Images, VQA-format, TextVQA, text and scene files of one split; returns their relative paths."""
    for it in items:
        write_bytes(out / image_file(split, it.image_id), png_bytes(render(it.scene, image_size)))
    paths = {"textvqa": f"eval/textvqa/{split}.json", "scenes": f"eval/scenes/{split}.json",
             "text": f"eval/text/{split}.json"}
    for name in question_sets(striped):
        questions, annotations = _vqa_files(split, _questions_of(items, name))
        paths[f"{name}_questions"] = f"eval/{name}/{split}_questions.json"
        paths[f"{name}_annotations"] = f"eval/{name}/{split}_annotations.json"
        write_bytes(out / paths[f"{name}_questions"], json_bytes(questions))
        write_bytes(out / paths[f"{name}_annotations"], json_bytes(annotations))
    write_bytes(out / paths["text"], json_bytes(text_questions(seed, split, len(items))))
    write_bytes(out / paths["textvqa"], json_bytes(_textvqa_file(split, items, image_size)))
    scenes = {str(it.image_id): scene_record(it.scene, image_size) for it in items}
    write_bytes(out / paths["scenes"], json_bytes(scenes))
    return paths


def write_evalsets(out: Path, seed: int, image_size: int, heldout: dict[str, list[Scene]],
                   detail: str = "detail", caption_style: bool = False, striped: bool = False) -> dict:
    """Write every eval file; returns {"images"|"vqa"|"detail"|"dialect"|"corner"|"textvqa"|"text"|"scenes":
    {split: ...}, "caption": path}, "caption_style": path with `caption_style` (a corpus with galleries) and
    "stripes": {split: ...} with `striped` (a corpus with striped scenes). The VQA set's detail questions are
    of kind `detail`, as in training."""
    sets = question_sets(striped)
    items_by_split, files = {}, {"images": {}, **{name: {} for name in sets}, "textvqa": {}, "text": {},
                                 "scenes": {}}
    for split, scenes in heldout.items():
        items = [_item(seed, split, i, s, detail, caption_style) for i, s in enumerate(scenes)]
        paths = _write_split(out, seed, split, items, image_size, striped)
        files["images"][split] = {"dir": f"eval/images/{split}", "count": len(items),
                                  "first_id": ID_BASE[split], "pattern": "{image_id:012d}.png"}
        for name in sets:
            files[name][split] = {"questions": paths[f"{name}_questions"],
                                  "annotations": paths[f"{name}_annotations"]}
        for name in ("textvqa", "text", "scenes"):
            files[name][split] = paths[name]
        items_by_split[split] = items
    files["caption"] = "eval/caption/captions.json"
    write_bytes(out / files["caption"], json_bytes(_karpathy_file(items_by_split)))
    if caption_style:
        files["caption_style"] = "eval/caption_style/captions.json"
        write_bytes(out / files["caption_style"], json_bytes(_karpathy_file(items_by_split, styled=True)))
    return files
