"""Golden losses: the first 20 losses of the tiny recipe (deterministic, one thread) on the test corpus,
compared with tests/fixtures/pinned_losses.json to a relative 1e-6: the last bits of a logged loss depend on
the CPU's kernels (another machine's differed by up to 2e-7 at 8 of the 20 steps, the others equal), while
any change to the computation moves them by far more.

A change that alters any of them changes the computation: it must update that file in the same commit
(`python tests/test_pinned_losses.py` rewrites it) and say why in the commit message.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mm1.train.metrics import read_metrics
from tests.conftest import FIXTURES, ROOT, TINY

PINNED = FIXTURES / "pinned_losses.json"
STEPS = 20


def losses(synth_root: Path, run: Path) -> list[float]:
    args = [f"data.root={synth_root}", "data.synth=null", f"output.dir={run}", f"train.steps={STEPS}",
            "train.log_every=1", "train.deterministic=true", "train.threads=1", "train.checkpoint_every=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "mm1", "pretrain", str(TINY), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [r["loss"] for r in read_metrics(run) if "loss" in r]


@pytest.mark.slow
def test_first_losses_of_the_tiny_recipe_are_pinned(synth_root, tmp_path):
    pinned = json.loads(PINNED.read_text())["losses"]
    assert len(pinned) == STEPS
    assert losses(synth_root, tmp_path / "run") == pytest.approx(pinned, rel=1e-6, abs=0)


if __name__ == "__main__":  # regenerate the file, on the same corpus as the test
    import tempfile

    from mm1.config.schema import SynthConfig
    from mm1.data.synth import write_corpus
    from tests.conftest import SMALL_CORPUS

    with tempfile.TemporaryDirectory() as tmp:
        write_corpus(Path(tmp) / "synth", SynthConfig(**SMALL_CORPUS))
        values = losses(Path(tmp) / "synth", Path(tmp) / "run")
    PINNED.write_text(json.dumps({"recipe": "recipes/tiny.yaml", "corpus": "tests/conftest.py SMALL_CORPUS",
                                  "steps": STEPS, "losses": values}, indent=1) + "\n")
    print(f"wrote {len(values)} losses to {PINNED}")
