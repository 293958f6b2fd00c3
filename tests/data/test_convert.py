"""Converters: fixtures in the real source formats, read back with mm1's own shard reader."""
from __future__ import annotations

import base64
import io
import json
import runpy
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from mm1.data.convert import ShardOptions, convert_coco, convert_obelics, convert_text, shuffled
from mm1.data.documents import DECODERS
from mm1.data.shards import read_shard
from tests.conftest import ROOT

TOOLS = ROOT / "tools"
ANY_LOSS = {"max_dropped_images": 1}  # these tests count what is left out; losing too much is tested below


# ---- source images -------------------------------------------------------------------------------------

def noise(seed: int, size=(24, 16)) -> Image.Image:
    """A random RGB image: pixel equality after a round trip means something."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def pixels(data_or_img) -> np.ndarray:
    img = data_or_img if isinstance(data_or_img, Image.Image) else Image.open(io.BytesIO(data_or_img))
    return np.asarray(img.convert("RGB"))


# ---- reading shards back with mm1's reader ---------------------------------------------------------------

def read_back(shards: list[str], kind: str) -> list[tuple[dict, object]]:
    """(raw sample, decoded Document) for every sample, in shard order; mm1's decoder must skip nothing."""
    skips: Counter = Counter()
    out = [(raw, DECODERS[kind](raw, "src", skips)) for shard in shards for raw in read_shard(shard, skips)]
    assert not skips, skips
    return out


def assert_same_image(decoded: Image.Image, source: bytes) -> None:
    np.testing.assert_array_equal(pixels(decoded), pixels(source))


# ---- COCO ----------------------------------------------------------------------------------------------

@pytest.fixture
def coco(tmp_path):
    """A COCO captions file and image folder with good, missing, corrupt and non-JPEG/PNG images."""
    folder = tmp_path / "train2017"
    folder.mkdir()
    files = {"a.png": encoded(noise(1), "PNG"), "b.jpg": encoded(noise(2), "JPEG"),
             "c.gif": encoded(noise(3).convert("P"), "GIF"), "e.png": b"\x89PNG\r\n\x1a\n not really"}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    images = [{"id": i, "file_name": name, "height": 16, "width": 24}
              for i, name in enumerate(["a.png", "b.jpg", "c.gif", "d.png", "e.png", "f.png"], start=1)]
    captions = [(1, "a noisy square ."), (2, "a jpeg of noise"), (1, "  second caption of a  \n"), (3, "a gif"),
                (4, "the missing one"), (5, "the corrupt one"), (4, "missing again"), (99, "no such image"),
                (2, "   "), (2, "another jpeg caption"), (1, "\ud800 lone surrogate")]
    annotations = [{"image_id": i, "id": 100 + n, "caption": c} for n, (i, c) in enumerate(captions)]
    path = tmp_path / "captions_train2017.json"
    path.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": annotations}))
    return path, folder, files


def test_coco_one_sample_per_caption_round_trips(coco, tmp_path):
    path, folder, files = coco
    report = convert_coco(path, folder, ShardOptions(tmp_path / "out", "caption", samples_per_shard=2, **ANY_LOSS))
    expected = {"a noisy square .": "a.png", "second caption of a": "a.png", "a jpeg of noise": "b.jpg",
                "another jpeg caption": "b.jpg", "a gif": "c.gif"}
    assert report.samples == report.images == 5
    assert report.skipped == {"missing_image": 2, "bad_image": 1, "unknown_image": 1, "empty_caption": 1,
                              "bad_caption": 1}
    assert [Path(s).name for s in report.shards] == ["caption-000000.tar", "caption-000001.tar", "caption-000002.tar"]
    samples = read_back(report.shards, "caption")
    assert sorted(doc.segments[1] for _, doc in samples) == sorted(expected)
    for raw, doc in samples:
        image, caption = doc.segments
        name = expected[caption]
        assert_same_image(image, files[name])
        meta = json.loads(raw["json"])
        assert meta["file_name"] == name and meta["caption"] == caption and (meta["width"], meta["height"]) == (24, 16)
        if name == "b.jpg":
            assert raw["jpg"] == files[name]  # JPEG bytes are kept, not re-encoded
        if name == "c.gif":
            assert "png" in raw  # a format the reader does not take is re-encoded as PNG


