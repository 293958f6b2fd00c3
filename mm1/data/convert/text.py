"""Text JSON lines ({"text": ...} per line) -> text shards (`KEY.txt`).

Blank lines are passed over. Left out and counted: lines that are not UTF-8 or
not a JSON object, or whose text UTF-8 cannot encode (a lone surrogate; `bad_line`),
objects without the text field (`missing_text`), a text that is not a string
(`non_string_text`) or is only whitespace (`empty_text`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from mm1.data.convert.writer import Members, Report, ShardOptions, is_utf8_text, write_converted


def read_lines(paths: list[str | Path]) -> Iterator[bytes]:
    """The non-blank lines of every file, in order."""
    for path in paths:
        with open(path, "rb") as f:
            yield from (line for line in f if line.strip())


def text_sample(line: bytes, report: Report, field: str = "text") -> Members | None:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):  # also UnicodeDecodeError; nested too deep
        row = None
    if not isinstance(row, dict):
        report.skipped["bad_line"] += 1
        return None
    if field not in row:
        report.skipped["missing_text"] += 1
        return None
    text = row[field]
    if not is_utf8_text(text):
        report.skipped["non_string_text" if not isinstance(text, str) else "bad_line"] += 1
        return None
    if not text.strip():
        report.skipped["empty_text"] += 1
        return None
    return {"txt": text.encode("utf-8")}


def convert_text(paths: list[str | Path], options: ShardOptions, field: str = "text") -> Report:
    """Write text shards for JSON-lines files whose objects hold the document under `field`."""
    if not paths:
        raise ValueError("no input files given")
    for path in map(str, paths):
        if not os.path.isfile(path):
            raise FileNotFoundError(f"input file not found: {path}")
    return write_converted(read_lines(paths), lambda line, rep: text_sample(line, rep, field), options)
