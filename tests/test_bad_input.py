"""Bad input is skipped and counted by reason while training goes on; too much of it stops the run."""
from __future__ import annotations

import functools
import io
import json

import pytest
import webdataset as wds
from PIL import Image

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


def test_every_kind_of_bad_input_is_skipped_and_counted(tmp_path):
    write_caption_shards(tmp_path / "cap", shards=1, per_shard=30)
    write_bad_shard(tmp_path / "cap" / "caption-bad.tar", good=30)
    write_caption_shards(tmp_path / "cap", shards=1, per_shard=40, prefix="cut")
    truncate(tmp_path / "cap" / "cut-000000.tar")
    (tmp_path / "doc").mkdir()
    write_interleaved_shard(tmp_path / "doc" / "doc-000000.tar")
    run = pretrain(load_config(TINY, overrides(tmp_path, tmp_path / "run", "train.steps=25", "train.log_every=25",
                                               "data.max_skip_rate=1.0")))
    last = read_metrics(run)[-1]
    assert last["step"] == 25  # training went on
    for reason in ("bad_image", "missing_key", "empty_text", "bad_text", "tiny_image", "huge_image",
                   "bad_document", "empty_document", "broken_tar"):
        assert last.get(f"skipped/{reason}", 0) >= 1, (reason, last)


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
