"""Sequence construction and packing: splits, loss masks, and attention isolation."""
from __future__ import annotations

import pytest
import torch
from PIL import Image

from mm1.data.documents import Document
from mm1.data.packing import Packer, collate, collate_rows
from mm1.data.sequence import IGNORE, SequenceBuilder
from mm1.tokenizer import IMAGE_TOKEN
from tests.conftest import build_tiny

T = 16


@pytest.fixture(scope="module")
def tiny():
    cfg, tokenizer, model = build_tiny("model.decoder.num_layers=2")
    return cfg, tokenizer, model.eval()


def img(c="red"):
    return Image.new("RGB", (64, 64), c)


def long_document(n_images=6):
    segs = ["here are some pictures ."]
    for i in range(n_images):
        segs += [img(["red", "blue", "green"][i % 3]), "the picture shows a red circle and a blue square ."]
    return Document("interleaved", segs, "doc")


def test_long_document_splits_at_boundaries_without_splitting_images(tiny):
    cfg, tokenizer, _ = tiny
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    chunks = SequenceBuilder(tokenizer, T, seq_len=60, max_images=2)(long_document())
    assert len(chunks) >= 3
    assert sum(len(c.images) for c in chunks) == 6  # nothing dropped
    for c in chunks:
        assert len(c) <= 60 and len(c.images) <= 2
        runs = "".join("i" if t == image_id else "t" for t in c.input_ids).split("t")
        assert all(len(r) in (0, T) for r in runs)  # every image run is whole
        assert sum(len(r) == T for r in runs) == len(c.images)
        assert c.labels[0] == IGNORE


def test_packing_restarts_positions_and_masks_loss_per_document(tiny):
    cfg, tokenizer, _ = tiny
    builder = SequenceBuilder(tokenizer, T, seq_len=128, max_images=4)
    docs = [Document("caption", [img(), "a red circle ."]), Document("text", ["a square is a shape ."]),
            Document("caption", [img("blue"), "a blue star ."])]
    examples = [builder(d)[0] for d in docs]
    batch = collate_rows([examples], tokenizer.pad_token_id, 64, length=128)
    starts = [0, len(examples[0]), len(examples[0]) + len(examples[1])]
    assert batch.position_ids[0, starts].tolist() == [0, 0, 0]
    assert (batch.labels[0, starts] == IGNORE).all()  # no document predicts the next one's first token
    assert batch.segment_ids[0, starts].tolist() == [1, 2, 3]
    assert int(batch.attention_mask.sum()) == sum(map(len, examples))


def test_packed_rows_never_attend_across_documents(tiny):
    cfg, tokenizer, model = tiny
    builder = SequenceBuilder(tokenizer, T, seq_len=192, max_images=4)
    docs = [Document("caption", [img(), "a red circle on the left ."]),
            Document("interleaved", ["look .", img("blue"), "a blue square .", img("green"), "a green star ."]),
            Document("text", ["a triangle has three corners ."])]
    examples = [builder(d)[0] for d in docs]
    packed = collate_rows([examples], tokenizer.pad_token_id, 64)
    alone = collate(examples, tokenizer.pad_token_id, 64)
    with torch.no_grad():
        p = model(packed.input_ids, packed.images, packed.attention_mask, packed.position_ids,
                  segment_ids=packed.segment_ids).logits[0]
        a = model(alone.input_ids, alone.images, alone.attention_mask).logits
    start = 0
    for row, ex in enumerate(examples):
        assert torch.allclose(p[start:start + len(ex)], a[row, :len(ex)], atol=1e-4)
        start += len(ex)


def test_first_fit_packer_keeps_rows_within_length():
    class Ex:
        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

    packer, closed = Packer(100, open_rows=3), []
    for n in [60, 50, 30, 40, 70, 10, 90, 20, 25, 5]:
        row = packer.add(Ex(n))
        if row:
            closed.append(row)
    rows = closed + packer.rows
    assert all(sum(map(len, r)) <= 100 for r in rows)
    assert sum(len(e) for r in rows for e in r) == 400


def test_packed_rows_respect_the_image_limit():
    class Ex:
        def __init__(self, n, images):
            self.n, self.images = n, [None] * images

        def __len__(self):
            return self.n

    packer, closed = Packer(1000, open_rows=2, max_images=4), []
    for _ in range(12):
        row = packer.add(Ex(20, 3))
        if row:
            closed.append(row)
    assert all(sum(len(e.images) for e in r) <= 4 for r in closed + packer.rows)
