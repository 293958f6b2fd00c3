"""Resume never silently throws work away: dangling pointers, re-saves, stale runs, used folders, a full disk."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from mm1.cli import main
from mm1.config import ConfigError, load_config
from mm1.errors import CheckpointError
from mm1.train.metrics import read_metrics
from mm1.train.pretrain import pretrain
from mm1.train.resume import complete_checkpoints, latest_checkpoint
from tests.conftest import TINY
from tests.train.test_resume import fail_rename
from tests.shards import write_caption_shards


@pytest.fixture(scope="module")
def shard_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    write_caption_shards(root / "cap", shards=2, per_shard=12)
    return root


def overrides(root, run, *extra):
    return [f"data.root={root}", "data.synth=null", f"output.dir={run}",
            "data.sources={cap: {kind: caption, shards: ['cap/*.tar']}}", "data.mixture={cap: 1.0}",
            "train.batch_size=2", "train.log_every=1", "train.deterministic=true", "train.threads=1",
            "model.decoder.num_layers=1", "model.vision.layers=1", "model.decoder.hidden_size=64",
            "data.seq_len=48", "optim.lr=2e-3", "optim.warmup_steps=2", *extra]


def run_to(shard_root, run, steps: int, *extra, resume=None):
    cfg = load_config(TINY, overrides(shard_root, run, f"train.steps={steps}", *extra))
    return pretrain(cfg, resume=resume)


def steps_of(path) -> int:
    return json.loads((path / "trainer.json").read_text())["step"]


def logged_steps(run) -> list[int]:
    return [r["step"] for r in read_metrics(run) if "loss" in r]


def losses(run) -> list[float]:
    return [r["loss"] for r in read_metrics(run) if "loss" in r]


@pytest.fixture(scope="module")
def straight(shard_root, tmp_path_factory):
    """Six uninterrupted steps: what every resumed run must reproduce bit for bit."""
    return run_to(shard_root, tmp_path_factory.mktemp("straight") / "run", 6)


@pytest.mark.slow
def test_dangling_latest_falls_back_to_newest_complete_and_says_so(shard_root, straight, tmp_path, capsys):
    run = run_to(shard_root, tmp_path / "run", 4, "train.checkpoint_every=2", "train.keep_checkpoints=3")
    (run / "checkpoints" / "step_00000004" / "trainer.json").unlink()  # step 4 incomplete
    (run / "checkpoints" / "latest").write_text("step_00000009")  # names a folder that is not there
    capsys.readouterr()
    run_to(shard_root, run, 6, "train.checkpoint_every=2", "train.keep_checkpoints=3", resume="auto")
    out = capsys.readouterr().out
    assert "names step_00000009, which is missing or incomplete" in out and "step_00000002" in out
    assert logged_steps(run) == [1, 2, 3, 4, 5, 6]  # steps 3 and 4 are logged once, by the resumed run
    assert losses(run) == losses(straight)


@pytest.mark.slow
def test_checkpoints_but_none_complete_exits_2(shard_root, tmp_path, capsys):
    run = run_to(shard_root, tmp_path / "run", 2)
    for path in complete_checkpoints(run):
        (path / "rng.pt").unlink()
    with pytest.raises(CheckpointError, match="none is complete"):
        run_to(shard_root, run, 4, resume="auto")
    capsys.readouterr()
    assert main(["pretrain", str(TINY), *overrides(shard_root, run, "train.steps=4"), "--resume", "auto"]) == 2
    assert "none is complete" in capsys.readouterr().err


@pytest.mark.slow
def test_resave_of_a_step_killed_before_its_rename_keeps_the_old_copy(shard_root, tmp_path, monkeypatch):
    run = run_to(shard_root, tmp_path / "run", 4)  # finished: `--resume auto` saves step 4 again
    fail_rename(monkeypatch, 4)
    with pytest.raises(OSError, match="injected"):
        run_to(shard_root, run, 4, resume="auto")
    monkeypatch.undo()
    assert steps_of(latest_checkpoint(run)) == 4
    assert (run / "checkpoints" / "latest").read_text() == latest_checkpoint(run).name  # `latest` never dangled
    run_to(shard_root, run, 4, resume="auto")  # the re-save now completes and replaces the old copy
    assert [steps_of(p) for p in complete_checkpoints(run)] == [4]


@pytest.mark.slow
def test_pruning_drops_a_stale_longer_run_not_the_current_one(shard_root, straight, tmp_path):
    run = run_to(shard_root, tmp_path / "run", 8, "train.checkpoint_every=2", "train.keep_checkpoints=4")
    start = tmp_path / "step_00000002"
    shutil.copytree(run / "checkpoints" / "step_00000002", start)
    run_to(shard_root, run, 6, "train.checkpoint_every=2", "train.keep_checkpoints=2", resume=str(start))
    kept = complete_checkpoints(run)
    assert [steps_of(p) for p in kept] == [4, 6]  # the new run's; the old run's 6 and 8 are gone
    assert latest_checkpoint(run) == kept[-1]
    assert logged_steps(run) == [1, 2, 3, 4, 5, 6] and losses(run) == losses(straight)


def test_new_run_into_a_used_folder_without_resume_exits_2(shard_root, tmp_path, capsys):
    run = run_to(shard_root, tmp_path / "run", 2)
    before = (run / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="--resume auto"):
        run_to(shard_root, run, 2)
    capsys.readouterr()
    assert main(["pretrain", str(TINY), *overrides(shard_root, run, "train.steps=2")]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume auto" in err and "output.dir=" in err
    assert (run / "metrics.jsonl").read_text() == before


def checkpoint_bytes(run) -> int:
    return sum(f.stat().st_size for f in latest_checkpoint(run).rglob("*") if f.is_file())


@pytest.mark.slow
def test_full_disk_says_so_and_keeps_the_previous_checkpoint(shard_root, tmp_path):
    size = checkpoint_bytes(run_to(shard_root, tmp_path / "probe", 1))
    mount = tmp_path / "small"
    mount.mkdir()
    fits_one = size * 8 // 5 + (1 << 18)  # room for one checkpoint and the run files, not for two
    cmd = ["mount", "-t", "tmpfs", "-o", f"size={fits_one}", "tmpfs", str(mount)]
    if not shutil.which("mount") or subprocess.run(cmd, capture_output=True).returncode:
        pytest.skip("needs permission to mount a small tmpfs (a real full disk)")
    try:
        with pytest.raises(CheckpointError, match="no space left on the device.*step_00000002, is kept"):
            run_to(shard_root, mount / "run", 6, "train.checkpoint_every=2", "train.keep_checkpoints=3")
        assert steps_of(latest_checkpoint(mount / "run")) == 2
        assert not list((mount / "run" / "checkpoints").glob(".tmp-*"))  # the partial copy is removed
    finally:
        subprocess.run(["umount", "--lazy", str(mount)])


def test_a_resume_that_changes_the_schedule_says_so(tmp_path):
    """The checkpoint's config.yaml against the resumed run's: train.steps (and the lr settings) make the curve."""
    from mm1.config import dump_yaml
    from mm1.train.resume import schedule_change

    cfg = load_config(TINY, ["optim.lr=1e-3", "train.steps=400", "optim.warmup_steps=30"])
    (tmp_path / "config.yaml").write_text(dump_yaml(cfg))
    assert schedule_change(tmp_path, cfg, 200) is None
    longer = load_config(TINY, ["optim.lr=1e-3", "train.steps=800", "optim.warmup_steps=30"])
    message = schedule_change(tmp_path, longer, 200)
    assert "the learning-rate schedule changes on resuming at step 200: train.steps 400 -> 800" in message
    assert "the lr at step 201 is 0.000896 (it would have been 0.000607)" in message and "end at step 800" in message


@pytest.mark.slow
def test_resume_with_other_train_steps_warns(shard_root, tmp_path, capsys):
    run = run_to(shard_root, tmp_path / "run", 4, "train.checkpoint_every=2")
    capsys.readouterr()
    run_to(shard_root, run, 4, resume=str(run / "checkpoints" / "step_00000002"))
    assert "schedule changes" not in capsys.readouterr().err
    run_to(shard_root, run, 8, resume="auto")
    assert "the learning-rate schedule changes on resuming at step 4: train.steps 4 -> 8" in capsys.readouterr().err
