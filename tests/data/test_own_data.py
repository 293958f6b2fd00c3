"""README "Your own data", followed word for word in a fresh folder: a small COCO-format caption set,
OBELICS-style documents and text lines, converted with `mm1 data ...`, then `mm1 pretrain` of
recipes/own_data.yaml for a few steps. The commands run through a real shell, as a user types them."""
from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT


def readme_commands(section: str) -> list[str]:
    """The lines of the first bash block of a README section."""
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", body, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def users_files(folder: Path) -> None:
    """captions.json + images/, docs.jsonl (images relative to its folder), texts.jsonl: what the section names."""
    (folder / "images").mkdir(parents=True)
    for i in range(6):
        (folder / "images" / f"{i:04d}.png").write_bytes(png(i))
    captions = ["A dog runs on the beach.", "Two cups of coffee on a table.", "A red bus in the street.",
                "A cat sleeps on a sofa.", "Mountains under a cloudy sky.", "A child flies a kite."]
    (folder / "captions.json").write_text(json.dumps({
        "images": [{"id": i, "file_name": f"{i:04d}.png"} for i in range(6)],
        "annotations": [{"image_id": i, "id": 10 + i, "caption": c} for i, c in enumerate(captions)]}))
    docs = [{"texts": ["My trip, day one.", None, "We walked to the old harbour.", None],
             "images": [None, "images/0001.png", None, "images/0002.png"]},
            {"texts": [None, "Café menu: soup, bread and tea."], "images": ["images/0003.png", None]}]
    (folder / "docs.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs * 3))
    (folder / "texts.jsonl").write_text("".join(json.dumps({"text": f"Plain text number {i}, no images."}) + "\n"
                                                for i in range(8)))


def shell(command: str, cwd: Path, bin_dir: Path) -> subprocess.CompletedProcess:
    """One README line in bash; `mm1` is this checkout's (as `pip install -e .` puts it on PATH)."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run(["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_readme_your_own_data_word_for_word(tmp_path):
    commands = readme_commands("Your own data")
    assert [c.split()[:3] for c in commands] == [["mm1", "data", "coco"], ["mm1", "data", "obelics"],
                                                 ["mm1", "data", "text"], ["mm1", "pretrain", "recipes/own_data.yaml"]]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mm1").write_text(f'#!/bin/sh\nexec {sys.executable} -m mm1 "$@"\n')
    (bin_dir / "mm1").chmod(0o755)
    work = tmp_path / "work"  # the user's folder: no recipes/ in it
    users_files(work)
    outputs = []
    for command in commands:
        proc = shell(command, work, bin_dir)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
        outputs.append(proc.stdout + proc.stderr)
    assert "wrote 6 samples (6 images)" in outputs[0] and "wrote 6 samples (9 images)" in outputs[1]
    assert "wrote 8 samples" in outputs[2] and "<unk>" not in outputs[3]
    run = work / "runs" / "own_data"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = records[-1]
    assert last["step"] == 20 and all(last[f"mix/documents/{s}"] > 0 for s in ("caption", "interleaved", "text"))
    assert all(last[f"unk/{s}"] == 0 for s in ("caption", "interleaved", "text"))
    assert (run / "checkpoint" / "config.yaml").is_file()
