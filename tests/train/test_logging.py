"""Logging as a user meets it: TensorBoard and W&B (offline) get the records of metrics.jsonl, a logger
without its package is exit 2 before anything is built, the end-of-run summary, the MFU label and
`mm1 plot`."""
from __future__ import annotations

import glob
import json
import os
import shlex
import struct
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from mm1.cli import main
from mm1.config import load_config
from mm1.train.metrics import read_metrics
from mm1.train.mfu import describe_peak, gpu_peak_flops, mfu_key
from mm1.train.plot import eval_means
from mm1.train.pretrain import pretrain
from tests.conftest import ROOT, TINY

SMALL = ["model.decoder.num_layers=1", "model.vision.layers=1", "data.seq_len=96"]


@pytest.mark.parametrize("name", ["tensorboard", "wandb"])
def test_a_logger_without_its_package_is_exit_2_naming_the_extra(name, tiny_overrides, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, name, None)  # what `import NAME` meets where the package is not installed
    run = tmp_path / "run"
    assert main(["pretrain", str(TINY), *tiny_overrides, f"output.{name}=true"]) == 2
    err = capsys.readouterr().err
    assert f"output.{name}: true needs the {name} package" in err and f"pip install -e '.[{name}]'" in err
    assert not run.exists()  # stopped before the run folder, the corpus or the model


def _tensorboard_scalars(folder) -> dict[str, dict[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder))
    acc.Reload()
    return {tag: {e.step: e.value for e in acc.Scalars(tag)} for tag in acc.Tags()["scalars"]}


def _wandb_records(run_dir) -> list:
    [path] = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "run-*.wandb"))
    return _wandb_file_records(path)


def _wandb_file_records(path) -> list:
    """The records of an offline W&B run file: a leveldb log (32 KiB blocks of 7-byte-headed chunks after
    a 7-byte ':W&B' header) of wandb_internal_pb2.Record protobufs."""
    from wandb.proto import wandb_internal_pb2

    data, block, pos, chunk, records = open(path, "rb").read(), 32768, 7, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL, LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            records.append(record)
            chunk = b""
    return records


def _wandb_history(records) -> dict[int, dict]:
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in r.history.item}
            history[items["_step"]] = items
    return history


