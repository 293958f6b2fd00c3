"""SIGKILL at random moments, also inside a checkpoint save, then `--resume auto`: bit-identical losses."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from mm1.config import load_config
from mm1.train.metrics import read_metrics
from mm1.train.pretrain import pretrain
from tests.conftest import ROOT, TINY
from tests.train.test_resume_rules import overrides
from tests.shards import write_caption_shards

STEPS = 14


def start(shard_root, run) -> subprocess.Popen:
    args = [sys.executable, "-m", "mm1", "pretrain", str(TINY),
            *overrides(shard_root, run, f"train.steps={STEPS}", "train.checkpoint_every=1"), "--resume", "auto"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc, timeout: float = 120) -> bool:
    """Poll `condition` every millisecond until it holds (True) or the process ends (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.001)
    return False


def saving(run, step: int) -> bool:
    return (run / "checkpoints" / f".tmp-step_{step:08d}").is_dir()


def logged_step(run) -> int:
    """The last step metrics.jsonl holds a complete line of (it may be mid-write)."""
    path, last = run / "metrics.jsonl", 0
    lines = path.read_text().splitlines() if path.is_file() else []
    for line in lines:
        try:
            last = max(last, json.loads(line).get("step", 0))
        except ValueError:
            pass
    return last


@pytest.mark.slow
def test_random_sigkills_then_resume_give_bit_identical_losses(tmp_path):
    write_caption_shards(tmp_path / "cap", shards=2, per_shard=12)
    straight = pretrain(load_config(TINY, overrides(tmp_path, tmp_path / "straight", f"train.steps={STEPS}",
                                                    "train.checkpoint_every=1")))
    run, rng, kills = tmp_path / "run", random.Random(14), []
    for i, target in enumerate(sorted(rng.sample(range(2, STEPS), 4))):
        proc = start(tmp_path, run)
        if i % 2 == 0:  # inside the save of step `target` (or just after it, should the poll miss it)
            reached = wait_for(lambda: saving(run, target) or logged_step(run) > target, proc)
        else:  # somewhere in the step or save after step `target`
            reached = wait_for(lambda: logged_step(run) >= target, proc)
            time.sleep(rng.uniform(0.0, 0.05))
        in_save = saving(run, target)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append((target, reached, in_save))
    assert all(reached for _, reached, _ in kills), kills  # each kill landed while training
    assert any(in_save for _, _, in_save in kills), kills  # at least one inside a save
    final = start(tmp_path, run)
    _, err = final.communicate(timeout=300)
    assert final.returncode == 0, err[-3000:]
    records = [r for r in read_metrics(run) if "loss" in r]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))  # every step logged once
    assert [r["loss"] for r in records] == [r["loss"] for r in read_metrics(straight) if "loss" in r]
