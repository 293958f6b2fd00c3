"""Tokenizer and decoder weights that match: a pretrained decoder takes its own tokenizer, a mismatch is exit 2,
and text the tokenizer cannot spell is measured (`unk/<source>`) and warned about."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import transformers

from mm1.cli import main
from mm1.config import load_config
from mm1.tokenizer import byte_tokenizer
from tests.conftest import TINY


def decoder_dir(path: Path, vocab_size: int, tokenizer=None) -> Path:
    """A local Hugging Face causal-LM folder (a 2-layer Llama), with the tokenizer it was trained with."""
    hf = transformers.LlamaConfig(vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    transformers.LlamaForCausalLM(hf).save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def byte_llm(tmp_path_factory) -> Path:
    tok = byte_tokenizer()
    return decoder_dir(tmp_path_factory.mktemp("llm") / "byte-llm", len(tok), tok)


def test_a_pretrained_decoder_takes_its_own_tokenizer(byte_llm):
    cfg = load_config(TINY, [f"model.decoder.pretrained={byte_llm}"])
    assert (cfg.model.tokenizer.kind, cfg.model.tokenizer.path) == ("pretrained", str(byte_llm))
    assert load_config(TINY).model.tokenizer.kind == "synth"  # a random-init decoder: the corpus's tokenizer


def test_the_synthetic_tokenizer_with_a_pretrained_decoder_is_exit_2_before_anything(byte_llm, tmp_path,
                                                                                       monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", str(TINY), f"model.decoder.pretrained={byte_llm}", "model.tokenizer.kind=synth",
                 "data.root=corpus", "output.dir=run"]) == 2
    err = capsys.readouterr().err
    assert "model.tokenizer (synth," in err and f"does not match model.decoder.pretrained '{byte_llm}'" in err
    assert "its vocabulary is not that of the tokenizer saved with the decoder" in err
    assert "leave model.tokenizer.kind unset" in err
    assert list(tmp_path.iterdir()) == []  # no corpus written, no run folder


def test_a_decoder_without_a_saved_tokenizer_is_checked_against_its_embedding_table(tmp_path, capsys):
    from mm1.build import build

    bare = decoder_dir(tmp_path / "bare", 4096)
    with pytest.raises(Exception, match="does not fit the decoder's embedding table of 4096 rows"):
        build(load_config(TINY, [f"model.decoder.pretrained={bare}", "model.tokenizer.kind=bytes"]))
    fits = decoder_dir(tmp_path / "fits", len(byte_tokenizer()))
    tokenizer, model = build(load_config(TINY, [f"model.decoder.pretrained={fits}", "model.tokenizer.kind=bytes"]))
    assert model.decoder.get_input_embeddings().num_embeddings >= len(tokenizer)


def english_caption_shards(folder: Path) -> None:
    from PIL import Image

    from mm1.data.convert import ShardOptions, convert_coco

    (folder / "img").mkdir(parents=True)
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(buf, format="PNG")
    (folder / "img" / "a.png").write_bytes(buf.getvalue())
    captions = ["A man riding a wave on top of a surfboard.", "Two giraffes standing next to a tall tree.",
                "A kitchen with stainless steel appliances."]
    (folder / "caps.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}], "annotations": [
        {"image_id": 1, "id": i, "caption": c} for i, c in enumerate(captions * 4)]}))
    convert_coco(folder / "caps.json", folder / "img", ShardOptions(folder / "caption", "caption"))


def test_the_share_of_unknown_tokens_is_logged_per_source_and_warned_about(tmp_path, synth_root, capsys):
    from mm1.data.loader import build_loader
    from mm1.tokenizer import synth_tokenizer
    from mm1.train.trainer import DataStats

    english_caption_shards(tmp_path)
    sources = (f"data.sources={{coco: {{kind: caption, shards: ['{tmp_path}/caption/*.tar']}}, "
               f"synth: {{kind: caption, shards: ['{synth_root}/caption/*.tar']}}}}")
    cfg = load_config(TINY, ["data.synth=null", sources, "data.mixture={coco: 0.5, synth: 0.5}",
                             "train.batch_size=4"])
    loader = build_loader(cfg, synth_tokenizer())
    stats = DataStats(loader)
    for batch, _ in zip(loader, range(3)):
        stats.add(batch)
    shares = {k: v for k, v in stats.record().items() if k.startswith("unk/")}
    assert shares["unk/synth"] == 0 and shares["unk/coco"] > 0.3  # giraffes, surfboards: not shape-world words
    stats.warn_unknown("synth")
    stats.warn_unknown("synth")
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "of the text tokens of source 'coco' are <unk>" in err
    restored = DataStats(loader)
    restored.restore(stats.state())
    assert restored.unknown_shares() == stats.unknown_shares()


@pytest.mark.slow
def test_a_pretrained_decoder_trains_with_its_own_tokenizer(byte_llm, tiny_overrides, tmp_path):
    from mm1.train.pretrain import pretrain

    run = pretrain(load_config(TINY, [*tiny_overrides, f"model.decoder.pretrained={byte_llm}", "train.steps=2",
                                      "train.batch_size=2"]))
    saved = load_config(run / "config.yaml")
    assert (saved.model.tokenizer.kind, saved.model.tokenizer.path) == ("pretrained", str(byte_llm))
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 2 and all(v == 0 for k, v in records[-1].items() if k.startswith("unk/"))