def test_coco_first_caption_per_image(coco, tmp_path):
    path, folder, _ = coco
    report = convert_coco(path, folder, ShardOptions(tmp_path / "out", "coco", **ANY_LOSS), per_image=True)
    samples = read_back(report.shards, "caption")
    assert sorted(doc.segments[1] for _, doc in samples) == ["a gif", "a jpeg of noise", "a noisy square ."]
    assert report.skipped == {"missing_image": 1, "bad_image": 1, "no_caption": 1, "unknown_image": 1,
                              "empty_caption": 1, "bad_caption": 1}


def test_coco_missing_or_wrong_inputs_are_named(coco, tmp_path):
    path, folder, _ = coco
    options = ShardOptions(tmp_path / "out", "caption", **ANY_LOSS)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        convert_coco(tmp_path / "nope.json", folder, options)
    with pytest.raises(FileNotFoundError, match="val2017"):
        convert_coco(path, tmp_path / "val2017", options)
    (tmp_path / "other.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="other.json has no 'annotations'"):
        convert_coco(tmp_path / "other.json", folder, options)


# ---- OBELICS -------------------------------------------------------------------------------------------

def obelics_docs(folder: Path) -> tuple[list[dict], dict]:
    """Rows with Hugging Face image dicts, and the segments each kept row must read back as (by row index)."""
    png, jpeg, png2 = encoded(noise(10), "PNG"), encoded(noise(11), "JPEG"), encoded(noise(12), "PNG")
    (folder / "imgs").mkdir()
    (folder / "imgs" / "local.png").write_bytes(png2)
    hf = lambda data=None, path=None: {"bytes": data, "path": path}
    rows = [
        {"texts": ["Intro.", None, "Middle text.", None, "End."], "images": [None, hf(png), None, hf(jpeg), None]},
        {"texts": [None, "Kept although its image is corrupt."], "images": [hf(b"GIF89a broken"), None]},
        {"texts": [None, None], "images": [hf(png), hf(jpeg)]},  # no text: skipped
        {"texts": ["Local file:", None], "images": [None, hf(path="imgs/local.png")]},
        {"texts": ["Unequal"], "images": [None, hf(png)]},  # bad row
    ]
    expected = {0: ["Intro.", png, "Middle text.", jpeg, "End."], 1: ["Kept although its image is corrupt."],
                3: ["Local file:", png2]}
    return rows, expected


def write_parquet(path: Path, rows: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # the Hugging Face `Image` feature
    schema = pa.schema([("images", pa.list_(image)), ("texts", pa.list_(pa.string())),
                        ("general_metadata", pa.string())])
    table = pa.Table.from_pylist([{**row, "general_metadata": json.dumps({"url": "http://x"})} for row in rows], schema)
    pq.write_table(table, path, row_group_size=2)


def assert_document(doc, expected: list) -> None:
    assert len(doc.segments) == len(expected)
    for got, want in zip(doc.segments, expected):
        if isinstance(want, str):
            assert got == want
        else:
            assert_same_image(got, want)


def test_obelics_parquet_round_trips_in_order(tmp_path):
    rows, expected = obelics_docs(tmp_path)
    write_parquet(tmp_path / "obelics-0.parquet", rows)
    options = ShardOptions(tmp_path / "out", "interleaved", 2, **ANY_LOSS)
    report = convert_obelics([tmp_path / "obelics-0.parquet"], options)
    assert report.samples == 3 and report.images == 3 and len(report.shards) == 2
    assert report.skipped == {"no_text": 1, "bad_row": 1} and report.dropped_images == {"bad_image": 1}
    samples = read_back(report.shards, "interleaved")
    assert sorted(json.loads(raw["json"])["source"]["row"] for raw, _ in samples) == sorted(expected)
    for raw, doc in samples:
        assert_document(doc, expected[json.loads(raw["json"])["source"]["row"]])


def test_obelics_jsonl_with_base64_and_local_paths(tmp_path):
    png, jpeg, webp = encoded(noise(20), "PNG"), encoded(noise(21), "JPEG"), encoded(noise(22), "WEBP")
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "p.jpg").write_bytes(jpeg)
    (tmp_path / "abs.webp").write_bytes(webp)
    b64 = base64.b64encode(png).decode()
    lines = [json.dumps(row) for row in [
        {"texts": ["base64:", None, "data uri:", None], "images": [None, b64, None, "data:image/png;base64," + b64]},
        {"texts": [None, "relative and absolute", None], "images": ["pics/p.jpg", None, str(tmp_path / "abs.webp")]},
        {"texts": ["gone:", None, None, "end"], "images": [None, "pics/nope.png", "https://example.com/a.png", None]},
        {"texts": ["", "  "], "images": [None, None]},  # no text
    ]] + ["{not json", "", json.dumps({"texts": ["x"], "images": "not a list"}),
          json.dumps({"texts": ["text and image at one position"], "images": ["pics/p.jpg"]})]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    report = convert_obelics([tmp_path / "docs.jsonl"], ShardOptions(tmp_path / "out", "doc", **ANY_LOSS))
    assert report.samples == 3 and report.images == 4
    assert report.skipped == {"no_text": 1, "bad_row": 3}
    assert report.dropped_images == {"missing_image": 1, "url_image": 1}
    expected = {0: ["base64:", png, "data uri:", png], 1: [jpeg, "relative and absolute", webp], 2: ["gone:", "end"]}
    for raw, doc in read_back(report.shards, "interleaved"):
        meta = json.loads(raw["json"])
        assert_document(doc, expected[meta["source"]["row"]])
        if meta["source"]["row"] == 1:
            assert meta["images"] == ["0.jpg", None, "1.webp"] and raw["0.jpg"] == jpeg


def test_obelics_inputs_checked_before_writing(tmp_path):
    options = ShardOptions(tmp_path / "out", "interleaved", **ANY_LOSS)
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        convert_obelics([tmp_path / "missing.parquet"], options)
    (tmp_path / "rows.csv").write_text("texts,images\n")
    with pytest.raises(ValueError, match="rows.csv: unknown format"):
        convert_obelics([tmp_path / "rows.csv"], options)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "plain.parquet")
    with pytest.raises(ValueError, match=r"plain.parquet lacks column\(s\) \['texts', 'images'\]"):
        convert_obelics([tmp_path / "plain.parquet"], options)


