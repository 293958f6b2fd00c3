"""Documents -> token sequences with image placeholders expanded and loss labels.

Layout of one document: <s> then its segments in order; an image becomes T
placeholder tokens; a text segment that follows an image is closed by
<|endofchunk|>; </s> ends the document. Labels are -100 on image tokens.
A document longer than `seq_len` is cut at a text position (an image run is
never split) and images past `max_images` are dropped with the text after them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image

from mm1.data.documents import Document
from mm1.tokenizer import END_OF_CHUNK, IMAGE_TOKEN

IGNORE = -100


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]
    images: list[Image.Image] = field(default_factory=list)
    source: str = ""
    key: str = ""


class SequenceBuilder:
    def __init__(self, tokenizer, tokens_per_image: int, seq_len: int, max_images: int):
        self.tok = tokenizer
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.eoc_id = tokenizer.convert_tokens_to_ids(END_OF_CHUNK)
        self.tokens_per_image = tokens_per_image
        self.seq_len = seq_len
        self.max_images = max_images

    def __call__(self, doc: Document) -> Example:
        ids, labels, images = [self.tok.bos_token_id], [self.tok.bos_token_id], []
        after_image = False
        for seg in doc.segments:
            if isinstance(seg, Image.Image):
                if len(images) == self.max_images or len(ids) + self.tokens_per_image > self.seq_len:
                    break
                images.append(seg)
                ids += [self.image_id] * self.tokens_per_image
                labels += [IGNORE] * self.tokens_per_image
                after_image = True
                continue
            text = self.tok.encode(seg, add_special_tokens=False) + ([self.eoc_id] if after_image else [])
            after_image = False
            ids += text
            labels += text
        else:
            ids.append(self.tok.eos_token_id)
            labels.append(self.tok.eos_token_id)
        ids, labels = ids[: self.seq_len], labels[: self.seq_len]
        return Example(ids, labels, images, doc.source, doc.key)


def collate(examples: list[Example], pad_id: int, image_size: int) -> "Batch":
    """Right-pad to the longest example; images stacked in order of appearance."""
    from mm1.data.batch import Batch
    from mm1.data.image import preprocess

    length = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), length), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), length), dtype=torch.long)
    for row, ex in enumerate(examples):
        n = len(ex.input_ids)
        input_ids[row, :n] = torch.tensor(ex.input_ids)
        labels[row, :n] = torch.tensor(ex.labels)
        attention_mask[row, :n] = 1
    pixels = [preprocess(img, image_size) for ex in examples for img in ex.images]
    images = torch.stack(pixels) if pixels else torch.zeros((0, 3, image_size, image_size))
    return Batch(input_ids, labels, attention_mask, images,
                 sources=[e.source for e in examples], keys=[e.key for e in examples])
