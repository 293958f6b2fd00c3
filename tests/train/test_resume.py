"""Reliability: exact resume, crash-safe checkpoints, signals, numerical faults."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from mm1.config import load_config
from mm1.train import checkpoints as state_module
from mm1.train.metrics import read_metrics
from mm1.train.pretrain import build_trainer, pretrain
from mm1.train.resume import latest_checkpoint
from mm1.train.trainer import NumericalFault
from tests.conftest import ROOT, TINY
from tests.shards import write_caption_shards, write_text_shards


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_caption_shards(root / "cap", shards=3, per_shard=12)
    write_text_shards(root / "txt", shards=2, per_shard=10)
    return root


def overrides(root, run, *extra):
    return [
        f"data.root={root}", "data.synth=null", f"output.dir={run}",
        "data.sources={cap: {kind: caption, shards: ['cap/*.tar']}, txt: {kind: text, shards: ['txt/*.tar']}}",
        "data.mixture={cap: 0.8, txt: 0.2}", "train.batch_size=4", "train.log_every=1", "train.deterministic=true",
        "model.decoder.num_layers=2", "model.vision.layers=2", "model.decoder.hidden_size=128",
        "data.seq_len=96", "optim.lr=2e-3", "optim.warmup_steps=2", *extra,
    ]


def losses(run) -> list[float]:
    return [r["loss"] for r in read_metrics(run) if "loss" in r]


def mixture(run) -> list[dict]:
    return [{k: v for k, v in r.items() if k.startswith("mix/")} for r in read_metrics(run) if "loss" in r]


def stop_after(trainer, steps: int, sig=signal.SIGTERM) -> None:
    """Deliver `sig` to this process during step `steps` (as a scheduler, or Ctrl-C, would)."""
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        if calls["n"] == steps * trainer.cfg.train.grad_accum:
            os.kill(os.getpid(), sig)

    trainer.model.decoder.get_output_embeddings().register_forward_hook(hook)


@pytest.mark.parametrize("extra", [[], ["train.grad_accum=2"], ["model.decoder.moe={num_experts: 4, every: 1}"],
                                   ["data.mixture_unit=tokens"]], ids=["plain", "grad_accum", "moe", "tokens_unit"])
@pytest.mark.slow
def test_resume_gives_identical_losses(shard_root, tmp_path, extra):
    straight = pretrain(load_config(TINY, overrides(shard_root, tmp_path / "a", "train.steps=6", *extra)))

    cfg = load_config(TINY, overrides(shard_root, tmp_path / "b", "train.steps=6", *extra))
    first = build_trainer(cfg)
    sig = signal.SIGINT if extra else signal.SIGTERM
    stop_after(first, 3, sig)
    assert first.run() is False and first.stopped_by == sig  # stopped by the signal, after a checkpoint
    first.close()
    assert latest_checkpoint(tmp_path / "b").name == "step_00000003"
    assert not (tmp_path / "b" / "checkpoint").exists()
    pretrain(cfg, resume="auto")
    assert losses(tmp_path / "b") == losses(straight)  # bit-identical on CPU
    assert mixture(tmp_path / "b") == mixture(straight)  # counted since the start of the run, across the resume


def fail_rename(monkeypatch, step: int) -> None:
    """The rename of step `step`'s finished checkpoint fails, as a kill just before it would leave it."""
    real_replace = os.replace

    def failing_replace(src, dst):
        if f".tmp-step_{step:08d}" in str(src):
            raise OSError("injected failure between writing and renaming")
        return real_replace(src, dst)

    monkeypatch.setattr(state_module.os, "replace", failing_replace)


@pytest.mark.slow
def test_save_killed_before_rename_leaves_previous_checkpoint(shard_root, tmp_path, monkeypatch):
    run = tmp_path / "run"
    cfg = load_config(TINY, overrides(shard_root, run, "train.steps=6", "train.checkpoint_every=2"))
    fail_rename(monkeypatch, 4)
    with pytest.raises(OSError, match="injected"):
        pretrain(cfg)
    monkeypatch.undo()
    assert latest_checkpoint(run).name == "step_00000002"
    pretrain(cfg, resume="auto")
    assert latest_checkpoint(run).name == "step_00000006"
    assert not list((run / "checkpoints").glob(".tmp-*"))
    straight = pretrain(load_config(TINY, overrides(shard_root, tmp_path / "straight", "train.steps=6")))
    assert losses(run)[-4:] == losses(straight)[-4:]