# ---- text ----------------------------------------------------------------------------------------------

def write_text_jsonl(path: Path, texts: list[str]) -> None:
    bad = [b'{"text": 3}', b'{"text": "   "}', b'{"body": "x"}', b"not json", b"", b'["text"]',
           b'{"text": "caf\xe9 latin-1"}', b'{"text": "\\ud800"}']
    lines = [json.dumps({"text": t, "id": i}).encode() for i, t in enumerate(texts)]
    path.write_bytes(b"\n".join(lines[:2] + bad + lines[2:]) + b"\n")


def test_text_round_trips_and_counts_bad_lines(tmp_path):
    texts = [f"document {i} about circles." for i in range(7)] + ["ünïcode ✓ 文本\nsecond line"]
    write_text_jsonl(tmp_path / "a.jsonl", texts)
    report = convert_text([tmp_path / "a.jsonl"], ShardOptions(tmp_path / "out", "text", samples_per_shard=3))
    assert report.samples == 8 and len(report.shards) == 3
    assert report.skipped == {"non_string_text": 1, "empty_text": 1, "missing_text": 1, "bad_line": 4}
    samples = read_back(report.shards, "text")
    assert sorted(doc.segments[0] for _, doc in samples) == sorted(texts)
    assert [raw["__key__"] for raw, _ in samples] == [f"{i:09d}" for i in range(8)]


# ---- the writer ----------------------------------------------------------------------------------------

def test_shards_are_deterministic_and_shuffled(tmp_path):
    texts = [f"text number {i}" for i in range(40)]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))

    def run(name, **kw):
        report = convert_text([tmp_path / "t.jsonl"], ShardOptions(tmp_path / name, "text", 16, **kw))
        return report, [doc.segments[0] for _, doc in read_back(report.shards, "text")]

    (first, order), (again, same) = run("a", shuffle_buffer=8, seed=1), run("b", shuffle_buffer=8, seed=1)
    assert [Path(p).read_bytes() for p in first.shards] == [Path(p).read_bytes() for p in again.shards]
    assert order == same and sorted(order) == sorted(texts) and order != texts
    assert run("c", shuffle_buffer=8, seed=2)[1] != order
    assert run("d", shuffle_buffer=0)[1] == texts
    with tarfile.open(first.shards[0]) as tar:
        members = tar.getmembers()
    assert len(members) == 16 and {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o644)}


def test_shuffled_is_a_permutation_and_a_full_buffer_mixes_everything():
    items = list(range(100))
    assert list(shuffled(items, 0, seed=0)) == items
    full = list(shuffled(items, 1000, seed=0))
    assert sorted(full) == items and full[:10] != items[:10]
    assert sorted(shuffled(items, 7, seed=3)) == items


