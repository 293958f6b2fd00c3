"""Rows of training sequences: one example per row (padded), or several packed per row.

Packing places examples first-fit into a few open rows of `seq_len` tokens.
Packed documents restart their position ids at 0 and carry a segment id, from
which the model builds a block-diagonal causal mask: no token attends across
documents. Padding has segment id 0.
"""
from __future__ import annotations

import numpy as np
import torch

from mm1.data.batch import Batch
from mm1.data.image import resized, to_tensor
from mm1.data.sequence import IGNORE, Example
from mm1.model.attention import document_spans


class Packer:
    """First-fit into at most `open_rows` rows of at most `seq_len` tokens and `max_images` images;
    `add` returns a row when one has to be closed. `rows` (the open rows) is part of the loader's
    saved position."""

    def __init__(self, seq_len: int, open_rows: int, rows: list[list[Example]] | None = None,
                 max_images: int | None = None):
        self.seq_len, self.open_rows, self.max_images = seq_len, open_rows, max_images
        self.rows: list[list[Example]] = rows or []

    def _fits(self, row: list[Example], ex: Example) -> bool:
        images = sum(len(getattr(e, "images", ())) for e in row) + len(getattr(ex, "images", ()))
        return sum(map(len, row)) + len(ex) <= self.seq_len and (self.max_images is None or images <= self.max_images)

    def add(self, ex: Example) -> list[Example] | None:
        for row in self.rows:
            if self._fits(row, ex):
                row.append(ex)
                return None
        closed = None
        if len(self.rows) == self.open_rows:
            fullest = max(range(len(self.rows)), key=lambda i: sum(map(len, self.rows[i])))
            closed = self.rows.pop(fullest)
        self.rows.append([ex])
        return closed


def collate_rows(rows: list[list[Example]], pad_id: int, image_size: int, length: int | None = None) -> Batch:
    """Rows -> Batch, right-padded to `length` (default: the longest row)."""
    length = length or max(sum(map(len, row)) for row in rows)
    cols = [_row_columns(row, length, pad_id) for row in rows]
    # (B, L) each; numpy turns lists of ints into an array several times faster than torch.tensor
    input_ids, labels, position_ids, segment_ids = (
        torch.from_numpy(np.array([c[k] for c in cols], dtype=np.int64)) for k in range(4))
    attention_mask = (segment_ids > 0).long()
    pixels = [resized(img, image_size) for row in rows for ex in row for img in ex.images]
    images = to_tensor(np.stack(pixels)) if pixels else torch.zeros((0, 3, image_size, image_size), dtype=torch.uint8)
    packed = any(len(row) > 1 for row in rows)
    cu_seqlens, max_seqlen = document_spans(segment_ids) if packed else (None, None)
    return Batch(input_ids, labels, attention_mask, images,
                 position_ids=position_ids if packed else None, segment_ids=segment_ids if packed else None,
                 cu_seqlens=cu_seqlens, max_seqlen=max_seqlen, **_per_example([ex for row in rows for ex in row]))


def _per_example(examples: list[Example]) -> dict[str, list]:
    """The Batch fields that hold one entry per example (what the trainer logs the mixture from)."""
    return {"sources": [ex.source for ex in examples], "keys": [ex.key for ex in examples],
            "example_tokens": [len(ex) for ex in examples],
            "example_labelled": [sum(label != IGNORE for label in ex.labels) for ex in examples],
            "example_unknown": [ex.unknown for ex in examples],
            "document_starts": [ex.origin.get("chunk", 0) == 0 for ex in examples]}


def _row_columns(row: list[Example], length: int, pad_id: int) -> tuple[list[int], ...]:
    """One row's input ids, labels, position ids and segment ids (1, 2, ... per document; 0 = padding)."""
    pad = length - sum(map(len, row))
    ids = [t for ex in row for t in ex.input_ids] + [pad_id] * pad
    labels = [t for ex in row for t in ex.labels] + [IGNORE] * pad
    positions = [p for ex in row for p in range(len(ex))] + [0] * pad
    segments = [doc for doc, ex in enumerate(row, start=1) for _ in range(len(ex))] + [0] * pad
    return ids, labels, positions, segments


def collate(examples: list[Example], pad_id: int, image_size: int) -> Batch:
    """One example per row."""
    return collate_rows([[ex] for ex in examples], pad_id, image_size)
