"""The training data loader: sources -> documents -> mixture -> examples -> batches.

Each (rank, worker) reads its own disjoint slice of every source's shards and
loops over it epoch after epoch, reshuffling shard order and samples per epoch
with seeds derived from `data.seed`, so a run is reproducible.
"""
from __future__ import annotations

import random
from collections import Counter
from functools import partial
from typing import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mm1.config.schema import Config
from mm1.data.documents import DECODERS, Document
from mm1.data.mixture import mix
from mm1.data.sequence import Example, SequenceBuilder, collate
from mm1.data.shards import read_shard, resolve_shards

SHUFFLE_BUFFER = 256


def source_documents(name: str, kind: str, shards: list[str], seed: int, skips: Counter) -> Iterator[Document]:
    """Endless documents of one source from the given shards."""
    decode = DECODERS[kind]
    for epoch in range(1_000_000):
        rng = random.Random(f"{seed}/{name}/{epoch}")
        order = shards[:]
        rng.shuffle(order)
        buffer: list[Document] = []
        produced = 0
        for url in order:
            for sample in read_shard(url, skips):
                doc = decode(sample, name, skips)
                if doc is None:
                    continue
                produced += 1
                buffer.append(doc)
                if len(buffer) >= SHUFFLE_BUFFER:
                    yield buffer.pop(rng.randrange(len(buffer)))
        rng.shuffle(buffer)
        yield from buffer
        if produced == 0:
            raise RuntimeError(f"data.sources.{name}: no usable sample in {len(shards)} shard(s); skipped: {dict(skips)}")


class MixedExamples(IterableDataset):
    def __init__(self, cfg: Config, tokenizer, rank: int = 0, world_size: int = 1):
        self.cfg = cfg
        self.builder = SequenceBuilder(
            tokenizer, cfg.model.connector.num_tokens, cfg.data.seq_len, cfg.data.max_images_per_seq
        )
        self.rank, self.world_size = rank, world_size
        self.shards = {
            name: resolve_shards(src.shards, cfg.data.root, f"data.sources.{name}.shards")
            for name, src in cfg.data.sources.items()
            if cfg.data.mixture.get(name, 0) > 0
        }
        self.skips: Counter = Counter()

    def _slot(self) -> tuple[int, int]:
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        return self.rank * workers + worker, self.world_size * workers

    def __iter__(self) -> Iterator[Example]:
        slot, slots = self._slot()
        seed = self.cfg.data.seed
        streams = {}
        for name, shards in self.shards.items():
            mine = shards[slot::slots] if len(shards) >= slots else shards  # too few shards: every slot reads all
            streams[name] = source_documents(name, self.cfg.data.sources[name].kind, mine, seed + slot, self.skips)
        for _, doc in mix(streams, self.cfg.data.mixture, seed=seed * 1000 + slot):
            example = self.builder(doc)
            example.skips, example.worker = dict(self.skips), slot
            yield example


def build_loader(cfg: Config, tokenizer, rank: int = 0, world_size: int = 1) -> DataLoader:
    dataset = MixedExamples(cfg, tokenizer, rank, world_size)
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        num_workers=cfg.data.num_workers,
        collate_fn=partial(collate, pad_id=tokenizer.pad_token_id, image_size=cfg.model.vision.image_size),
        persistent_workers=cfg.data.num_workers > 0,
    )
