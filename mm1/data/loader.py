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

import os
import random
import sys
from collections import Counter
from typing import Iterator, Optional

from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from mm1.config.schema import Config
from mm1.data.batch import Batch
from mm1.data.documents import DECODERS, Document
from mm1.data.mixture import build_mixer
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
        self.shards_done = state.get("shards_done", 0)  # shard reads finished, for the damaged-shard rate
        self.damaged = Counter(state.get("damaged", {}))  # shard path -> reads that ended early
        self._docs = self._iterate()

    def state(self) -> dict:
        return {"epoch": self.epoch, "shard": self.shard, "offset": self.offset, "skips": dict(self.skips),
                "read": self.read, "shards_done": self.shards_done, "damaged": dict(self.damaged)}

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
                damaged = Counter()
                for index, sample in enumerate(read_shard(order[self.shard], damaged)):
                    if index < self.offset:
                        continue
                    self.offset = index + 1
                    self.read += 1
                    doc = self.decode(sample, self.name, self.skips)
                    if doc is not None:
                        produced += 1
                        doc.origin = {"source": self.name, "epoch": self.epoch, "shard": self.shard, "offset": index,
                                      "key": sample.get("__key__")}
                        yield doc
                self._finish_shard(order[self.shard], damaged)
            if fresh and produced == 0:
                damaged = f"; damaged shards: {sorted(self.damaged)}" if self.damaged else ""
                raise SkipRateExceeded(f"data.sources.{self.name}: no usable sample in {len(order)} shard(s); "
                                       f"skipped: {dict(self.skips)}{damaged}")
            self.epoch, self.shard = self.epoch + 1, 0

    def _finish_shard(self, path: str, damaged: Counter) -> None:
        if damaged:
            self.damaged[path] += 1
            print(f"mm1: data.sources.{self.name}: shard {path} is damaged (cut short or unreadable) after sample "
                  f"{self.offset}; the rest of it is skipped (see shards/damaged in metrics.jsonl)", file=sys.stderr)
        self.shards_done += 1
        self.shard, self.offset = self.shard + 1, 0


def next_document(mixer, readers: dict[str, SourceReader], builder: SequenceBuilder) -> list[Example]:
    """The sequence pieces of the next document of the mixture (none when every piece was dropped); the
    mixer is told the tokens they put into the sequences."""
    source = mixer.next_source()
    pieces = builder(next(readers[source]))
    mixer.drawn(source, sum(map(len, pieces)))
    return pieces


def resolve_sources(cfg: Config) -> dict[str, list[str]]:
    """The shard files of every source the mixture draws from; ConfigError naming a pattern that matches none
    (and what its folder holds). Cheap: call it before building a model."""
    return {name: resolve_shards(src.shards, cfg.data.root, f"data.sources.{name}.shards")
            for name, src in cfg.data.sources.items() if cfg.data.mixture.get(name, 0) > 0}


