"""`mm1 bench data`: packing efficiency and loader throughput of a recipe's data.

Packing efficiency = the share of sequence positions that hold real tokens, over
the first `rows` rows the packer closes (the `train.batch_size` rows still open
are left out: in a run they keep filling). It is measured on the recipe's mixture
for each layout (seq_len, tokens per image, images per sequence), next to the
padding efficiency of the same examples one per row, padded to seq_len. The
images per packed row are reported too: `max_images` bounds the images of each
example and of each packed row.

Throughput runs the training loader's dataset in this process (one worker's work:
read shards, decode, resize to uint8 pixels, tokenize, pack, collate; the encoder
normalises on its device) until `samples` raw samples were read, and times it
against decoding and resizing the images of exactly those samples with PIL from
bytes already in memory (no tar reading).
The two alternate for `rounds` rounds after one warm-up round; rates are medians.
"""
from __future__ import annotations

import cProfile
import io
import itertools
import pstats
import statistics
import time
from collections import Counter
from typing import Iterator

from PIL import Image

from mm1.config.schema import Config
from mm1.data.documents import IMAGE_EXTS
from mm1.data.loader import MixedBatches, SourceReader, next_document
from mm1.data.mixture import build_mixer
from mm1.data.packing import Packer
from mm1.data.sequence import Example, SequenceBuilder
from mm1.data.shards import read_shard, resolve_shards


def _shards(cfg: Config, name: str) -> list[str]:
    return resolve_shards(cfg.data.sources[name].shards, cfg.data.root, f"data.sources.{name}.shards")


def mixed_documents(cfg: Config, builder: SequenceBuilder) -> Iterator[list[Example]]:
    """The recipe's documents as sequence pieces, in the order a one-process, one-worker loader reads them."""
    names = [name for name in cfg.data.sources if cfg.data.mixture.get(name, 0) > 0]
    readers = {n: SourceReader(n, cfg.data.sources[n].kind, _shards(cfg, n), cfg.data.seed) for n in names}
    mixer = build_mixer(cfg.data.mixture_unit, cfg.data.mixture, cfg.data.seed * 1000)
    while True:
        yield next_document(mixer, readers, builder)


def packing(cfg: Config, tokenizer, seq_len: int, tokens_per_image: int, max_images: int, rows: int) -> dict:
    """Packed vs padded efficiency of the examples in the first `rows` rows the packer closes."""
    builder = SequenceBuilder(tokenizer, tokens_per_image, seq_len, max_images)
    packer = Packer(seq_len, cfg.train.batch_size, max_images=max_images)
    docs, closed, read = mixed_documents(cfg, builder), [], 0
    while len(closed) < rows:
        read += 1
        closed += [row for row in map(packer.add, next(docs)) if row is not None]
    closed = closed[:rows]
    examples = [ex for row in closed for ex in row]
    tokens, images = sum(map(len, examples)), [sum(len(ex.images) for ex in row) for row in closed]
    return {
        "seq_len": seq_len, "tokens_per_image": tokens_per_image, "max_images": max_images,
        "packing_efficiency": tokens / (rows * seq_len), "padding_efficiency": tokens / (len(examples) * seq_len),
        "rows": rows, "examples": len(examples), "documents": read,
        "images_per_row_mean": statistics.mean(images), "images_per_row_max": max(images),
    }


def pipeline_pass(cfg: Config, tokenizer, samples: int) -> dict:
    """Batches from the loader's dataset until `samples` raw samples were read."""
    start, images, position = time.perf_counter(), 0, {}
    for batch in MixedBatches(cfg, tokenizer):
        images += batch.images.shape[0]
        position = batch.position["sources"]
        if sum(src["read"] for src in position.values()) >= samples:
            break
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "images": images, "read": {name: src["read"] for name, src in position.items()}}


def _raw_samples(cfg: Config, name: str) -> Iterator[dict]:
    """A source's raw samples in the shard order its loader reader uses, epoch after epoch."""
    shards, kind = _shards(cfg, name), cfg.data.sources[name].kind
    for epoch in itertools.count():
        for url in SourceReader(name, kind, shards, cfg.data.seed, {"epoch": epoch})._order():
            yield from read_shard(url, Counter())


def raw_images(cfg: Config, read: dict[str, int]) -> list[bytes]:
    """The image bytes of the first `read[source]` raw samples of each source."""
    return [data for name, count in read.items() for sample in itertools.islice(_raw_samples(cfg, name), count)
            for key, data in sample.items() if key.rsplit(".", 1)[-1] in IMAGE_EXTS]


def raw_pass(blobs: list[bytes], size: int) -> float:
    """Seconds to decode every image and resize it to (size, size) with PIL, as the pipeline does."""
    start = time.perf_counter()
    for data in blobs:
        with Image.open(io.BytesIO(data)) as img:
            img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return time.perf_counter() - start


def throughput(cfg: Config, tokenizer, samples: int, rounds: int) -> dict:
    """Full pipeline vs raw decode + resize of the same images, alternating, medians of `rounds`."""
    first = pipeline_pass(cfg, tokenizer, samples)  # warm-up (page cache, tokenizer) and the sample set
    blobs, size = raw_images(cfg, first["read"]), cfg.model.vision.image_size
    raw_pass(blobs, size)
    raw_s, pipe_s = [], []
    for _ in range(rounds):
        raw_s.append(raw_pass(blobs, size))
        pipe_s.append(pipeline_pass(cfg, tokenizer, samples)["seconds"])
    read = sum(first["read"].values())
    pipe, raw = statistics.median(pipe_s), statistics.median(raw_s)
    return {
        "workers": 1, "samples": read, "images": first["images"], "raw_images": len(blobs), "rounds": rounds,
        "samples_per_s": read / pipe, "images_per_s": first["images"] / pipe,
        "raw_decode_samples_per_s": read / raw, "raw_decode_images_per_s": len(blobs) / raw,
        "pipeline_vs_raw": statistics.median(r / p for r, p in zip(raw_s, pipe_s, strict=True)),
        "pipeline_s": pipe_s, "raw_s": raw_s,
    }


def profile_pipeline(cfg: Config, tokenizer, samples: int, top: int) -> str:
    """cProfile of one pipeline pass: the `top` functions by their own time."""
    profiler = cProfile.Profile()
    profiler.runcall(pipeline_pass, cfg, tokenizer, samples)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


def bench_data(cfg: Config, tokenizer, seq_lens: list[int], tokens_per_image: int, max_images: int,
               rows: int, samples: int, rounds: int) -> dict:
    layouts = [(s, tokens_per_image, max_images) for s in seq_lens]
    own = (cfg.data.seq_len, cfg.model.connector.num_tokens, cfg.data.max_images_per_seq)
    if own not in layouts:
        layouts.append(own)
    figures = [packing(cfg, tokenizer, *layout, rows) for layout in layouts]
    result = {"packing_efficiency": figures[0]["packing_efficiency"],
              "padding_efficiency": figures[0]["padding_efficiency"], "packing": figures}
    result.update(throughput(cfg, tokenizer, samples, rounds))
    return result
