"""The data loader on real shards: disjoint slots, exact position restore, mixture."""
from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

from mm1.config import load_config
from mm1.data.loader import build_loader
from mm1.tokenizer import synth_tokenizer
from tests.conftest import TINY
from tests.shards import write_caption_shards, write_text_shards


@pytest.fixture(scope="module")
def tokenizer():
    return synth_tokenizer()


def config(root, *extra):
    return load_config(TINY, [
        f"data.root={root}", "data.synth=null", "data.sources={cap: {kind: caption, shards: ['cap/*.tar']}}",
        "data.mixture={cap: 1.0}", *extra,
    ])


def take_keys(loader, batches: int) -> list[list[str]]:
    return [b.keys for b in itertools.islice(iter(loader), batches)]


def test_two_ranks_two_workers_read_disjoint_samples_covering_the_epoch(tmp_path, tokenizer):
    keys = write_caption_shards(tmp_path / "cap", shards=8, per_shard=5)  # 4 slots x 2 shards x 5 samples
    seen = []
    for rank in range(2):
        cfg = config(tmp_path, "train.batch_size=5", "data.num_workers=2", "data.packing=false")
        loader = build_loader(cfg, tokenizer, rank=rank, world_size=2)
        for batch_keys in take_keys(loader, 4):  # 2 workers x 2 batches = 20 samples = this rank's epoch
            seen += batch_keys
    assert len(seen) == len(set(seen)) == 40
    assert sorted(seen) == sorted(keys)


@pytest.mark.slow
@pytest.mark.parametrize("workers, packing", [(0, False), (2, False), (0, True), (2, True)])
def test_restored_position_continues_exactly(tmp_path, tokenizer, workers, packing):
    write_caption_shards(tmp_path / "cap", shards=4, per_shard=7)
    cfg = config(tmp_path, "train.batch_size=3", f"data.num_workers={workers}", f"data.packing={packing}",
                 "data.seq_len=64")
    first = build_loader(cfg, tokenizer)
    stream = iter(first)
    before = [next(stream).keys for _ in range(5)]
    state = first.state_dict()
    after = [next(stream).keys for _ in range(7)]  # crosses an epoch boundary (28 samples)
    resumed = take_keys(build_loader(cfg, tokenizer, state=state), 7)
    assert resumed == after
    assert before[0] != after[0]


@pytest.mark.slow
def test_mixture_of_sources_from_shards(tmp_path, tokenizer):
    write_caption_shards(tmp_path / "cap", shards=2, per_shard=20)
    write_text_shards(tmp_path / "txt", shards=2, per_shard=20)
    cfg = load_config(TINY, [
        f"data.root={tmp_path}", "data.synth=null", "train.batch_size=50",
        "data.sources={cap: {kind: caption, shards: ['cap/caption-{000000..000001}.tar']}, "
        "txt: {kind: text, shards: ['txt/*.tar']}}",
        "data.mixture={cap: 0.7, txt: 0.3}",
    ])
    sources = [s for b in take_keys_sources(build_loader(cfg, tokenizer), 20) for s in b]
    share = sources.count("cap") / len(sources)
    assert abs(share - 0.7) < 0.03


def take_keys_sources(loader, batches):
    return [b.sources for b in itertools.islice(iter(loader), batches)]


def two_sources(root, *extra):
    """Captions (an image's tokens and a caption: several times the tokens of a text document) and texts."""
    write_caption_shards(root / "cap", shards=2, per_shard=40)
    write_text_shards(root / "txt", shards=2, per_shard=40)
    return load_config(TINY, [
        f"data.root={root}", "data.synth=null", "data.sources={cap: {kind: caption, shards: ['cap/*.tar']}, "
        "txt: {kind: text, shards: ['txt/*.tar']}}", "data.mixture={cap: 0.5, txt: 0.5}", *extra,
    ])


def test_tokens_unit_realises_the_weights_in_tokens(tmp_path, tokenizer):
    cfg = two_sources(tmp_path, "data.mixture_unit=tokens", "data.packing=false", "train.batch_size=10")
    tokens, documents = Counter(), Counter()
    for batch in itertools.islice(iter(build_loader(cfg, tokenizer)), 30):
        for source, n, start in zip(batch.sources, batch.example_tokens, batch.document_starts, strict=True):
            tokens[source] += n
            documents[source] += start
    assert abs(tokens["cap"] / sum(tokens.values()) - 0.5) < 0.02, tokens
    assert documents["txt"] > 2 * documents["cap"]  # text documents are the short ones


@pytest.mark.slow
def test_tokens_unit_position_round_trips_and_continues_exactly(tmp_path, tokenizer):
    cfg = two_sources(tmp_path, "data.mixture_unit=tokens", "train.batch_size=3", "data.seq_len=64")
    first = build_loader(cfg, tokenizer)
    stream = iter(first)
    for _ in range(5):
        next(stream)
    state = json.loads(json.dumps(first.state_dict()))  # as trainer.json stores it
    assert set(state["slots"]["0"]["tokens"]) == {"cap", "txt"}
    after = [next(stream).keys for _ in range(7)]
    assert take_keys(build_loader(cfg, tokenizer, state=state), 7) == after


def test_missing_shard_pattern_is_an_error_naming_it(tmp_path, tokenizer):
    from mm1.config import ConfigError

    cfg = config(tmp_path)
    with pytest.raises(ConfigError, match=r"data.sources.cap.shards: pattern 'cap/\*.tar' matches no shard file"):
        build_loader(cfg, tokenizer)


def test_resume_after_a_shard_changed_names_it_and_goes_on(tmp_path, tokenizer, capfd):
    write_caption_shards(tmp_path / "cap", shards=2, per_shard=7)
    cfg = config(tmp_path, "train.batch_size=3", "data.packing=true", "data.seq_len=64")
    first = build_loader(cfg, tokenizer)
    stream = iter(first)
    for _ in range(3):
        next(stream)
    state = first.state_dict()
    assert state["slots"]["0"]["open_rows"]  # open rows are rebuilt from their shards on resume
    write_caption_shards(tmp_path / "new", shards=2, per_shard=7, prefix="other")  # same size, other samples
    for s in range(2):
        (tmp_path / "new" / f"other-{s:06d}.tar").replace(tmp_path / "cap" / f"caption-{s:06d}.tar")
    resumed = take_keys(build_loader(cfg, tokenizer, state=state), 3)
    assert len(resumed) == 3  # training goes on
    err = capfd.readouterr().err
    assert "shard(s) changed since the checkpoint was saved" in err and "caption-00000" in err
    assert "put the shard(s) back" in err
