"""End to end on the CPU: the tiny recipe reads real shards, trains, logs and saves a loadable checkpoint."""
from __future__ import annotations

import subprocess
import sys

import pytest

import mm1
from mm1.config import load_config
from mm1.train.metrics import read_metrics
from mm1.train.pretrain import pretrain
from tests.conftest import ROOT, TINY

MIX_UNITS = ("documents", "tokens", "labelled")


@pytest.mark.slow
def test_two_step_train_writes_run_folder(tiny_overrides, tmp_path):
    run = pretrain(load_config(TINY, tiny_overrides + ["train.steps=2"]))
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2]
    assert all(r["loss"] > 0 for r in records)
    assert (run / "config.yaml").is_file() and (run / "checkpoint" / "model.safetensors").is_file()
    resolved = load_config(run / "config.yaml")
    assert isinstance(resolved.optim.lr, float)  # "auto" resolved by the lr law and recorded
    loaded = mm1.load(run / "checkpoint")
    assert loaded.cfg.model.connector.kind == "c_abstractor"


@pytest.mark.slow
def test_loss_falls_and_mixture_is_logged(tiny_overrides):
    small = ["model.decoder.num_layers=2", "model.vision.layers=2", "data.seq_len=96"]
    run = pretrain(load_config(TINY, tiny_overrides + small + ["train.steps=25", "optim.warmup_steps=5", "optim.lr=3e-3"]))
    records = read_metrics(run)
    first, last = records[0]["loss"], sum(r["loss"] for r in records[-5:]) / 5
    assert last < 0.6 * first, (first, last)
    mix = {k: v for k, v in records[-1].items() if k.startswith("mix/")}
    sources = ("caption", "interleaved", "text")
    assert set(mix) == {f"mix/{unit}/{source}" for unit in MIX_UNITS for source in sources}
    for unit in MIX_UNITS:  # shares of everything trained on so far
        assert sum(mix[f"mix/{unit}/{source}"] for source in sources) == pytest.approx(1, abs=1e-3)
    assert mix["mix/tokens/interleaved"] > mix["mix/documents/interleaved"]  # the longer documents
    assert mix["mix/labelled/caption"] < mix["mix/tokens/caption"]  # a caption's image tokens have no label


@pytest.mark.slow
def test_cli_pretrain_runs(tiny_overrides):
    proc = subprocess.run([sys.executable, "-m", "mm1", "pretrain", str(TINY), *tiny_overrides, "train.steps=1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "checkpoint saved" in proc.stdout


@pytest.mark.slow
def test_metrics_report_throughput_and_mfu(tiny_overrides):
    run = pretrain(load_config(TINY, tiny_overrides + ["train.steps=2"]))
    last = read_metrics(run)[-1]
    assert last["tokens_per_s"] > 0 and last["model_flops_per_s"] > 0
    assert "mfu" not in last and last["mfu_estimate"] > 0  # a CPU has no datasheet peak: against the start-up probe


@pytest.mark.slow
def test_recipe_with_an_eval_suite_scores_during_training(tiny_overrides):
    run = pretrain(load_config(TINY, tiny_overrides + ["train.steps=2", "eval.tasks=synth_vqa", "eval.limit=4",
                                                       "eval.shots=[0]", "model.decoder.num_layers=1"]))
    scored = [r for r in read_metrics(run) if any(k.startswith("eval/") for k in r)]
    assert scored and scored[-1]["step"] == 2