@pytest.mark.slow
def test_nan_steps_are_skipped_then_stop_the_run(shard_root, tmp_path):
    cfg = load_config(TINY, overrides(shard_root, tmp_path / "run", "train.steps=12", "train.max_bad_steps=3",
                                      "train.checkpoint_every=2"))
    trainer = build_trainer(cfg)
    poisoned = {2, 5, 6, 7}  # step 2 alone is skipped; 5, 6, 7 in a row stop the run
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        if calls["n"] in poisoned:
            return output * float("nan")
        return output

    trainer.model.decoder.get_output_embeddings().register_forward_hook(hook)
    with pytest.raises(NumericalFault, match="3 consecutive steps"):
        trainer.run()
    trainer.close()
    records = read_metrics(tmp_path / "run")
    assert records[-1]["skipped_steps"] == 4
    assert torch.isfinite(torch.tensor([r["loss"] for r in records if r["step"] in (1, 3, 4)])).all()
    assert latest_checkpoint(tmp_path / "run").name == "step_00000004"  # the last good checkpoint


@pytest.mark.slow
def test_sigterm_on_the_command_line_checkpoints_and_resumes(shard_root, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "mm1", "pretrain", str(TINY), *overrides(shard_root, run, "train.steps=400")]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, out  # a scheduler must not take it for a finished run
    assert "resume with: mm1 pretrain" in out
    stopped_at = int(latest_checkpoint(run).name.split("_")[1])
    assert 0 < stopped_at < 400
    resumed = subprocess.run(args[:-1] + [f"train.steps={stopped_at + 2}", "--resume", "auto"], cwd=ROOT,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stdout
    assert read_metrics(run)[-1]["step"] == stopped_at + 2


@pytest.mark.slow
def test_export_is_self_contained_and_loads_identically(shard_root, tmp_path):
    import shutil

    import mm1
    from mm1.data.loader import build_loader

    run = pretrain(load_config(TINY, overrides(shard_root, tmp_path / "run", "train.steps=2")))
    proc = subprocess.run([sys.executable, "-m", "mm1", "export", str(run), "--out", str(tmp_path / "export")],
                          cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    direct = mm1.load(run / "checkpoint")
    shutil.rmtree(run)  # the export must not need the run
    exported = mm1.load(tmp_path / "export")
    batch = next(iter(build_loader(exported.cfg, exported.tokenizer)))
    with torch.no_grad():
        a = direct.model(batch.input_ids, batch.images, batch.attention_mask, labels=batch.labels).loss
        b = exported.model(batch.input_ids, batch.images, batch.attention_mask, labels=batch.labels).loss
    assert torch.equal(a, b)


@pytest.mark.slow
def test_export_then_eval_gives_the_same_scores_as_the_run(tiny_overrides, tmp_path):
    run = pretrain(load_config(TINY, tiny_overrides + ["train.steps=2", "model.decoder.num_layers=1"]))
    subprocess.run([sys.executable, "-m", "mm1", "export", str(run), "--out", str(tmp_path / "export")],
                   cwd=ROOT, check=True, capture_output=True)
    scores = []
    for ckpt, out in ((run / "checkpoint", tmp_path / "e1"), (tmp_path / "export", tmp_path / "e2")):
        proc = subprocess.run([sys.executable, "-m", "mm1", "eval", str(ckpt), "--tasks", "synth_vqa", "--shots", "0,2",
                               "--trials", "1", "--limit", "6", "--out", str(out), "--data-root",
                               str(load_config(run / "config.yaml").data.root)],
                              cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-2000:]
        scores.append((out / "table.csv").read_text())
    assert scores[0] == scores[1]
