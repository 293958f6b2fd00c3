"""Loaders for the captioning benchmarks' official files: COCO (Karpathy split),
NoCaps and TextCaps. Each returns one `EvalSample` per image, with
`question=None` and `answers` = the reference captions (whitespace-stripped)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mm1.eval.loaders.common import (
    Collector,
    EvalSample,
    LoadedSplit,
    Malformed,
    check_pattern,
    get,
    get_strings,
    image_file,
    images_root,
    no_questions_file,
    read_json,
    top_level,
)


def _captions(values: list | tuple, key: str) -> tuple[str, ...]:
    """Stripped, non-empty caption strings, or Malformed naming `key`."""
    if not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise Malformed(f"bad {key!r}")
    return tuple(v.strip() for v in values)


# --- COCO, Karpathy split ---------------------------------------------------------


def _karpathy_sample(entry: Any, root: Path) -> EvalSample:
    cocoid = get(entry, "cocoid", int)
    sentences = get(entry, "sentences", list)
    raws = [s.get("raw") if isinstance(s, dict) else None for s in sentences]
    refs = _captions(raws, "sentences")
    path = image_file(root, get(entry, "filepath", str), get(entry, "filename", str))
    return EvalSample(str(cocoid), path, None, refs, str(cocoid))


def load_coco_karpathy(
    *, annotations: Path, questions: Path | None = None, images: Path, split: str | None,
    restval_as_train: bool = False,
) -> LoadedSplit:
    """dataset_coco.json: {"images": [{filepath, filename, split, sentences: [{raw}], cocoid}]}.

    Keeps the entries whose "split" equals `split` ("train", "restval", "val",
    "test"). By default "train" means Karpathy's 82,783 "train" images only, as
    OpenFlamingo draws its demos; restval_as_train=True adds the 30,504
    "restval" images (the 113,287-image train set). The image is
    `images/filepath/filename`, so `images` is the COCO root holding
    train2014/ and val2014/. id and image_id are the COCO id (cocoid).
    """
    no_questions_file("coco_karpathy", questions)
    if not split:
        raise ValueError("coco_karpathy needs split= ('train', 'restval', 'val' or 'test')")
    entries = top_level(read_json(annotations), "images", list, annotations)
    wanted = {"train", "restval"} if split == "train" and restval_as_train else {split}
    root, out, present = images_root(images), Collector(), set()
    for entry in entries:
        try:
            entry_split = get(entry, "split", str)
        except Malformed as err:
            out.skip(str(err))
            continue
        present.add(entry_split)
        if entry_split in wanted:
            out.add(lambda: _karpathy_sample(entry, root))
    if not wanted & present:
        raise ValueError(f"{annotations} has no split {split!r}; splits present: {sorted(present)}")
    return out.result()


# --- NoCaps ---------------------------------------------------------------------


def _nocaps_captions(annotations: list, out: Collector) -> dict[int, list[str]]:
    by_image: dict[int, list[str]] = defaultdict(list)
    for ann in annotations:
        try:
            by_image[get(ann, "image_id", int)].append(get(ann, "caption", str))
        except Malformed as err:
            out.skip(f"caption {err}")
    return by_image


def _nocaps_sample(image: Any, by_image: dict[int, list[str]], root: Path) -> EvalSample:
    image_id = get(image, "id", int)
    path = image_file(root, get(image, "file_name", str))
    if not by_image.get(image_id):
        raise Malformed("no captions")
    return EvalSample(str(image_id), path, None, _captions(by_image[image_id], "caption"), str(image_id))


def load_nocaps(
    *, annotations: Path, questions: Path | None = None, images: Path, split: str | None = None,
) -> LoadedSplit:
    """nocaps_val_4500_captions.json, COCO-style: {"images": [{id, file_name, open_images_id,
    ...}], "annotations": [{image_id, id, caption}]}. Image = images/file_name.

    id and image_id are the integer nocaps image id (the one the evaluation
    server expects), as a string. Images without any caption are skipped
    ("no captions"); the test image-info file, which has no "annotations", raises.
    """
    no_questions_file("nocaps", questions)
    doc = read_json(annotations)
    image_list = top_level(doc, "images", list, annotations)
    ann_list = top_level(doc, "annotations", list, annotations)
    root, out = images_root(images), Collector()
    by_image = _nocaps_captions(ann_list, out)
    for image in image_list:
        out.add(lambda: _nocaps_sample(image, by_image, root))
    known = {image.get("id") for image in image_list if isinstance(image, dict)}
    out.skip("caption for unknown image", sum(len(v) for k, v in by_image.items() if k not in known))
    return out.result()


# --- TextCaps -------------------------------------------------------------------


@dataclass
class _TextCapsImage:
    references: tuple[str, ...] | None = None  # first entry's reference_strs, if any
    captions: list[str] = field(default_factory=list)  # every entry's caption_str


def _group_textcaps(data: list, out: Collector) -> dict[str, _TextCapsImage]:
    """One group per image_id, in first-seen order; bad entries are counted."""
    groups: dict[str, _TextCapsImage] = {}
    for entry in data:
        try:
            image_id = get(entry, "image_id", str)
            refs = get_strings(entry, "reference_strs") if "reference_strs" in entry else None
            caption = get(entry, "caption_str", str) if "caption_str" in entry else None
        except Malformed as err:
            out.skip(str(err))
            continue
        group = groups.setdefault(image_id, _TextCapsImage())
        if group.references is None:
            group.references = refs
        if caption is not None:
            group.captions.append(caption)
    return groups


def _textcaps_sample(image_id: str, group: _TextCapsImage, root: Path, pattern: str) -> EvalSample:
    refs = group.references or tuple(group.captions)
    if not refs:
        raise Malformed("no captions")
    path = image_file(root, pattern.format(image_id=image_id))
    return EvalSample(image_id, path, None, _captions(refs, "reference_strs"), image_id)


def load_textcaps(
    *, annotations: Path, questions: Path | None = None, images: Path, split: str | None = None,
    image_pattern: str = "{image_id}.jpg",
) -> LoadedSplit:
    """TextCaps_0.1_{train,val}.json: {"data": [{image_id, caption_str, reference_strs, ...}]}.

    The file has one entry per caption; entries are grouped by image_id into
    one sample per image. References = the first entry's reference_strs when
    present, else the caption_str of every entry of that image. The image is
    `images/{image_id}.jpg` (TextVQA's flat train_images/ folder, which holds
    both TextCaps train and val images); the entry's "image_path" field
    ("train/<id>.jpg") is not used.
    """
    no_questions_file("textcaps", questions)
    data = top_level(read_json(annotations), "data", list, annotations)
    check_pattern(image_pattern, image_id="x")
    root, out = images_root(images), Collector()
    for image_id, group in _group_textcaps(data, out).items():
        out.add(lambda: _textcaps_sample(image_id, group, root, image_pattern))
    return out.result()
