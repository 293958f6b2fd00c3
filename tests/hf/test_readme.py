"""The README's "Export" section (its Inference part included), followed word for word in a fresh
folder that holds what it assumes: runs/tiny (the tiny recipe's model; random weights instead of
the 8-minute training run) and the user's images photo.png and demo.png."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.hf.test_export import make_run


def section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start: end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def run(cmd: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{shlex.join(cmd)}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_readme_export_section_word_for_word(tmp_path):
    text = section("Export")
    make_run(tmp_path / "runs" / "tiny")
    for name, size in (("photo.png", (80, 100)), ("demo.png", (64, 64))):
        pixels = np.random.RandomState(len(name)).randint(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / name)
    commands = [line for block in blocks(text, "bash") for line in block.splitlines() if line.strip()]
    assert [c.split()[:2] for c in commands] == [["mm1", "export"]] * 2 + [["mm1", "generate"]] * 2
    for line in commands:
        args = shlex.split(line)
        proc = run([sys.executable, "-m", "mm1", *args[1:]], tmp_path)
        if args[1] == "generate":
            assert proc.stdout.endswith("\n")
    assert (tmp_path / "exports" / "tiny" / "model.safetensors").is_file()
    assert (tmp_path / "hf" / "tiny" / "modeling_mm1.py").is_file()
    snippets = blocks(text, "python")
    assert len(snippets) == 2
    for code in snippets:
        run([sys.executable, "-c", code], tmp_path)
