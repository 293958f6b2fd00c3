"""`pip install .` (not editable) works from any folder: a wheel built from this checkout, installed into a fresh
virtual environment, runs `mm1 eval --list-tasks`, `mm1 ablate --grid connectors --dry-run` and `mm1 pretrain`
of a shipped recipe from an empty folder, with no checkout in sight. No download: the environment sees this
one's packages (torch, transformers, ...) and pip installs the wheel alone (--no-deps)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.envs import builds_offline, copy_checkout, fresh_env


def build_wheel(src: Path, out: Path) -> Path:
    """pip's own build of the project; without build isolation when it can build offline."""
    isolation = ["--no-build-isolation"] if builds_offline() else []
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", *isolation, "-w", str(out), str(src)],
                   check=True, capture_output=True, text=True, timeout=600)
    [wheel] = out.glob("mm1-*.whl")
    return wheel


@pytest.mark.slow
def test_the_wheel_works_from_an_empty_folder(tmp_path):
    wheel = build_wheel(copy_checkout(tmp_path / "src"), tmp_path / "dist")
    python = fresh_env(tmp_path / "env")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # a checkout on the
    # path would make pip see mm1 as installed already
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True, text=True, timeout=300, env=env)
    empty = tmp_path / "empty"
    empty.mkdir()
    env.update(OMP_NUM_THREADS="1", MM1_CACHE=str(tmp_path / "cache"))
    mm1 = str(tmp_path / "env" / "bin" / "mm1")

    def run(*args):
        proc = subprocess.run([mm1, *args], cwd=empty, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"mm1 {' '.join(args)}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    proc = subprocess.run([str(python), "-c", "import mm1; print(mm1.__file__)"], cwd=empty, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    where = proc.stdout
    assert where.startswith(str(tmp_path / "env")), where  # the wheel's mm1, not this checkout's
    assert "synth_vqa" in run("eval", "--list-tasks") and "vqav2" in run("eval", "--list-tasks")
    assert "avg_pool" in run("ablate", "--grid", "connectors", "--dry-run")
    out = run("pretrain", "recipes/tiny.yaml", "data.synth.caption_samples=40", "data.synth.interleaved_samples=20",
              "data.synth.text_samples=20", "data.synth.eval_samples=10", "data.synth.samples_per_shard=20",
              "train.steps=2", "train.batch_size=2", "train.threads=1")
    assert "checkpoint saved to runs/tiny/checkpoint" in out
    assert sorted(p.name for p in empty.iterdir()) == ["runs"]
