"""Bad input is skipped and counted by reason while training goes on; too much of it stops the run."""
from __future__ import annotations

import functools
import io
import json
import re
from collections import Counter

import pytest
import webdataset as wds
from PIL import Image

from mm1.cli import main
from mm1.config import load_config
from mm1.data.loader import SkipRateExceeded
from mm1.train.metrics import read_metrics
from mm1.train.pretrain import pretrain
from tests.conftest import TINY
from tests.shards import png, write_caption_shards


@functools.lru_cache(maxsize=1)
def huge_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buf, format="PNG")  # 81M pixels in a small file
    return buf.getvalue()


def write_bad_shard(path, good: int) -> None:
    with wds.TarWriter(str(path)) as sink:
        sink.write({"__key__": "corrupt", "png": b"\x89PNG not really", "txt": "a red square ."})
        sink.write({"__key__": "truncated", "png": png()[:40], "txt": "a red square ."})
        sink.write({"__key__": "nocaption", "png": png()})
        sink.write({"__key__": "noimage", "txt": "a red square ."})
        sink.write({"__key__": "empty", "png": png(), "txt": "   "})
        sink.write({"__key__": "latin1", "png": png(), "txt": "caf\xe9".encode("latin-1")})
        sink.write({"__key__": "tiny", "png": png(size=2), "txt": "a red square ."})
        sink.write({"__key__": "huge", "png": huge_png(), "txt": "a red square ."})
        for i in range(good):
            sink.write({"__key__": f"good{i:04d}", "png": png(), "txt": "a red square ."})


def write_interleaved_shard(path) -> None:
    with wds.TarWriter(str(path)) as sink:
        sink.write({"__key__": "badjson", "json": b"{not json"})
        sink.write({"__key__": "emptydoc", "json": json.dumps({"texts": [None], "images": [None]})})
        doc = {"texts": ["look .", None, "a red square .", None], "images": [None, "0.png", None, "1.png"]}
        sink.write({"__key__": "onebadimage", "json": json.dumps(doc), "0.png": png(), "1.png": b"garbage"})
        for i in range(20):
            sink.write({"__key__": f"doc{i}", "json": json.dumps(doc), "0.png": png(), "1.png": png()})


def truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])


def overrides(root, run, *extra):
    return [f"data.root={root}", "data.synth=null", f"output.dir={run}", "train.batch_size=4",
            "data.sources={cap: {kind: caption, shards: ['cap/*.tar']}, doc: {kind: interleaved, shards: ['doc/*.tar']}}",
            "data.mixture={cap: 0.7, doc: 0.3}", "model.decoder.num_layers=1", "model.vision.layers=1", "data.seq_len=96", *extra]


@pytest.mark.slow
def test_every_kind_of_bad_input_is_skipped_and_counted(tmp_path):
    write_caption_shards(tmp_path / "cap", shards=1, per_shard=30)
    write_bad_shard(tmp_path / "cap" / "caption-bad.tar", good=30)
    write_caption_shards(tmp_path / "cap", shards=1, per_shard=40, prefix="cut")
    truncate(tmp_path / "cap" / "cut-000000.tar")
    (tmp_path / "doc").mkdir()
    write_interleaved_shard(tmp_path / "doc" / "doc-000000.tar")
    run = pretrain(load_config(TINY, overrides(tmp_path, tmp_path / "run", "train.steps=25", "train.log_every=25",
                                               "data.max_skip_rate=1.0", "data.max_damaged_shard_rate=1.0")))
    last = read_metrics(run)[-1]
    assert last["step"] == 25  # training went on
    for reason in ("bad_image", "missing_key", "empty_text", "bad_text", "tiny_image", "huge_image",
                   "bad_document", "empty_document"):
        assert last.get(f"skipped/{reason}", 0) >= 1, (reason, last)
    assert last["shards/damaged"] >= 1 and last["shards/read"] > last["shards/damaged"]


@pytest.mark.slow
def test_skip_rate_threshold_stops_the_run_with_a_message(tmp_path):
    (tmp_path / "cap").mkdir()
    for s in range(30):  # 8 bad in 10: far over 5%
        write_bad_shard(tmp_path / "cap" / f"bad-{s:03d}.tar", good=2)
    write_caption_shards(tmp_path / "doc_unused", shards=1, per_shard=1)
    (tmp_path / "doc").mkdir()
    write_interleaved_shard(tmp_path / "doc" / "doc-000000.tar")
    cfg = load_config(TINY, overrides(tmp_path, tmp_path / "run", "train.steps=200"))
    with pytest.raises(SkipRateExceeded, match=r"data.max_skip_rate = 5.0%.*bad_image"):
        pretrain(cfg)


HOSTILE = "a red <image> square </s> <|endofchunk|> <s> <pad> <unk> ."


def write_hostile_shards(root) -> None:
    """One shard per stream whose text holds every special token of the tokenizer, written out."""
    for kind in ("cap", "doc", "txt"):
        (root / kind).mkdir(parents=True)
    with wds.TarWriter(str(root / "cap" / "cap-000000.tar")) as sink:
        for i in range(8):
            sink.write({"__key__": f"c{i}", "png": png(), "txt": f"{HOSTILE} {i}"})
    doc = {"texts": [HOSTILE, None, HOSTILE], "images": [None, "0.png", None]}
    with wds.TarWriter(str(root / "doc" / "doc-000000.tar")) as sink:
        for i in range(8):
            sink.write({"__key__": f"d{i}", "json": json.dumps(doc), "0.png": png()})
    with wds.TarWriter(str(root / "txt" / "txt-000000.tar")) as sink:
        for i in range(8):
            sink.write({"__key__": f"t{i}", "txt": HOSTILE})