class MixedBatches(IterableDataset):
    def __init__(self, cfg: Config, tokenizer, rank: int = 0, world_size: int = 1, state: Optional[dict] = None):
        self.cfg, self.tokenizer = cfg, tokenizer
        self.builder = SequenceBuilder(
            tokenizer, cfg.model.connector.num_tokens, cfg.data.seq_len, cfg.data.max_images_per_seq
        )
        self.rank, self.world_size = rank, world_size
        self.shards = resolve_sources(cfg)
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
        rows_per_batch, data = self.cfg.train.batch_size, self.cfg.data
        mixer = build_mixer(data.mixture_unit, data.mixture, data.seed * 1000 + slot, saved)
        open_rows = [row for row in self._reread(saved.get("open_rows", []), readers) if row]
        packer = Packer(data.seq_len, rows_per_batch, open_rows, max_images=data.max_images_per_seq)
        # the remaining chunks of the document being consumed
        pending_origins = saved.get("pending", [])
        pending = self._reread([pending_origins], readers)[0] if pending_origins else []
        while True:
            ready: list[list[Example]] = []
            while len(ready) < rows_per_batch:
                while not pending:
                    pending = next_document(mixer, readers, self.builder)
                example = pending.pop(0)
                row = packer.add(example) if data.packing else [example]
                if row is not None:
                    ready.append(row)
            batch = collate_rows(ready, self.tokenizer.pad_token_id, self.cfg.model.vision.image_size)
            batch.slot, batch.position = slot, {
                **mixer.state(),  # the mixer's own keys: draws (and tokens, for the tokens unit)
                "sources": {name: r.state() for name, r in readers.items()},
                "open_rows": [[ex.origin for ex in row] for row in packer.rows],
                "pending": [ex.origin for ex in pending],
            }
            yield batch

    def _reread(self, rows: list[list[dict]], readers: dict[str, SourceReader]) -> list[list[Example]]:
        """Rebuild the open rows of a saved position by reading their documents again. A document whose
        shard changed since the save (another sample at its place, or none) is dropped with a warning."""
        origins = [o for row in rows for o in row]
        found = self._examples_at(origins, readers)
        lost = [o for o in origins if _origin_key(o) not in found]
        if lost:
            changed = sorted({self._shard_path(o, readers) for o in lost})
            print(f"mm1: shard(s) changed since the checkpoint was saved: {', '.join(changed)}; {len(lost)} "
                  f"example(s) of the saved data position are not there any more and are dropped. Training goes "
                  f"on, but not as an exact continuation: put the shard(s) back as they were to get one",
                  file=sys.stderr)
        return [[found[_origin_key(o)] for o in row if _origin_key(o) in found] for row in rows]

    def _shard_path(self, origin: dict, readers: dict[str, SourceReader]) -> str:
        reader = readers[origin["source"]]
        order = SourceReader(origin["source"], self.cfg.data.sources[origin["source"]].kind, reader.shards,
                             reader.seed, {"epoch": origin["epoch"]})._order()
        return order[origin["shard"]] if origin["shard"] < len(order) else f"{origin['source']} shard {origin['shard']}"

    def _examples_at(self, origins: list[dict], readers: dict[str, SourceReader]) -> dict[tuple, Example]:
        """Read each shard holding a wanted document once, up to the last wanted sample; a sample is taken
        only if it is still the one that was read there (same key)."""
        wanted: dict[tuple, dict] = {}
        for o in origins:
            wanted.setdefault((o["source"], o["epoch"], o["shard"]), {})[o["offset"]] = o.get("key")
        found: dict[tuple, Example] = {}
        for (source, epoch, shard), offsets in wanted.items():
            path = self._shard_path({"source": source, "epoch": epoch, "shard": shard}, readers)
            decode = DECODERS[self.cfg.data.sources[source].kind]
            for index, sample in enumerate(read_shard(path, Counter()) if os.path.isfile(path) else []):
                same = index in offsets and offsets[index] in (None, sample.get("__key__"))  # None: saved without
                doc = decode(sample, source, Counter()) if same else None
                if doc is not None:
                    doc.origin = {"source": source, "epoch": epoch, "shard": shard, "offset": index,
                                  "key": sample.get("__key__")}
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

    def load_state_dict(self, state: dict) -> None:
        """Continue after `state` (what `state_dict` gave); takes effect at the next iteration."""
        self.state = {"consumed": state["consumed"], "slots": dict(state["slots"])}
        self.dataset.state = self.state

    def skips(self) -> Counter:
        total: Counter = Counter()
        for position in self.state["slots"].values():
            for source in position["sources"].values():
                total.update(source["skips"])
        return total

    def samples_read(self) -> int:
        return self._sum_sources("read")

    def shards_done(self) -> int:
        return self._sum_sources("shards_done")

    def damaged_shards(self) -> Counter:
        """Shard path -> reads of it that ended early, over every slot."""
        total: Counter = Counter()
        for position in self.state["slots"].values():
            for source in position["sources"].values():
                total.update(source.get("damaged", {}))
        return total

    def _sum_sources(self, key: str) -> int:
        return sum(src.get(key, 0) for pos in self.state["slots"].values() for src in pos["sources"].values())


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


def check_damaged_shards(loader: Loader, limit: float) -> None:
    """Shards cut short or unreadable are counted per shard read, apart from bad samples: a damaged shard
    loses every sample after the damage, so a few of them can mean training on part of the data."""
    done, damaged = loader.shards_done(), loader.damaged_shards()
    if done and sum(damaged.values()) > limit * done:
        names = ", ".join(sorted(damaged)[:5]) + (" ..." if len(damaged) > 5 else "")
        raise SkipRateExceeded(
            f"{sum(damaged.values())} of {done} shard reads ended early on a damaged shard "
            f"({sum(damaged.values()) / done:.1%} > data.max_damaged_shard_rate = {limit:.1%}): {names}; "
            f"re-download or re-write them, or remove them from data.sources"
        )


def build_loader(cfg: Config, tokenizer, rank: int = 0, world_size: int = 1, state: Optional[dict] = None) -> Loader:
    return Loader(cfg, tokenizer, rank, world_size, state)
