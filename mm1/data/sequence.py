"""Documents -> token sequences with image placeholders expanded and loss labels.

Layout of one document: <s> then its segments in order; an image becomes T
placeholder tokens; a text segment that follows an image is closed by
<|endofchunk|>; </s> ends the document. Labels are -100 on image tokens and on
the first token of every sequence (nothing before it can predict it).

A document longer than `seq_len`, or holding more than `max_images` images, is
split into several sequences at image/text boundaries (a long text segment is
split between tokens); an image's tokens are never split. A piece that holds no
text to learn from (e.g. a trailing image alone) is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image

from mm1.data.batch import IGNORE
from mm1.data.documents import Document
from mm1.tokenizer import END_OF_CHUNK, IMAGE_TOKEN



@dataclass
class Example:
    input_ids: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    images: list[Image.Image] = field(default_factory=list)
    source: str = ""
    key: str = ""
    unknown: int = 0  # text tokens the tokenizer could not represent (<unk>)
    origin: dict = field(default_factory=dict)  # where to read it again: source, reader position, chunk
    # (the index of this piece among its document's kept pieces; 0 = the first)

    def __len__(self) -> int:
        return len(self.input_ids)


class SequenceBuilder:
    def __init__(self, tokenizer, tokens_per_image: int, seq_len: int, max_images: int):
        self.tok = tokenizer
        self.image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.eoc_id = tokenizer.convert_tokens_to_ids(END_OF_CHUNK)
        self.unk_id = tokenizer.unk_token_id  # None for tokenizers that represent every text (byte-level)
        self.tokens_per_image = tokens_per_image
        self.seq_len = seq_len
        self.max_images = max_images

    def encode_text(self, text: str) -> list[int]:
        """Text from the data as plain words: "<image>" or "</s>" written in a caption is no special token
        (special tokens come only from the structure of a document)."""
        return self.tok.encode(text, add_special_tokens=False, split_special_tokens=True)

    def pieces(self, doc: Document) -> list:
        """The document as a list of token lists (text) and images, in order."""
        out: list = [[self.tok.bos_token_id]]
        after_image = False
        for seg in doc.segments:
            if isinstance(seg, Image.Image):
                out.append(seg)
                after_image = True
            else:
                out.append(self.encode_text(seg) + ([self.eoc_id] if after_image else []))
                after_image = False
        out.append([self.tok.eos_token_id])
        return out

    def __call__(self, doc: Document) -> list[Example]:
        chunks = [Example(source=doc.source, key=doc.key)]
        for piece in self.pieces(doc):
            if isinstance(piece, Image.Image):
                self._add_image(chunks, piece)
            else:
                self._add_text(chunks, piece)
        kept = [finish(c) for c in chunks if any(label != IGNORE for label in c.labels[1:])]
        for i, chunk in enumerate(kept):
            chunk.origin = {**doc.origin, "chunk": i}
            if self.unk_id is not None:
                chunk.unknown = chunk.input_ids.count(self.unk_id)
        return kept

    def _add_image(self, chunks: list[Example], image: Image.Image) -> None:
        if len(chunks[-1].images) == self.max_images or len(chunks[-1]) + self.tokens_per_image > self.seq_len:
            chunks.append(Example(source=chunks[-1].source, key=chunks[-1].key))
        chunk = chunks[-1]
        chunk.images.append(image)
        chunk.input_ids += [self.image_id] * self.tokens_per_image
        chunk.labels += [IGNORE] * self.tokens_per_image

    def _add_text(self, chunks: list[Example], ids: list[int]) -> None:
        while ids:
            room = self.seq_len - len(chunks[-1])
            if room == 0:
                chunks.append(Example(source=chunks[-1].source, key=chunks[-1].key))
                continue
            chunks[-1].input_ids += ids[:room]
            chunks[-1].labels += ids[:room]
            ids = ids[room:]


def finish(example: Example) -> Example:
    if example.labels:
        example.labels[0] = IGNORE
    return example
