"""Data paths that never destroy data: the embedded corpus is written only into a folder that is absent,
empty or holds one, and by default into the user cache, never the current folder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mm1.cli import main
from mm1.config import load_config
from mm1.config.schema import SynthConfig
from mm1.data.synth import corpus_folder, write_corpus
from mm1.data.synth.write import MARKER
from tests.conftest import SMALL_CORPUS, TINY, mm1_cli

TINY_CORPUS = ["data.synth.caption_samples=40", "data.synth.interleaved_samples=20", "data.synth.text_samples=20",
               "data.synth.eval_samples=10", "data.synth.samples_per_shard=20"]


def own_data(folder: Path) -> dict[Path, bytes]:
    """A user's data folder (shards and a file of theirs); returns every file's bytes."""
    (folder / "caption").mkdir(parents=True)
    (folder / "caption" / "caption-000000.tar").write_bytes(b"my shard " * 100)
    (folder / "notes.txt").write_text("my notes\n")
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def unchanged(files: dict[Path, bytes], folder: Path) -> bool:
    now = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    return now == files


def test_pretrain_never_writes_the_corpus_over_a_users_data(tmp_path, monkeypatch, capsys):
    """`mm1 pretrain recipes/tiny.yaml data.root=MY_DATA` (the entry point the `mm1` command calls)."""
    files = own_data(tmp_path / "MY_DATA")
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", str(TINY), "data.root=MY_DATA"]) == 2
    err = capsys.readouterr().err
    assert "data.root:" in err and "not an embedded corpus (caption/, notes.txt)" in err
    assert "data.synth=null" in err and "recipes/own_data.yaml" in err
    assert unchanged(files, tmp_path / "MY_DATA") and sorted(p.name for p in tmp_path.iterdir()) == ["MY_DATA"]


def test_data_synth_never_writes_over_a_users_data(tmp_path, monkeypatch, capsys):
    files = own_data(tmp_path / "MY_DATA")
    monkeypatch.chdir(tmp_path)
    assert main(["data", "synth", "--out", "MY_DATA", "--scale", "0.01"]) == 2
    assert "not an embedded corpus" in capsys.readouterr().err
    assert unchanged(files, tmp_path / "MY_DATA")


def test_data_synth_writes_the_corpus_of_a_recipes_settings(tmp_path, capsys):
    """`mm1 data synth --out DIR data.synth.gallery_docs=...` writes the same corpus a recipe with those settings
    generates, galleries and their eval task included (for a shared data folder, written once)."""
    settings = TINY_CORPUS + ["data.synth.gallery_docs=0.5", "data.synth.seed=2"]
    assert main(["data", "synth", "--out", str(tmp_path / "cli"), *settings]) == 0
    cfg = load_config(TINY, settings).data.synth
    assert cfg.gallery_docs == 0.5 and cfg.seed == 2
    written = json.loads((tmp_path / "cli" / "manifest.json").read_text())
    assert written == write_corpus(tmp_path / "api", cfg)
    assert written["config"]["gallery_docs"] == 0.5 and (tmp_path / "cli" / "eval" / "caption_style").is_dir()


def test_pretrain_says_whether_it_writes_a_new_corpus_or_replaces_one(tmp_path, capsys):
    from mm1.train.pretrain import prepare_data

    root = f"data.root={tmp_path / 'corpus'}"
    prepare_data(load_config(TINY, TINY_CORPUS + [root]))
    assert "writing the embedded corpus to" in capsys.readouterr().out
    prepare_data(load_config(TINY, TINY_CORPUS + [root]))
    assert capsys.readouterr().out == ""  # complete: used as it is
    prepare_data(load_config(TINY, TINY_CORPUS + [root, "data.synth.gallery_docs=0.5"]))
    assert "rewriting the embedded corpus in" in capsys.readouterr().out


@pytest.mark.parametrize("override, message", [
    ("data.synth.gallery_docs=1.5", "data.synth.gallery_docs: 1.5 is not allowed; allowed: a number in [0, 1]"),
    ("data.synth.galery_docs=0.3", "data.synth.galery_docs: unknown key; allowed keys here:"),
    ("train.steps=3", "train.steps=3: only data.synth keys set the corpus"),
])
def test_data_synth_names_a_bad_setting_and_writes_nothing(tmp_path, capsys, override, message):
    assert main(["data", "synth", "--out", str(tmp_path / "out"), override]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_mm1_command_refuses_a_users_data_folder(tmp_path):
    files = own_data(tmp_path / "MY_DATA")
    proc = mm1_cli("pretrain", str(TINY), "data.root=MY_DATA", cwd=tmp_path)
    assert proc.returncode == 2 and "not an embedded corpus" in proc.stderr, proc.stderr
    assert unchanged(files, tmp_path / "MY_DATA") and sorted(p.name for p in tmp_path.iterdir()) == ["MY_DATA"]


def test_a_manifest_of_another_kind_is_not_the_corpus(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"version": 2, "files": ["mine"]}))
    with pytest.raises(FileExistsError, match="not an embedded corpus"):
        write_corpus(tmp_path, SynthConfig(**SMALL_CORPUS))
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_cut_off_corpus_is_rewritten_and_an_old_one_replaced(tmp_path):
    small = SynthConfig(**{**SMALL_CORPUS, "eval_samples": 4, "caption_samples": 8, "interleaved_samples": 4,
                           "text_samples": 4, "samples_per_shard": 4})
    out = tmp_path / "corpus"
    out.mkdir()
    (out / MARKER).write_text("")  # a first write killed before its manifest
    (out / "caption").mkdir()
    (out / "caption" / "caption-000000.tar").write_bytes(b"cut off")
    manifest = write_corpus(out, small)
    assert manifest["counts"]["caption"] == 8 and (out / "caption" / "caption-000000.tar").read_bytes() != b"cut off"
    assert write_corpus(out, SynthConfig(**{**small.__dict__, "seed": 1}))["seed"] == 1  # its own: replaced


def test_the_corpus_lives_in_the_user_cache_whatever_the_current_folder(tmp_path, monkeypatch):
    cfg = load_config(TINY)
    monkeypatch.chdir(tmp_path)
    assert load_config(TINY).data.root == cfg.data.root == str(corpus_folder(cfg.data.synth))
    monkeypatch.setenv("MM1_CACHE", str(tmp_path / "cache"))
    assert Path(load_config(TINY).data.root).parent == tmp_path / "cache" / "synth"
    monkeypatch.delenv("MM1_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Path(load_config(TINY).data.root).parent == tmp_path / "xdg" / "mm1" / "synth"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert Path(load_config(TINY).data.root).parent == tmp_path / "home" / ".cache" / "mm1" / "synth"
    other = load_config(TINY, ["data.synth.seed=1"]).data.root
    assert other != load_config(TINY).data.root  # another corpus, another folder: no run rewrites another's
    assert load_config(TINY, ["data.root=elsewhere"]).data.root == "elsewhere"


def test_own_shards_need_a_root_for_relative_patterns():
    from mm1.config import ConfigError

    with pytest.raises(ConfigError, match="data.root: not set, and data.sources.caption.shards has relative"):
        load_config(TINY, ["data.synth=null"])


@pytest.mark.slow
def test_pretrain_from_any_folder_writes_the_corpus_into_the_cache_only(tmp_path):
    """`mm1 pretrain recipes/tiny.yaml` from an empty folder: the corpus goes to $MM1_CACHE, the run to
    runs/tiny; a second folder reuses the corpus."""
    cache, first, second = tmp_path / "cache", tmp_path / "a", tmp_path / "b"
    first.mkdir(), second.mkdir()
    args = ["pretrain", str(TINY), *TINY_CORPUS, "train.steps=2", "train.batch_size=2", "train.threads=1"]
    proc = mm1_cli(*args, cwd=first, env={"MM1_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    [corpus] = [p for p in (cache / "synth").iterdir() if p.is_dir()]
    assert "writing the embedded corpus to " + str(corpus) in proc.stdout
    assert sorted(p.name for p in first.iterdir()) == ["runs"] and (first / "runs" / "tiny" / "checkpoint").is_dir()
    assert load_config(first / "runs" / "tiny" / "config.yaml").data.root == str(corpus)
    proc = mm1_cli(*args, cwd=second, env={"MM1_CACHE": str(cache)})
    assert proc.returncode == 0 and "writing the embedded corpus" not in proc.stdout, proc.stderr


def converted_folder(root: Path) -> None:
    """A data folder written by the three converters with their default names (`-o ROOT/<kind>`)."""
    import io

    from PIL import Image

    from mm1.cli import main as mm1

    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "red").save(buf, format="PNG")
    (root / "src").mkdir(parents=True)
    (root / "src" / "a.png").write_bytes(buf.getvalue())
    (root / "src" / "caps.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                                        "annotations": [{"image_id": 1, "id": 1, "caption": "red"}]}))
    (root / "src" / "docs.jsonl").write_text(json.dumps({"texts": ["a", None], "images": [None, "a.png"]}))
    (root / "src" / "text.jsonl").write_text(json.dumps({"text": "words"}))
    assert mm1(["data", "coco", str(root / "src" / "caps.json"), str(root / "src"), "-o", str(root / "caption")]) == 0
    assert mm1(["data", "obelics", str(root / "src" / "docs.jsonl"), "-o", str(root / "interleaved")]) == 0
    assert mm1(["data", "text", str(root / "src" / "text.jsonl"), "-o", str(root / "text")]) == 0


@pytest.mark.parametrize("recipe", ["mm1_3b", "ablation_base", "mm1_7b_moe"])
def test_paper_recipes_read_the_shards_the_converters_write(tmp_path, recipe):
    from mm1.data.loader import resolve_sources
    from tests.conftest import ROOT

    converted_folder(tmp_path)
    shards = resolve_sources(load_config(ROOT / "recipes" / f"{recipe}.yaml", [f"data.root={tmp_path}"]))
    assert {name: [Path(p).name for p in found] for name, found in shards.items()} == {
        "caption": ["caption-000000.tar"], "interleaved": ["interleaved-000000.tar"], "text": ["text-000000.tar"]}


def test_a_pattern_that_matches_nothing_is_reported_before_the_model_with_what_is_there(tmp_path, monkeypatch,
                                                                                          capsys):
    converted_folder(tmp_path / "my_data")
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", str(TINY), "data.synth=null", "data.root=my_data", "output.dir=run",
                 "data.sources={caption: {kind: caption, shards: ['caption/{000000..000009}.tar']}}",
                 "data.mixture={caption: 1}"]) == 2
    out = capsys.readouterr()
    assert ("data.sources.caption.shards: pattern 'caption/{000000..000009}.tar' matches no shard file" in out.err
            and "my_data/caption holds: caption-000000.tar" in out.err)
    assert "parameters" not in out.out and not (tmp_path / "run").exists()  # before any model or run folder
