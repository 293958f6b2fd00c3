"""The contrastive warm start of the image encoder: trained once, cached, and where pre-training starts."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from mm1.config import ConfigError, load_config
from mm1.tokenizer import build_tokenizer
from mm1.train.warmstart import ensure_warm_start, warm_start_path
from tests.conftest import ROOT, TINY

SMALL = "model.vision.warm_start={steps: 30, batch_size: 32, lr: 0.002}"


def _cfg(tiny_overrides, *more):
    return load_config(TINY, [*tiny_overrides, SMALL, *more])


@pytest.mark.slow
def test_warm_start_learns_is_cached_and_is_where_pretraining_starts(tiny_overrides, tmp_path, capsys):
    from mm1.train.pretrain import build_trainer

    cfg = _cfg(tiny_overrides)
    tok = build_tokenizer(cfg.model.tokenizer)
    path = ensure_warm_start(cfg, tok)
    out = capsys.readouterr().out
    assert "warm-starting the image encoder" in out and path.is_file()
    report = json.loads(path.with_suffix(".json").read_text())
    assert report["last_loss"] < report["first_loss"] - 0.3  # the contrastive loss falls
    mtime = path.stat().st_mtime_ns
    assert ensure_warm_start(cfg, tok) == path and path.stat().st_mtime_ns == mtime  # cached: not trained again
    assert "warm-starting" not in capsys.readouterr().out

    trainer = build_trainer(cfg)
    try:
        cached = load_file(str(path))
        visual = trainer.model.vision.visual
        assert torch.equal(visual.conv1.weight, cached["visual.conv1.weight"])
        assert torch.equal(visual.transformer.resblocks[0].attn.in_proj_weight,
                           cached["visual.transformer.resblocks.0.attn.in_proj_weight"])
    finally:
        trainer.close()


@pytest.mark.slow
def test_a_frozen_warm_started_encoder_stays_the_warm_start_while_the_rest_trains(tiny_overrides):
    from mm1.train.pretrain import build_trainer

    cfg = _cfg(tiny_overrides, "model.vision.freeze=true", "train.steps=3", "optim.warmup_steps=1")
    trainer = build_trainer(cfg)
    try:
        connector_before = {k: v.clone() for k, v in trainer.model.connector.state_dict().items()}
        assert trainer.run() is True
        cached = load_file(str(warm_start_path(cfg, trainer.tokenizer)))
        visual = trainer.model.vision.visual.state_dict()
        assert {f"visual.{k}" for k in visual} <= cached.keys()
        assert all(torch.equal(v, cached[f"visual.{k}"]) for k, v in visual.items())
        assert any(not torch.equal(v, connector_before[k]) for k, v in trainer.model.connector.state_dict().items())
    finally:
        trainer.close()


@pytest.mark.slow
def test_warm_start_is_deterministic_and_keyed_by_resolution(tiny_overrides, tmp_path, monkeypatch):
    cfg = load_config(TINY, [*tiny_overrides, "model.vision.warm_start={steps: 4, batch_size: 16}"])
    tok = build_tokenizer(cfg.model.tokenizer)
    first = load_file(str(ensure_warm_start(cfg, tok)))
    monkeypatch.setenv("MM1_CACHE", str(tmp_path / "other_cache"))
    again = load_file(str(ensure_warm_start(cfg, tok)))
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    low = _cfg(tiny_overrides, "model.vision.image_size=32")
    assert warm_start_path(low, tok) != warm_start_path(cfg, tok)
    assert warm_start_path(_cfg(tiny_overrides, "model.vision.warm_start.seed=1"), tok) != warm_start_path(cfg, tok)


@pytest.mark.parametrize("change, message", [
    ("model.vision.pretrained=/tmp/x.pt", "model.vision.warm_start: set together with model.vision.pretrained"),
    ("model.vision.warm_start.source=text", "model.vision.warm_start.source: 'text' is not a caption source"),
])
def test_bad_warm_start_config_is_an_error_naming_the_key(tiny_overrides, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        _cfg(tiny_overrides, change)


@pytest.mark.slow
def test_bad_warm_start_config_exits_2_before_training(tiny_overrides):
    change, message = "model.vision.warm_start.source=text", "model.vision.warm_start.source: 'text' is not"
    proc = subprocess.run([sys.executable, "-m", "mm1", "pretrain", str(TINY), *tiny_overrides, SMALL, change],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr
