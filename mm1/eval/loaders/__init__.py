"""Loaders for the official annotation files of the few-shot benchmarks MM1 reports.

    split = load_split("vqav2", annotations=ann, questions=q, images=img_dir, split="val")
    for sample in split: ...          # EvalSample(id, image, question, answers, image_id)
    split.skipped                     # {"missing 'answers'": 2, ...}

Every loader returns a `LoadedSplit`: the samples plus a count of the entries
that were skipped, by reason. A malformed entry (missing key, wrong type,
duplicate id, a question without annotation...) is skipped, counted and
summarised in one warning; it never aborts the load. A missing annotation or
questions file raises FileNotFoundError before anything is read; a file whose
top level is wrong, or a bad argument, raises ValueError. Image files are not
checked for existence (the evaluator records a missing image per sample).

Formats (`LOADERS` keys) and the benchmarks that use them:
  vqav2          VQAv2 and OK-VQA (also "okvqa"); questions= is required
  textvqa        TextVQA 0.5.1
  vizwiz         VizWiz VQA
  gqa            GQA balanced questions (testdev for few-shot)
  coco_karpathy  COCO captions, Karpathy split; split= is required
  nocaps         NoCaps val
  textcaps       TextCaps 0.1
  text_qa        the embedded benchmark's text-only questions (no image; see loaders/text.py)
Format-specific keywords go through `load_split(..., **options)`:
`image_pattern` (vqav2, textvqa, gqa, textcaps) and `restval_as_train`
(coco_karpathy).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mm1.eval.loaders.captions import load_coco_karpathy, load_nocaps, load_textcaps
from mm1.eval.loaders.common import EvalSample, LoadedSplit
from mm1.eval.loaders.text import load_text_qa
from mm1.eval.loaders.vqa import load_gqa, load_textvqa, load_vizwiz, load_vqav2

__all__ = ["EvalSample", "LoadedSplit", "LOADERS", "load_split"]

log = logging.getLogger(__name__)

LOADERS: dict[str, Callable[..., LoadedSplit]] = {
    "vqav2": load_vqav2,
    "okvqa": load_vqav2,  # OK-VQA ships in the VQAv2 format
    "textvqa": load_textvqa,
    "vizwiz": load_vizwiz,
    "gqa": load_gqa,
    "coco_karpathy": load_coco_karpathy,
    "nocaps": load_nocaps,
    "textcaps": load_textcaps,
    "text_qa": load_text_qa,
}


def _require_file(path: Path, what: str) -> None:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")


def load_split(
    format: str,
    *,
    annotations: Path | str,
    questions: Path | str | None = None,
    images: Path | str,
    split: str | None = None,
    **options: Any,
) -> LoadedSplit:
    """Load one split of one benchmark from its official annotation file(s)."""
    if format not in LOADERS:
        raise ValueError(f"unknown eval format {format!r}; known formats: {', '.join(sorted(LOADERS))}")
    annotations = Path(annotations)
    questions = None if questions is None else Path(questions)
    _require_file(annotations, "annotation")
    if questions is not None:
        _require_file(questions, "questions")
    result = LOADERS[format](
        annotations=annotations, questions=questions, images=Path(images), split=split, **options
    )
    if result.skipped:
        log.warning(
            "%s: skipped %d malformed entries of %s: %s",
            format, result.num_skipped, annotations, result.skipped,
        )
    return result
