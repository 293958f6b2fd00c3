"""The training data loader: sources -> documents -> mixture -> examples -> batches.

Every (rank, worker) pair is a *slot*. A slot reads its own disjoint slice of
each source's shards and loops over it epoch after epoch; shard order is
reshuffled per epoch from `data.seed`; samples within a shard are read in the
order they were written (writers shuffle: img2dataset and mm1's converters do).

Batches are built inside the slot, and each carries the slot's position after
it, so the trainer can save `state_dict()` of what it has *consumed* and a new
loader continues with the next unseen sample.
"""
from __future__ import annotations

import random
from collections import Counter
from typing import Iterator, Optional

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mm1.config.schema import Config
from mm1.data.batch import Batch
from mm1.data.documents import DECODERS, Document
from mm1.data.mixture import Mixer
from mm1.data.packing import Packer, collate_rows
from mm1.data.sequence import Example, SequenceBuilder
from mm1.data.shards import read_shard, resolve_shards


class SourceReader:
    """Endless documents of one source; `state` is its exact position."""

    def __init__(self, name: str, kind: str, shards: list[str], seed: int, state: Optional[dict] = None):
        self.name, self.decode, self.shards, self.seed = name, DECODERS[kind], shards, seed
        state = state or {}
        self.epoch, self.shard, self.offset = state.get("epoch", 0), state.get("shard", 0), state.get("offset", 0)
        self.skips = Counter(state.get("skips", {}))
        self.read = state.get("read", 0)  # raw samples read, for the skip rate
        self._docs = self._iterate()

    def state(self) -> dict:
        return {"epoch": self.epoch, "shard": self.shard, "offset": self.offset, "skips": dict(self.skips),
                "read": self.read}

    def __next__(self) -> Document:
        return next(self._docs)

    def _order(self) -> list[str]:
        order = self.shards[:]
        random.Random(f"{self.seed}/{self.name}/{self.epoch}").shuffle(order)
        return order

    def _iterate(self) -> Iterator[Document]:
        while True:
            fresh, produced = self.shard == 0 and self.offset == 0, 0
            order = self._order()
            while self.shard < len(order):
                for index, sample in enumerate(read_shard(order[self.shard], self.skips)):
                    if index < self.offset:
                        continue
                    self.offset = index + 1
                    self.read += 1
                    doc = self.decode(sample, self.name, self.skips)
                    if doc is not None:
                        produced += 1
                        doc.origin = {"source": self.name, "epoch": self.epoch, "shard": self.shard, "offset": index}
                        yield doc
                self.shard, self.offset = self.shard + 1, 0
            if fresh and produced == 0:
                raise RuntimeError(
                    f"data.sources.{self.name}: no usable sample in {len(order)} shard(s); skipped: {dict(self.skips)}"
                )
            self.epoch, self.shard = self.epoch + 1, 0


