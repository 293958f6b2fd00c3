"""Held-out evaluation sets in the real benchmarks' file formats (VQAv2, TextVQA, COCO Karpathy).

Every eval image carries a label, so one image serves all three tasks: one
VQA question about the shapes, one TextVQA question about the label, five
reference captions. Scenes come from their own random streams ("eval-val",
"eval-train"), are distinct from one another, and their keys are excluded from
the training streams.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mm1.data.synth.describe import reference_captions
from mm1.data.synth.grammar import pretokenize
from mm1.data.synth.questions import QA, ask, ask_text, human_answers
from mm1.data.synth.render import png_bytes, render
from mm1.data.synth.scene import Scene, sample_scene
from mm1.data.synth.shards import json_bytes, sample_rng, write_bytes
from mm1.data.synth.streams import scene_record

SPLITS = ("val", "train")  # val is drawn first; train (the few-shot demonstrations) avoids its scenes
ID_BASE = {"train": 1_000_000, "val": 2_000_000}  # image_id = base + index: unique across splits
N_ANSWERS, N_REFERENCES = 10, 5


@dataclass
class EvalItem:
    image_id: int
    scene: Scene
    vqa: QA
    vqa_answers: list[str]
    text: QA
    text_answers: list[str]
    references: list[str]


def image_file(split: str, image_id: int) -> str:
    """Path of an eval image relative to the corpus root."""
    return f"eval/images/{split}/{image_id:012d}.png"


def heldout_scenes(seed: int, n: int) -> dict[str, list[Scene]]:
    """n distinct labelled scenes per split, no scene shared between splits."""
    seen: set[str] = set()
    out = {}
    for split in SPLITS:
        out[split] = []
        for i in range(n):
            scene = sample_scene(sample_rng(seed, f"eval-{split}", i), 1.0, seen)
            seen.add(scene.key())
            out[split].append(scene)
    return out


def _item(seed: int, split: str, i: int, scene: Scene) -> EvalItem:
    rng = sample_rng(seed, f"eval-{split}-language", i)
    vqa, text = ask(scene, rng), ask_text(scene, rng)
    return EvalItem(ID_BASE[split] + i, scene, vqa, human_answers(vqa, rng, N_ANSWERS), text,
                    human_answers(text, rng, N_ANSWERS), reference_captions(scene, rng, N_REFERENCES))


def _vqa_files(split: str, items: list[EvalItem]) -> tuple[dict, dict]:
    """VQAv2 questions and annotations (question_id = image_id * 1000, as in VQAv2)."""
    header = {"info": {"description": "mm1 synthetic shapes VQA", "version": "2.0"},
              "license": {"name": "Apache-2.0"}, "data_type": "mm1_synth", "data_subtype": split}
    questions = [{"image_id": it.image_id, "question": it.vqa.question, "question_id": it.image_id * 1000}
                 for it in items]
    annotations = []
    for it in items:
        answers = [{"answer": a, "answer_confidence": "yes" if a == it.vqa.answer else "maybe", "answer_id": j + 1}
                   for j, a in enumerate(it.vqa_answers)]
        annotations.append({"question_id": it.image_id * 1000, "image_id": it.image_id,
                            "question_type": it.vqa.question_type, "answer_type": it.vqa.answer_type,
                            "multiple_choice_answer": it.vqa.answer, "answers": answers})
    return ({**header, "task_type": "Open-Ended", "questions": questions},
            {**header, "annotations": annotations})


def _textvqa_file(split: str, items: list[EvalItem], image_size: int) -> dict:
    """TextVQA 0.5.1 layout; image_id is the 12-digit file stem (a string, as in TextVQA)."""
    data = [{"question": it.text.question, "image_id": f"{it.image_id:012d}",
             "image_classes": sorted({o.shape for o in it.scene.objects}),
             "flickr_original_url": "", "flickr_300k_url": "", "image_width": image_size, "image_height": image_size,
             "answers": it.text_answers, "question_tokens": [t for t in pretokenize(it.text.question) if t.isalnum()],
             "question_id": it.image_id * 1000 + 1, "set_name": split} for it in items]
    return {"dataset_name": "textvqa", "dataset_type": split, "dataset_version": "0.5.1", "data": data}


def _karpathy_file(items_by_split: dict[str, list[EvalItem]]) -> dict:
    """COCO Karpathy-split layout (dataset_coco.json); filepath is the split's image folder name."""
    images, sentid = [], 0
    for split in sorted(items_by_split):
        for it in items_by_split[split]:
            imgid = len(images)
            sentences = [{"raw": r, "tokens": [t for t in pretokenize(r) if t.isalnum()], "imgid": imgid,
                          "sentid": sentid + j} for j, r in enumerate(it.references)]
            images.append({"filepath": split, "filename": f"{it.image_id:012d}.png", "imgid": imgid, "split": split,
                           "sentences": sentences, "sentids": [s["sentid"] for s in sentences],
                           "cocoid": it.image_id})
            sentid += len(sentences)
    return {"images": images, "dataset": "coco"}


def _write_split(out: Path, split: str, items: list[EvalItem], image_size: int) -> dict[str, str]:
    """Images, VQA, TextVQA and scene files of one split; returns their relative paths."""
    for it in items:
        write_bytes(out / image_file(split, it.image_id), png_bytes(render(it.scene, image_size)))
    questions, annotations = _vqa_files(split, items)
    paths = {"questions": f"eval/vqa/{split}_questions.json", "annotations": f"eval/vqa/{split}_annotations.json",
             "textvqa": f"eval/textvqa/{split}.json", "scenes": f"eval/scenes/{split}.json"}
    write_bytes(out / paths["questions"], json_bytes(questions))
    write_bytes(out / paths["annotations"], json_bytes(annotations))
    write_bytes(out / paths["textvqa"], json_bytes(_textvqa_file(split, items, image_size)))
    scenes = {str(it.image_id): scene_record(it.scene, image_size) for it in items}
    write_bytes(out / paths["scenes"], json_bytes(scenes))
    return paths


def write_evalsets(out: Path, seed: int, image_size: int, heldout: dict[str, list[Scene]]) -> dict:
    """Write every eval file; returns {"images"|"vqa"|"textvqa"|"scenes": {split: ...}, "caption": path}."""
    items_by_split, files = {}, {"images": {}, "vqa": {}, "textvqa": {}, "scenes": {}}
    for split, scenes in heldout.items():
        items = [_item(seed, split, i, s) for i, s in enumerate(scenes)]
        paths = _write_split(out, split, items, image_size)
        files["images"][split] = {"dir": f"eval/images/{split}", "count": len(items),
                                  "first_id": ID_BASE[split], "pattern": "{image_id:012d}.png"}
        files["vqa"][split] = {"questions": paths["questions"], "annotations": paths["annotations"]}
        files["textvqa"][split] = paths["textvqa"]
        files["scenes"][split] = paths["scenes"]
        items_by_split[split] = items
    files["caption"] = "eval/caption/captions.json"
    write_bytes(out / files["caption"], json_bytes(_karpathy_file(items_by_split)))
    return files
