"""Multi-process training with gloo on the CPU: DDP and FSDP2 match a single process."""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from mm1.config import load_config
from mm1.train.metrics import read_metrics
from mm1.train.pretrain import pretrain
from mm1.train.state import latest_checkpoint
from tests.conftest import ROOT, TINY
from tests.shards import write_caption_shards, write_text_shards

STEPS = 5


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_caption_shards(root / "cap", shards=4, per_shard=12)
    write_text_shards(root / "txt", shards=2, per_shard=12)
    return root


def overrides(root, run, *extra):
    return [
        f"data.root={root}", "data.synth=null", f"output.dir={run}",
        "data.sources={cap: {kind: caption, shards: ['cap/*.tar']}, txt: {kind: text, shards: ['txt/*.tar']}}",
        "data.mixture={cap: 0.8, txt: 0.2}", "train.batch_size=3", "train.log_every=1", f"train.steps={STEPS}",
        "model.decoder.num_layers=2", "model.vision.layers=2", "model.decoder.hidden_size=128",
        "data.seq_len=96", "optim.lr=2e-3", "optim.warmup_steps=2", *extra,
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "mm1", "pretrain", str(TINY), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def reference(shard_root, tmp_path_factory):
    """One process, two loader workers, two micro-batches: the same global batches as two ranks."""
    run = tmp_path_factory.mktemp("ref") / "run"
    pretrain(load_config(TINY, overrides(shard_root, run, "data.num_workers=2", "train.grad_accum=2")))
    return [r["loss"] for r in read_metrics(run)]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_match_one(shard_root, tmp_path, reference, strategy):
    run = tmp_path / "run"
    proc = torchrun(overrides(shard_root, run, f"parallel.strategy={strategy}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    losses = [r["loss"] for r in read_metrics(run)]
    assert len(losses) == STEPS
    assert losses == pytest.approx(reference, rel=1e-5, abs=1e-6)
    assert (run / "checkpoint" / "model.safetensors").is_file()


def test_fsdp_checkpoint_saved_on_two_resumes_on_one(shard_root, tmp_path, reference):
    run = tmp_path / "run"
    proc = torchrun(overrides(shard_root, run, "parallel.strategy=fsdp", "train.checkpoint_every=3"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # drop the end of the run and resume from the step-3 checkpoint on a single process
    (run / "checkpoints" / "latest").write_text("step_00000003")
    resumed = run.parent / "resumed"
    import shutil

    shutil.copytree(run / "checkpoints", resumed / "checkpoints")
    pretrain(load_config(TINY, overrides(shard_root, resumed, "data.num_workers=2", "train.grad_accum=2")),
             resume=str(latest_checkpoint(resumed)))
    losses = [r["loss"] for r in read_metrics(resumed)]
    assert losses == pytest.approx(reference[3:], rel=1e-5, abs=1e-6)  # same data slots: exact position
