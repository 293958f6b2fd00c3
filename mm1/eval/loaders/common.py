"""Shared pieces of the benchmark loaders: the sample types, JSON reading,
per-entry field checks and the collector that counts skipped entries.

A loader turns one official annotation file into a `LoadedSplit`. Whole-file
problems (missing file, invalid JSON, wrong top-level layout, a bad argument)
raise. Problems with one entry raise `Malformed` inside the loader; the
`Collector` catches it, counts the reason and moves on.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class EvalSample:
    """One question (VQA tasks) or one image with its references (captioning)."""

    id: str  # question id (VQA) or image id (captioning), unique within a split
    image: Path | None  # absolute path of the image file (existence NOT checked here); None for text-only tasks
    question: str | None  # VQA question; None for captioning
    answers: tuple[str, ...]  # VQA: human answers; captioning: reference captions
    image_id: str  # the dataset's image id, as a string


@dataclass(frozen=True)
class LoadedSplit:
    """The samples of one split and the entries that were skipped.

    `skipped` maps a reason (e.g. "missing 'answers'") to how many entries were
    dropped for it; it is empty when every entry loaded. The object also
    behaves as a read-only sequence of its samples (`len`, iteration, indexing).
    """

    samples: list[EvalSample]
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[EvalSample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> EvalSample:
        return self.samples[index]


class Malformed(Exception):
    """One annotation entry cannot be used; the message is the skip reason."""


class Collector:
    """Accumulates samples, rejects duplicate ids and counts skip reasons."""

    def __init__(self) -> None:
        self.samples: list[EvalSample] = []
        self.skipped: Counter[str] = Counter()
        self._ids: set[str] = set()

    def skip(self, reason: str, count: int = 1) -> None:
        if count > 0:
            self.skipped[reason] += count

    def add(self, make: Callable[[], EvalSample]) -> None:
        """Call `make`; keep its sample, or count the `Malformed` reason."""
        try:
            sample = make()
        except Malformed as err:
            self.skip(str(err))
            return
        if sample.id in self._ids:
            self.skip("duplicate id")
            return
        self._ids.add(sample.id)
        self.samples.append(sample)

    def result(self) -> LoadedSplit:
        return LoadedSplit(self.samples, dict(sorted(self.skipped.items())))


# --- whole-file helpers: these raise ------------------------------------------


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:  # RecursionError: nested too deep
        raise ValueError(f"{path} is not valid JSON: {err}") from None


def top_level(doc: Any, key: str | None, kind: type, path: Path) -> Any:
    """`doc[key]` (or `doc` itself when key is None), checked to be a `kind`."""
    if key is not None:
        if not isinstance(doc, dict) or key not in doc:
            raise ValueError(f"{path}: expected a JSON object with a {key!r} field")
        doc = doc[key]
    if not isinstance(doc, kind):
        where = f"field {key!r}" if key else "top level"
        raise ValueError(f"{path}: {where} must be a JSON {kind.__name__}")
    return doc


def images_root(images: Path | str) -> Path:
    """Absolute, normalised images folder (symlinks are kept as they are)."""
    return Path(os.path.abspath(os.path.expanduser(images)))


def no_questions_file(fmt: str, questions: Path | None) -> None:
    """Formats with a single annotation file refuse a stray questions= path."""
    if questions is not None:
        raise ValueError(f"{fmt} keeps everything in the annotations file; pass questions=None")


def check_pattern(pattern: str, **example: Any) -> None:
    """Fail early, with ValueError, if `pattern` cannot format these fields."""
    try:
        pattern.format(**example)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"image_pattern {pattern!r} cannot be formatted with fields "
            f"{sorted(example)}: {err!r}"
        ) from err


# --- per-entry helpers: these raise Malformed ---------------------------------


def get(entry: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    """`entry[key]`, checked to be a `kind` (bool is never accepted as int)."""
    if not isinstance(entry, dict):
        raise Malformed("entry is not a JSON object")
    if key not in entry:
        raise Malformed(f"missing {key!r}")
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise Malformed(f"bad {key!r}")
    return value


def get_id(entry: Any, key: str) -> str:
    """An id that the dataset stores as an int or a string, as a string."""
    return str(get(entry, key, (int, str)))


def get_strings(entry: Any, key: str) -> tuple[str, ...]:
    """A non-empty list of strings, e.g. TextVQA answers or TextCaps references."""
    values = get(entry, key, list)
    if not values or not all(isinstance(v, str) for v in values):
        raise Malformed(f"bad {key!r}")
    return tuple(values)


def get_answer_dicts(entry: Any, key: str = "answers") -> tuple[str, ...]:
    """VQAv2/OK-VQA/VizWiz answers: a non-empty list of {"answer": str, ...}."""
    values = get(entry, key, list)
    if not values or not all(isinstance(v, dict) and isinstance(v.get("answer"), str) for v in values):
        raise Malformed(f"bad {key!r}")
    return tuple(v["answer"] for v in values)


def image_file(root: Path, *parts: str) -> Path:
    """`root/parts...`, refusing absolute parts and '..' from annotation data."""
    for part in parts:
        p = Path(part)
        if not part or p.is_absolute() or ".." in p.parts:
            raise Malformed("unsafe image path")
    return root.joinpath(*parts)