def test_existing_shards_need_overwrite(tmp_path):
    (tmp_path / "t.jsonl").write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(10)))
    convert_text([tmp_path / "t.jsonl"], ShardOptions(tmp_path / "out", "text", 2))
    with pytest.raises(FileExistsError, match="already holds 5 shard"):
        convert_text([tmp_path / "t.jsonl"], ShardOptions(tmp_path / "out", "text", 4))
    report = convert_text([tmp_path / "t.jsonl"], ShardOptions(tmp_path / "out", "text", 4, overwrite=True))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [Path(p).name for p in report.shards]
    assert len(report.shards) == 3


# ---- img2dataset output is read as is ------------------------------------------------------------------

def test_img2dataset_shards_are_read_as_is(tmp_path):
    """A shard laid out as img2dataset writes it (webdataset TarWriter; jpg + txt + json, 9-digit keys)."""
    jpegs = [encoded(noise(30 + i, (64, 48)), "JPEG") for i in range(3)]
    with wds.TarWriter(str(tmp_path / "00000.tar")) as sink:
        for i, jpeg in enumerate(jpegs):
            key = f"{0:05d}{i:04d}"
            meta = {"url": f"https://example.com/{i}.jpg", "caption": f"photo {i}", "key": key, "status": "success",
                    "error_message": None, "width": 64, "height": 48, "original_width": 640, "original_height": 480,
                    "exif": "{}", "sha256": "0" * 64}
            sink.write({"__key__": key, "jpg": jpeg, "txt": f"photo {i}", "json": json.dumps(meta)})
    samples = read_back([str(tmp_path / "00000.tar")], "caption")
    assert [doc.key for _, doc in samples] == ["000000000", "000000001", "000000002"]
    for i, (_, doc) in enumerate(samples):
        assert doc.segments[1] == f"photo {i}"
        assert_same_image(doc.segments[0], jpegs[i])


# ---- the tools -----------------------------------------------------------------------------------------

def tool(name: str):
    return runpy.run_path(str(TOOLS / f"{name}.py"))["main"]


def test_tools_print_counts_and_name_missing_inputs(coco, tmp_path, capsys):
    path, folder, _ = coco
    args = [str(path), str(folder), "-o", str(tmp_path / "c"), "--first-caption", "--max-dropped-images", "0.5"]
    assert tool("coco_to_shards")(args) == 0
    assert "wrote 3 samples (3 images) in 1 shards" in capsys.readouterr().out
    (tmp_path / "t.jsonl").write_text('{"text": "hello"}\n{"text": ""}\n')
    assert tool("text_to_shards")([str(tmp_path / "t.jsonl"), "-o", str(tmp_path / "t"), "--per-shard", "5"]) == 0
    assert "skipped 1 samples: empty_text=1" in capsys.readouterr().out
    (tmp_path / "d.jsonl").write_text(json.dumps({"texts": ["hi", None], "images": [None, "x.png"]}) + "\n")
    assert tool("obelics_to_shards")([str(tmp_path / "d.jsonl"), "-o", str(tmp_path / "d"),
                                      "--max-dropped-images", "1"]) == 0
    assert "dropped 1 images: missing_image=1" in capsys.readouterr().out
    assert tool("obelics_to_shards")([str(tmp_path / "gone.parquet"), "-o", str(tmp_path / "d")]) == 2
    assert "input file not found" in capsys.readouterr().err


# ---- the training loader reads converted shards ----------------------------------------------------------

def test_training_loader_reads_all_three_converted_kinds(coco, tmp_path):
    from mm1.config import load_config
    from mm1.data.loader import build_loader
    from mm1.tokenizer import synth_tokenizer
    from tests.conftest import TINY

    path, folder, _ = coco
    convert_coco(path, folder, ShardOptions(tmp_path / "data" / "cap", "caption", **ANY_LOSS))
    rows, _ = obelics_docs(tmp_path)
    write_parquet(tmp_path / "rows.parquet", rows)
    convert_obelics([tmp_path / "rows.parquet"], ShardOptions(tmp_path / "data" / "doc", "interleaved", **ANY_LOSS))
    write_text_jsonl(tmp_path / "t.jsonl", ["a circle is a shape .", "a red square ."])
    convert_text([tmp_path / "t.jsonl"], ShardOptions(tmp_path / "data" / "txt", "text"))
    cfg = load_config(TINY, [
        f"data.root={tmp_path / 'data'}", "data.synth=null", "train.batch_size=4",
        ("data.sources={cap: {kind: caption, shards: ['cap/caption-*.tar']}, "
         "doc: {kind: interleaved, shards: ['doc/interleaved-{000000..000000}.tar']}, "
         "txt: {kind: text, shards: ['txt/*.tar']}}"),
        "data.mixture={cap: 0.4, doc: 0.4, txt: 0.2}",
    ])
    loader = build_loader(cfg, synth_tokenizer())
    batches = [batch for batch, _ in zip(loader, range(4))]
    assert {source for batch in batches for source in batch.sources} == {"cap", "doc", "txt"}
    assert sum(len(batch.images) for batch in batches) > 0 and not loader.skips()


