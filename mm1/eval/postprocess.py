"""Turning a raw generation into the answer or caption that is scored (OpenFlamingo's rules).

    vqa:      cut at the first "Question" / "Answer" / "Short", then at the first ", "
    caption:  cut at the first "Output", drop double quotes
Both strip surrounding whitespace. The cut words can be changed in the task
spec (`postprocess.cut`); `ignore_case: true` matches them in any case, for
tokenizers that lowercase (the synthetic tasks). OpenFlamingo matches them
case-sensitively, which is the default.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Optional

DEFAULT_CUTS = {"vqa": ["Question", "Answer", "Short"], "caption": ["Output"]}


@dataclass
class PostprocessSpec:
    kind: str = "vqa"  # one of POSTPROCESSORS: vqa | caption
    cut: Optional[list[str]] = None  # words the answer is cut at; None = the kind's OpenFlamingo default
    ignore_case: bool = False  # match the cut words in any case
    cut_at_comma: Optional[bool] = None  # cut at the first ", " (None = yes for vqa, no for caption)


@dataclass
class _Rule:
    cuts: list[str] = field(default_factory=list)
    flags: int = 0
    comma: bool = False
    drop_quotes: bool = False

    def __call__(self, text: str) -> str:
        if self.cuts:
            pattern = "|".join(re.escape(c) for c in self.cuts)
            text = re.split(pattern, text, maxsplit=1, flags=self.flags)[0]
        if self.comma:
            text = text.split(", ", 1)[0]
        if self.drop_quotes:
            text = text.replace('"', "")
        return text.strip()


POSTPROCESSORS = ("vqa", "caption")


def build_postprocessor(spec: PostprocessSpec) -> Callable[[str], str]:
    """The function that maps a raw generation to the scored string."""
    if spec.kind not in POSTPROCESSORS:
        raise ValueError(f"unknown postprocess kind {spec.kind!r}; known: {', '.join(POSTPROCESSORS)}")
    cuts = DEFAULT_CUTS[spec.kind] if spec.cut is None else list(spec.cut)
    comma = spec.kind == "vqa" if spec.cut_at_comma is None else spec.cut_at_comma
    flags = re.IGNORECASE if spec.ignore_case else 0
    return _Rule(cuts, flags, comma, drop_quotes=spec.kind == "caption")
