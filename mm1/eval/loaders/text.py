"""Text-only question answering: the embedded benchmark's `text_qa` format (no image).

File layout: {"data": [{"question_id": int | str, "question": str, "answers": [str, ...]}], ...}.
Each entry becomes an `EvalSample` with no image; its prompt templates hold no `<image>`.
"""

from __future__ import annotations

from pathlib import Path

from mm1.eval.loaders.common import Collector, EvalSample, LoadedSplit, get, get_id, get_strings, no_questions_file
from mm1.eval.loaders.common import read_json, top_level


def load_text_qa(*, annotations: Path, questions: Path | None = None, images: Path | None = None,
                 split: str | None = None) -> LoadedSplit:
    """One sample per entry of `data`; `images` and `split` are accepted and unused (there are none)."""
    no_questions_file("text_qa", questions)
    entries = top_level(read_json(annotations), "data", list, Path(annotations))
    out = Collector()
    for entry in entries:
        out.add(lambda e=entry: EvalSample(get_id(e, "question_id"), None, get(e, "question", str),
                                           get_strings(e, "answers"), ""))
    return out.result()