def test_converters_never_read_images_outside_the_image_root(tmp_path):
    secret = encoded(noise(30), "PNG")
    (tmp_path / "secret.png").write_bytes(secret)  # beside, not inside, the image roots below
    inside = tmp_path / "root"
    inside.mkdir()
    (inside / "ok.png").write_bytes(encoded(noise(31), "PNG"))
    (inside / "link.png").symlink_to(tmp_path / "secret.png")
    names = ["ok.png", "../secret.png", str(tmp_path / "secret.png"), "link.png"]
    images = [{"id": i, "file_name": name} for i, name in enumerate(names)]
    captions = tmp_path / "captions.json"
    captions.write_text(json.dumps({"images": images, "annotations": [
        {"image_id": i, "id": i, "caption": f"caption {i}"} for i in range(len(names))]}))
    coco = convert_coco(captions, inside, ShardOptions(tmp_path / "coco", "cap", **ANY_LOSS))
    (tmp_path / "docs.jsonl").write_text(json.dumps({"texts": ["look", None, None, None, None],
                                                     "images": [None] + names}) + "\n")
    options = ShardOptions(tmp_path / "docs", "doc", **ANY_LOSS)
    docs = convert_obelics([tmp_path / "docs.jsonl"], options, image_root=inside)
    assert coco.samples == 1 and coco.skipped["image_outside_root"] == 3
    assert docs.images == 1 and docs.dropped_images["image_outside_root"] == 3
    for shard in coco.shards + docs.shards:
        with tarfile.open(shard) as tar:
            assert all(tar.extractfile(m).read() != secret for m in tar.getmembers() if m.isfile())


# ---- images the input names: where they are read from, and losing them ----------------------------------

def test_relative_image_paths_resolve_against_the_input_files_folder(tmp_path, monkeypatch, capsys):
    """`mm1 data obelics corpus/docs.jsonl` run from another folder: `img/p.png` in the rows (JSON lines
    and parquet, as a path string and as a Hugging Face {"bytes": None, "path"} dict) is corpus/img/p.png."""
    from mm1.cli import main

    png = encoded(noise(40), "PNG")
    (tmp_path / "corpus" / "img").mkdir(parents=True)
    (tmp_path / "corpus" / "img" / "p.png").write_bytes(png)
    (tmp_path / "corpus" / "docs.jsonl").write_text(json.dumps({"texts": ["a", None], "images": [None, "img/p.png"]}))
    write_parquet(tmp_path / "corpus" / "rows.parquet",
                  [{"texts": ["b", None], "images": [None, {"bytes": None, "path": "img/p.png"}]}])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["data", "obelics", "../corpus/docs.jsonl", "../corpus/rows.parquet", "-o", "out"]) == 0
    assert "wrote 2 samples (2 images)" in capsys.readouterr().out
    docs = read_back(sorted(str(p) for p in Path("out").glob("*.tar")), "interleaved")
    for _, doc in docs:
        assert_same_image(doc.segments[1], png)


def test_losing_the_images_is_an_error_that_leaves_no_shards(tmp_path, coco, capsys):
    from mm1.cli import main

    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps({"texts": [f"doc {i}", None], "images": [None, url]})
                                                   for i, url in enumerate(["https://x/a.jpg", "b.jpg", "c.jpg"])))
    assert main(["data", "obelics", str(tmp_path / "docs.jsonl"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "3 of the 3 images the input names were left out (missing_image=2, url_image=1)" in err
    assert "more than --max-dropped-images 0.2" in err and not list((tmp_path / "out").glob("*.tar"))
    # COCO: 7 captions of missing or corrupt images of 10 usable captions with an image
    path, folder, _ = coco
    assert main(["data", "coco", str(path), str(folder), "-o", str(tmp_path / "coco")]) == 2
    assert "images the input names were left out" in capsys.readouterr().err
    assert main(["data", "coco", str(path), str(folder), "-o", str(tmp_path / "coco"),
                 "--max-dropped-images", "0.5"]) == 0
    assert "wrote 5 samples" in capsys.readouterr().out