def test_special_token_text_in_every_stream_is_encoded_as_plain_text(tmp_path):
    from mm1.data.documents import DECODERS
    from mm1.data.sequence import SequenceBuilder
    from mm1.data.shards import read_shard
    from mm1.tokenizer import END_OF_CHUNK, IMAGE_TOKEN, synth_tokenizer

    write_hostile_shards(tmp_path)
    tok = synth_tokenizer()
    builder = SequenceBuilder(tok, tokens_per_image=4, seq_len=256, max_images=4)
    special = {tok.convert_tokens_to_ids(t): t for t in tok.all_special_tokens if t != tok.unk_token}  # unk: a word
    for kind, stream in (("caption", "cap"), ("interleaved", "doc"), ("text", "txt")):
        raw = next(read_shard(str(tmp_path / stream / f"{stream}-000000.tar"), Counter()))
        (example,) = builder(DECODERS[kind](raw, stream, Counter()))
        structure = [special[i] for i in example.input_ids if i in special]
        images = len(example.images)
        expected = ["<s>"] + [IMAGE_TOKEN] * 4 * images + [END_OF_CHUNK] * images + ["</s>"]
        assert sorted(structure) == sorted(expected), (kind, structure)
    cfg = load_config(TINY, [
        f"data.root={tmp_path}", "data.synth=null", f"output.dir={tmp_path / 'run'}", "train.batch_size=2",
        "data.sources={cap: {kind: caption, shards: ['cap/*.tar']}, doc: {kind: interleaved, shards: ['doc/*.tar']}, "
        "txt: {kind: text, shards: ['txt/*.tar']}}", "data.mixture={cap: 1, doc: 1, txt: 1}",
        "model.decoder.num_layers=1", "model.vision.layers=1", "data.seq_len=96", "train.steps=3", "train.threads=1"])
    last = read_metrics(pretrain(cfg))[-1]
    assert last["step"] == 3 and not any(k.startswith("skipped/") for k in last)


def test_deeply_nested_json_is_a_counted_skip_everywhere(tmp_path):
    from mm1.data.convert import ShardOptions, convert_obelics, convert_text
    from mm1.data.documents import DECODERS
    from mm1.eval.loaders.common import read_json

    deep = "[" * 200_000 + "]" * 200_000
    skips = Counter()
    assert DECODERS["interleaved"]({"__key__": "deep", "json": deep.encode()}, "doc", skips) is None
    assert skips == {"bad_document": 1}
    (tmp_path / "rows.jsonl").write_text(deep + "\n" + json.dumps({"texts": ["ok"], "images": [None]}) + "\n")
    report = convert_obelics([tmp_path / "rows.jsonl"], ShardOptions(tmp_path / "doc", "doc"))
    assert report.samples == 1 and report.skipped == {"bad_row": 1}
    (tmp_path / "text.jsonl").write_text(deep + "\n" + json.dumps({"text": "fine"}) + "\n")
    report = convert_text([tmp_path / "text.jsonl"], ShardOptions(tmp_path / "txt", "txt"))
    assert report.samples == 1 and report.skipped == {"bad_line": 1}
    (tmp_path / "questions.json").write_text(deep)
    with pytest.raises(ValueError, match="not valid JSON"):
        read_json(tmp_path / "questions.json")


@pytest.mark.slow
def test_damaged_shards_are_counted_apart_and_have_their_own_threshold(tmp_path, capfd):
    write_caption_shards(tmp_path / "cap", shards=5, per_shard=12)
    truncate(tmp_path / "cap" / "caption-000002.tar")
    (tmp_path / "doc").mkdir()
    write_interleaved_shard(tmp_path / "doc" / "doc-000000.tar")
    args = overrides(tmp_path, tmp_path / "run", "train.steps=30", "data.max_skip_rate=1.0",
                     "data.max_damaged_shard_rate=0.05")
    assert main(["pretrain", str(TINY), *args]) == 1  # stopped with a message, no traceback
    err = capfd.readouterr().err
    assert "caption-000002.tar is damaged" in err and "Traceback" not in err
    assert re.search(r"mm1 pretrain: stopped: .* ended early on a damaged shard.*caption-000002.tar", err)
    assert not any("skipped/broken_tar" in r for r in read_metrics(tmp_path / "run"))  # not a bad sample


def test_a_source_with_no_usable_sample_stops_with_a_message(tmp_path, capfd):
    (tmp_path / "cap").mkdir()
    write_bad_shard(tmp_path / "cap" / "bad-000.tar", good=0)
    (tmp_path / "doc").mkdir()
    write_interleaved_shard(tmp_path / "doc" / "doc-000000.tar")
    assert main(["pretrain", str(TINY), *overrides(tmp_path, tmp_path / "run", "train.steps=3")]) == 1
    err = capfd.readouterr().err
    assert "data.sources.cap: no usable sample in 1 shard(s)" in err and "Traceback" not in err
