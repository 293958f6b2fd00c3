"""The README's Quick start, word for word: its first command line runs through bash in a fresh copy of this
checkout, as a user types it after cloning, with an empty user cache.

What the test adds around the line, and why:
- a `python3` first on PATH whose `-m venv DIR` makes an environment that also sees this one's packages, so
  that `pip install -e .` finds mm1's dependencies installed and downloads nothing (PIP_NO_INDEX; where
  setuptools is missing, pip fetches only the build backend, as for a user);
- the user stops the 400-step training with Ctrl-C (SIGINT to the line's process group) once it has logged
  its first steps, and the run saves a checkpoint and says how to resume. The whole run's wall time and
  losses are measured by hand and stated in the README.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mm1.data.synth.write import MARKER
from tests.envs import ROOT, builds_offline, copy_checkout

PYTHON3 = """#!{python}
import os, sys
if sys.argv[1:3] == ["-m", "venv"]:
    sys.path.insert(0, {root!r})
    from pathlib import Path
    from tests.envs import fresh_env
    fresh_env(Path(sys.argv[-1]), with_pip=True)
else:
    os.execv({python!r}, [{python!r}, *sys.argv[1:]])
"""


def quick_start_line() -> str:
    text = (ROOT / "README.md").read_text()
    body = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    [line] = [ln for ln in re.search(r"```bash\n(.*?)```", body, re.S).group(1).splitlines() if ln.strip()]
    return line


def wait_for_logged_steps(proc: subprocess.Popen, metrics: Path, timeout: float = 900) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the quick start line ended with {proc.returncode}:\n{proc.stdout.read()[-4000:]}")
        if metrics.exists() and any('"loss"' in line for line in metrics.read_text().splitlines()):
            return
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail("no training step was logged in time")


@pytest.mark.slow
def test_readme_quick_start_word_for_word(tmp_path):
    line = quick_start_line()
    assert "pip install -e ." in line and "mm1 pretrain recipes/tiny.yaml" in line, line
    checkout = copy_checkout(tmp_path / "mm1")
    before = {p.name for p in checkout.iterdir()}
    shims = tmp_path / "bin"
    shims.mkdir()
    (shims / "python3").write_text(PYTHON3.format(python=sys.executable, root=str(ROOT)))
    (shims / "python3").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=f"{shims}{os.pathsep}{env['PATH']}", MM1_CACHE=str(tmp_path / "cache"))
    if builds_offline():  # pip reads this "0" as --no-build-isolation
        env.update(PIP_NO_INDEX="1", PIP_NO_BUILD_ISOLATION="0")
    proc = subprocess.Popen(["bash", "-c", line], cwd=checkout, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    run = checkout / "runs" / "tiny"
    wait_for_logged_steps(proc, run / "metrics.jsonl")
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C
    out, _ = proc.communicate(timeout=300)

    assert proc.returncode == 128 + signal.SIGINT, out[-4000:]
    assert "4.4M parameters" in out and "resume with: mm1 pretrain" in out, out[-4000:]
    where = subprocess.run([str(checkout / ".venv" / "bin" / "python"), "-c", "import mm1; print(mm1.__file__)"],
                           cwd=shims, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(checkout / "mm1")), where  # the editable install of the clone
    [corpus] = [p for p in (tmp_path / "cache" / "synth").iterdir() if p.is_dir()]  # in the user cache
    assert (corpus / MARKER).is_file()
    assert {p.name for p in checkout.iterdir()} - before <= {".venv", "runs", "mm1.egg-info"}  # no ./data
    records = [json.loads(r) for r in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses and all(0 < x < 5.6 for x in losses), losses
    assert list((run / "checkpoints").iterdir()), "Ctrl-C saves a checkpoint to resume from"