@pytest.mark.slow
def test_tensorboard_and_wandb_offline_log_what_metrics_jsonl_holds(tiny_overrides, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = pretrain(load_config(TINY, tiny_overrides + SMALL + [
        "train.steps=3", "output.tensorboard=true", "output.wandb=true", "output.wandb_project=mm1-test"]))
    records = read_metrics(run)
    tb = _tensorboard_scalars(run / "tensorboard")
    wb_records = _wandb_records(run)
    wb = _wandb_history(wb_records)
    for r in records:
        for key in ("loss", "lr", "grad_norm", "tokens_seen", "mfu_estimate", "mix/tokens/caption"):
            assert tb[key][r["step"]] == pytest.approx(r[key], rel=1e-6)  # float32 in the event file
            assert wb[r["step"]][key] == pytest.approx(r[key], rel=1e-12)
    [start] = [r.run for r in wb_records if r.WhichOneof("record_type") == "run"]
    assert start.project == "mm1-test" and start.display_name == "run"
    config = {u.key: json.loads(u.value_json) for u in start.config.update}
    assert config["train"]["steps"] == 3 and isinstance(config["optim"]["lr"], float)  # the resolved config


@pytest.mark.slow
def test_tensorboard_after_a_resume_holds_each_step_once(tiny_overrides):
    overrides = tiny_overrides + SMALL + ["train.steps=4", "train.checkpoint_every=2", "output.tensorboard=true",
                                          "train.deterministic=true"]
    run = pretrain(load_config(TINY, overrides))
    first = read_metrics(run)
    pretrain(load_config(TINY, overrides), resume=str(run / "checkpoints" / "step_00000002"))  # steps 3, 4 again
    again = read_metrics(run)
    tb = _tensorboard_scalars(run / "tensorboard")
    assert sorted(tb["loss"]) == [1, 2, 3, 4]
    assert all(tb["loss"][r["step"]] == pytest.approx(r["loss"], rel=1e-6) for r in again)
    assert [r["tokens_seen"] for r in again] == [r["tokens_seen"] for r in first]  # counted on from the checkpoint
    assert again[-1]["elapsed_s"] > again[1]["elapsed_s"]


@pytest.mark.slow
def test_wandb_after_a_resume_continues_the_same_run_from_the_checkpoint(tiny_overrides, monkeypatch):
    """Offline, each session is its own run file; both carry the run id kept in <run>/wandb/run_id, and the
    resumed one logs the steps after the checkpoint, with the values metrics.jsonl then holds."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    overrides = tiny_overrides + SMALL + ["train.steps=4", "train.checkpoint_every=2", "train.log_every=1",
                                          "output.wandb=true", "output.wandb_project=mm1-test"]
    run = pretrain(load_config(TINY, overrides))
    pretrain(load_config(TINY, overrides), resume=str(run / "checkpoints" / "step_00000002"))
    run_id = (run / "wandb" / "run_id").read_text().strip()
    files = sorted(glob.glob(str(run / "wandb" / "offline-run-*" / "run-*.wandb")))  # named by start time
    sessions = [_wandb_file_records(path) for path in files]
    assert len(sessions) == 2, files
    for records in sessions:
        starts = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        assert {(s.run_id, s.project) for s in starts} == {(run_id, "mm1-test")}, starts
    first, resumed = (_wandb_history(records) for records in sessions)
    assert (sorted(first), sorted(resumed)) == ([1, 2, 3, 4], [3, 4])
    again = {r["step"]: r for r in read_metrics(run) if r["step"] > 2}
    assert all(resumed[step]["loss"] == pytest.approx(again[step]["loss"], rel=1e-12) for step in (3, 4))


@pytest.mark.slow
def test_pretrain_ends_with_a_summary_whose_eval_command_runs(tiny_overrides, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert main(["pretrain", str(TINY), *tiny_overrides, *SMALL, "train.steps=2"]) == 0
    out = capsys.readouterr().out
    records = read_metrics(run)
    assert (f"run complete: 2 steps, {records[-1]['tokens_seen']:,} tokens (non-padding, image tokens included) "
            f"and {records[-1]['images_seen']:,} images seen") in out
    assert f"loss {records[0]['loss']:.3f} at step 1 -> {records[-1]['loss']:.3f} at step 2" in out
    assert f"model {run / 'checkpoint'}; metrics {run / 'metrics.jsonl'}" in out
    [command] = [line.split("evaluate it: ", 1)[1] for line in out.splitlines() if "evaluate it: " in line]
    assert command.startswith(f"mm1 eval {run} --tasks synthetic")
    args = shlex.split(command)[1:] + ["--shots", "0", "--limit", "2", "--tasks", "synth_vqa"]  # a quick version
    assert main(args) == 0
    assert "synth_vqa" in capsys.readouterr().out


def test_mfu_is_logged_only_against_a_datasheet_peak():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert mfu_key(gpu) == "mfu" and mfu_key(cpu) == "mfu_estimate"
    line = describe_peak(cpu, 1.4e11, "a 1-s fp32 matmul probe on 2 CPU thread(s) at start-up: an estimate, which "
                                      "a busy machine lowers")
    assert line.startswith("mfu_estimate in metrics.jsonl is against 140 GFLOP/s") and "an estimate" in line
    peak = gpu_peak_flops("NVIDIA H100 80GB HBM3")
    assert describe_peak(gpu, peak, "datasheet").startswith("mfu in metrics.jsonl is against 989 TFLOP/s")
    assert "mfu is not logged" in describe_peak(gpu, None, "datasheet dense bf16 peak of 'NVIDIA X'")


@pytest.mark.slow
def test_mm1_plot_draws_loss_and_eval_curves_of_runs(tiny_overrides, tmp_path, capsys):
    runs = []
    for lr in ("1e-3", "3e-3"):
        overrides = [o for o in tiny_overrides if not o.startswith("output.dir=")] + [f"output.dir={tmp_path / f'lr{lr}'}"]
        runs.append(pretrain(load_config(TINY, overrides + SMALL + [
            "train.steps=4", f"optim.lr={lr}", "eval.tasks=synth_vqa", "eval.every=2", "eval.limit=2",
            "eval.shots=[0]"])))
    records = read_metrics(runs[0])
    scores = [(r["step"], r["eval/average/0shot"]) for r in records if "eval/average/0shot" in r]
    assert [step for step, _ in scores] == [2, 4] and eval_means(records) == {0: scores}
    out = tmp_path / "curves.png"
    assert main(["plot", *map(str, runs), "--out", str(out), "--x", "tokens"]) == 0
    assert f"plotted 2 run(s) to {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.size == (1440, 540)  # two panels: loss and eval
        colours = np.unique(np.asarray(image.convert("RGB")).reshape(-1, 3), axis=0)
        assert len(colours) > 50  # curves, legends and text, not a blank canvas
    assert main(["plot", str(runs[0]), "--out", str(out)]) == 0  # replaces its own PNG


def test_mm1_plot_errors_are_exit_2_and_write_nothing(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "absent"), "--out", str(tmp_path / "p.png")]) == 2
    assert "no metrics.jsonl here" in capsys.readouterr().err
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 2.0}) + "\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert main(["plot", str(run), "--out", str(notes)]) == 2
    assert "is not a PNG" in capsys.readouterr().err and notes.read_text() == "mine"
    assert main(["plot", str(run), "--out", str(tmp_path / "p.png"), "--x", "tokens"]) == 2
    assert "no tokens_seen" in capsys.readouterr().err and not (tmp_path / "p.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("policy, runtime_sees", [(None, "GOMP_SPINCOUNT = '0'"), ("active", "OMP_WAIT_POLICY = 'ACTIVE'")])
def test_the_mm1_command_starts_openmp_passive_unless_told_otherwise(policy, runtime_sees):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update({"OMP_DISPLAY_ENV": "verbose", "PYTHONPATH": str(ROOT), **({"OMP_WAIT_POLICY": policy} if policy else {})})
    proc = subprocess.run([sys.executable, "-m", "mm1", "info", str(TINY)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert runtime_sees in proc.stderr  # what torch's OpenMP runtime (libgomp) read at start-up
