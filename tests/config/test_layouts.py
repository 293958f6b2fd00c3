"""Every paper recipe states the GPU layout it is written for (parallel.gpus), and its model states fit 80 GB
cards there with room for activations; `mm1 info --gpu-memory` finds the smallest GPU count that fits."""
from __future__ import annotations

import pytest

from mm1.cli import main
from mm1.config import load_config
from mm1.info import memory_per_gpu, meta_model, min_gpus
from mm1.train.pretrain import fit_global_batch
from tests.conftest import ROOT

PAPER = sorted((ROOT / "recipes").glob("mm1_*.yaml"))
BUDGET = 60  # GiB of model states per 80 GB card: the other ~20 GiB are for activations (not estimated)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", PAPER, ids=lambda p: p.stem)
def test_paper_recipe_layout_fits_80gb_cards(recipe):
    cfg = load_config(recipe)
    gpus = cfg.parallel.gpus
    assert gpus is not None and gpus % 8 == 0  # whole nodes of 8
    model = meta_model(cfg)
    assert memory_per_gpu(cfg, model, gpus)["total_gib"] <= BUDGET
    fit = min_gpus(cfg, model, BUDGET)
    assert fit["gpus"] <= gpus and fit["total_gib"] <= BUDGET
    if fit["gpus"] > 1:  # the smallest: one GPU fewer does not fit
        assert memory_per_gpu(cfg, model, fit["gpus"] - 1)["total_gib"] > BUDGET
    fit_global_batch(cfg, gpus)  # the global batch splits over the layout
    assert cfg.train.batch_size * cfg.train.grad_accum * gpus == cfg.train.global_batch_size


@pytest.mark.slow
def test_info_prints_the_smallest_gpu_count_and_uses_the_stated_layout(capsys):
    recipe = str(ROOT / "recipes" / "mm1_3b_moe.yaml")
    assert main(["info", recipe, "--gpu-memory", "60"]) == 0
    out = capsys.readouterr().out
    assert "memory per GPU (FSDP2, 32 GPUs = 1 x 32 shards" in out
    assert "smallest GPU count for 60 GiB of model states per GPU: 24 (" in out
    assert main(["info", recipe, "--gpu-memory", "10"]) == 0
    assert "none up to 16384 (the gathered parameters alone need more)" in capsys.readouterr().out
    assert main(["info", recipe, "--gpu-memory", "0"]) == 2
    assert "--gpu-memory: 0.0 GiB; expected a number > 0" in capsys.readouterr().err