class MixedBatches(IterableDataset):
    def __init__(self, cfg: Config, tokenizer, rank: int = 0, world_size: int = 1, state: Optional[dict] = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.builder = SequenceBuilder(
            tokenizer, cfg.model.connector.num_tokens, cfg.data.seq_len, cfg.data.max_images_per_seq
        )
        self.rank, self.world_size = rank, world_size
        self.shards = {
            name: resolve_shards(src.shards, cfg.data.root, f"data.sources.{name}.shards")
            for name, src in cfg.data.sources.items()
            if cfg.data.mixture.get(name, 0) > 0
        }
        self.state = state or {"consumed": 0, "slots": {}}

    def _slot(self) -> tuple[int, int]:
        """This worker's slot. After a resume the workers rotate so that the slot whose batch is
        due next is served first (a DataLoader always asks worker 0 first)."""
        info = get_worker_info()
        workers, worker = (1, 0) if info is None else (info.num_workers, info.id)
        worker = (worker + self.state["consumed"]) % workers
        return self.rank * workers + worker, self.world_size * workers

    def _readers(self, slot: int, slots: int, saved: dict) -> dict[str, SourceReader]:
        readers = {}
        for name, shards in self.shards.items():
            mine = shards[slot::slots] if len(shards) >= slots else shards  # too few shards: every slot reads all
            kind = self.cfg.data.sources[name].kind
            readers[name] = SourceReader(name, kind, mine, self.cfg.data.seed + slot, saved.get(name))
        return readers

    def __iter__(self) -> Iterator[Batch]:
        slot, slots = self._slot()
        saved = self.state["slots"].get(str(slot), {})
        readers = self._readers(slot, slots, saved.get("sources", {}))
        mixer = Mixer(self.cfg.data.mixture, self.cfg.data.seed * 1000 + slot, saved.get("draws", 0))
        rows_per_batch, data = self.cfg.train.batch_size, self.cfg.data
        packer = Packer(data.seq_len, rows_per_batch, self._reread(saved.get("open_rows", []), readers),
                        max_images=data.max_images_per_seq)
        # the remaining chunks of the document being consumed
        pending_origins = saved.get("pending", [])
        pending = self._reread([pending_origins], readers)[0] if pending_origins else []
        while True:
            ready: list[list[Example]] = []
            while len(ready) < rows_per_batch:
                while not pending:
                    pending = self.builder(next(readers[mixer.next_source()]))
                example = pending.pop(0)
                row = packer.add(example) if data.packing else [example]
                if row is not None:
                    ready.append(row)
            batch = collate_rows(ready, self.tokenizer.pad_token_id, self.cfg.model.vision.image_size)
            batch.slot, batch.position = slot, {
                "draws": mixer.draws,
                "sources": {name: r.state() for name, r in readers.items()},
                "open_rows": [[ex.origin for ex in row] for row in packer.rows],
                "pending": [ex.origin for ex in pending],
            }
            yield batch

    def _reread(self, rows: list[list[dict]], readers: dict[str, SourceReader]) -> list[list[Example]]:
        """Rebuild the open rows of a saved position by reading their documents again."""
        found = self._examples_at([o for row in rows for o in row], readers)
        return [[found[_origin_key(o)] for o in row] for row in rows if row]

    def _examples_at(self, origins: list[dict], readers: dict[str, SourceReader]) -> dict[tuple, Example]:
        """Read each shard holding a wanted document once, up to the last wanted sample."""
        wanted: dict[tuple, set] = {}
        for o in origins:
            wanted.setdefault((o["source"], o["epoch"], o["shard"]), set()).add(o["offset"])
        found: dict[tuple, Example] = {}
        for (source, epoch, shard), offsets in wanted.items():
            reader = readers[source]
            order = SourceReader(source, self.cfg.data.sources[source].kind, reader.shards, reader.seed,
                                 {"epoch": epoch})._order()
            decode = DECODERS[self.cfg.data.sources[source].kind]
            for index, sample in enumerate(read_shard(order[shard], Counter())):
                if index in offsets:
                    doc = decode(sample, source, Counter())
                    doc.origin = {"source": source, "epoch": epoch, "shard": shard, "offset": index}
                    for chunk in self.builder(doc):
                        found[_origin_key(chunk.origin)] = chunk
                if index >= max(offsets):
                    break
        return found


def _origin_key(o: dict) -> tuple:
    return o["source"], o["epoch"], o["shard"], o["offset"], o["chunk"]


class Loader:
    """A DataLoader over MixedBatches that tracks the position of what was consumed."""

    def __init__(self, cfg: Config, tokenizer, rank: int = 0, world_size: int = 1, state: Optional[dict] = None):
        self.state = {"consumed": 0, "slots": {}} if state is None else {
            "consumed": state["consumed"], "slots": dict(state["slots"])}
        self.dataset = MixedBatches(cfg, tokenizer, rank, world_size, self.state)
        workers = cfg.data.num_workers
        self.loader = DataLoader(self.dataset, batch_size=None, num_workers=workers,
                                 persistent_workers=workers > 0, prefetch_factor=2 if workers else None)

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.loader:
            self.state["consumed"] += 1
            self.state["slots"][str(batch.slot)] = batch.position
            yield batch

    def state_dict(self) -> dict:
        return {"consumed": self.state["consumed"], "slots": dict(self.state["slots"])}

    def skips(self) -> Counter:
        total: Counter = Counter()
        for position in self.state["slots"].values():
            for source in position["sources"].values():
                total.update(source["skips"])
        return total

    def samples_read(self) -> int:
        return sum(src.get("read", 0) for pos in self.state["slots"].values() for src in pos["sources"].values())


class SkipRateExceeded(RuntimeError):
    """Too large a share of the input was unusable: the data is probably broken."""


def check_skip_rate(loader: Loader, limit: float, min_samples: int = 200) -> None:
    read, skips = loader.samples_read(), loader.skips()
    skipped = sum(skips.values())
    if read >= min_samples and skipped > limit * read:
        raise SkipRateExceeded(
            f"{skipped} of {read} samples were skipped ({skipped / read:.1%} > data.max_skip_rate = {limit:.1%}); "
            f"by reason: {dict(skips)}"
        )


def build_loader(cfg: Config, tokenizer, rank: int = 0, world_size: int = 1, state: Optional[dict] = None) -> Loader:
    return Loader(cfg, tokenizer, rank, world_size, state)
