"""The prepared GPU check (`mm1 bench gpu`, benchmarks/gpu_check.sh): its parts that run on a CPU."""
from __future__ import annotations

import json

import pytest
import torch

from mm1.bench.checks import moe_check, precision_check
from mm1.bench.gpu import RECIPES, check_rows, passed, synth_overrides
from mm1.bench.train import real_batches
from mm1.cli import main
from mm1.config import load_config
from mm1.tokenizer import build_tokenizer

CPU = torch.device("cpu")


def tiny_batches(recipe: str, root, count: int):
    overrides = synth_overrides(str(root)) + ["train.batch_size=2", "model.decoder.num_layers=2"]
    cfg = load_config(RECIPES / recipe, overrides)
    return cfg, real_batches(cfg, build_tokenizer(cfg.model.tokenizer), count, CPU)


def test_moe_check_finds_grouped_equal_to_loop_on_the_tiny_moe_recipe(synth_root):
    cfg, (batch,) = tiny_batches("tiny_moe.yaml", synth_root, 1)
    r = moe_check(cfg, batch)
    assert r["loss_rel"] < 1e-6 and r["grad_rel"] < 1e-6
    assert r["host_sync_free"] is None  # only checked on CUDA


@pytest.mark.slow
def test_precision_check_trains_the_same_init_in_fp32_and_bf16(synth_root):
    cfg, batches = tiny_batches("tiny.yaml", synth_root, 2)
    r = precision_check(cfg, batches)
    assert len(r["fp32"]) == len(r["bf16"]) == 2 and r["fp32"] != r["bf16"]  # bf16 really ran
    assert r["max_rel_diff"] < 0.02


def test_the_verdict_fails_when_one_check_is_out_of_tolerance():
    ok = {"checks": {"precision": {"max_rel_diff": 1e-3},
                     "attention": {"fp32": {"docs": {"loss_rel": 0.0, "grad_rel": 1e-7}}},
                     "moe": {"fp32": {"loss_rel": 0.0, "grad_rel": 0.0, "host_sync_free": None}}}}
    assert passed(ok) and len(check_rows(ok)) == 3
    ok["checks"]["attention"]["fp32"]["docs"]["grad_rel"] = 1e-3
    assert not passed(ok)
    ok["checks"]["attention"]["fp32"]["docs"]["grad_rel"] = 0.0
    ok["checks"]["moe"]["fp32"]["host_sync_free"] = False
    assert not passed(ok)


@pytest.mark.slow
def test_the_gpu_check_runs_end_to_end_on_cpu_with_the_tiny_recipe(synth_root, capsys):
    assert main(["bench", "gpu", "--tiny", "--root", str(synth_root), "--steps", "1", "--warmup", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    result = json.loads(next(line for line in out if line.startswith("{")))
    assert result["passed"] and result["tiny"]
    assert set(result["ablation_base"]) == {"dense", "docs"}  # flex has no backward on CPU
    for run in [*result["ablation_base"].values(), result["mm1_3b"]]:
        assert run["tokens_per_s"] > 0 and run["peak_memory_mib"] > 0 and all(map(lambda x: x == x, run["losses"]))
    assert any("ablation_base docs" in line for line in out)  # the table
