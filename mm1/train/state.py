"""Full-state checkpoints that a crash at any moment cannot corrupt.

Layout under `<run>/checkpoints/`:
  step_00000100/   model.safetensors, optimizer.pt, trainer.json (step, data position,
                   RNG states, fault counters), config.yaml, tokenizer/, decoder/
  latest           the name of the newest *complete* checkpoint

A checkpoint is written into `.tmp-step_...`, made visible by an atomic rename,
and only then does `latest` move (itself replaced atomically). A process killed
during a save leaves the previous checkpoint as the one that resumes.
"""
from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from mm1.train.checkpoint import save_checkpoint

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_state(run_dir, model, optimizer, cfg, tokenizer, trainer: dict, keep: int) -> Path:
    """Write checkpoint `step_N` for `trainer["step"]`, move `latest`, prune to `keep`."""
    root = Path(run_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{trainer['step']:08d}"
    tmp = root / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_checkpoint(tmp, model, cfg, tokenizer)
    torch.save({"optimizer": optimizer.state_dict(), "rng": rng_state()}, tmp / "optimizer.pt")
    (tmp / "trainer.json").write_text(json.dumps(trainer))
    _fsync_dir(tmp)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_atomic(root / LATEST, name)
    _prune(root, keep)
    return final


def latest_checkpoint(run_dir) -> Optional[Path]:
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / "trainer.json").is_file() else None


def resolve_resume(run_dir, resume: Optional[str]) -> Optional[Path]:
    """`auto` = the latest complete checkpoint of the run (None if there is none); else a path."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if (path / CHECKPOINTS).is_dir():
        path = latest_checkpoint(path)
    if path is None or not (path / "trainer.json").is_file():
        raise FileNotFoundError(f"--resume {resume}: no complete checkpoint there (trainer.json missing)")
    return path


def load_state(path: Path, model, optimizer) -> dict:
    from safetensors.torch import load_model

    load_model(model, str(path / "model.safetensors"))
    extra = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(extra["optimizer"])
    set_rng_state(extra["rng"])
    return json.loads((path / "trainer.json").read_text())


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as f:
                os.fsync(f.fileno())


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("step_"))
    for old in done[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
