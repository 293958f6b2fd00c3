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
from mm1.train.distributed import Dist, barrier

CHECKPOINTS = "checkpoints"
LATEST = "latest"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def _full(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_state(model, optimizer, d: Dist) -> tuple[dict, dict | None, list]:
    """Full (unsharded) model and optimizer (if given) state on CPU, on rank 0, and every rank's
    RNG state. Collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model_sd = get_model_state_dict(model, options=_full(cpu_offload=True))
    optim_sd = None if optimizer is None else get_optimizer_state_dict(model, optimizer, options=_full(cpu_offload=True))
    rngs = [rng_state()]
    if d.enabled:
        rngs = [None] * d.world_size
        torch.distributed.all_gather_object(rngs, rng_state())
    return model_sd, optim_sd, rngs


def save_state(run_dir, model, optimizer, cfg, tokenizer, trainer: dict, keep: int, d: Dist = Dist()) -> Path:
    """Write checkpoint `step_N` for `trainer["step"]`, move `latest`, prune to `keep`. Collective."""
    model_sd, optim_sd, rngs = gather_state(model, optimizer, d)
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step_{trainer['step']:08d}"
    if d.is_main:
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / f".tmp-{final.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        save_checkpoint(tmp, unwrap(model), cfg, tokenizer, state=model_sd)
        torch.save({"optimizer": optim_sd, "rng": rngs}, tmp / "optimizer.pt")
        (tmp / "trainer.json").write_text(json.dumps({**trainer, "world_size": d.world_size}))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic(root / LATEST, final.name)
        _prune(root, keep)
    barrier(d)
    return final


def unwrap(model):
    return getattr(model, "module", model)


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


def load_state(path: Path, model, optimizer, d: Dist = Dist()) -> dict:
    """Restore model, optimizer and this rank's RNG; works for any number of ranks (full state dicts)."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    extra = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=False)
    model_sd = load_file(str(path / "model.safetensors")) if d.is_main or not d.enabled else {}
    optim_sd = extra["optimizer"] if d.is_main or not d.enabled else {}
    options = _full(broadcast_from_rank0=True) if d.enabled else _full()
    set_model_state_dict(model, model_sd, options=options)
    set_optimizer_state_dict(model, optimizer, optim_sd, options=options)
    rngs = extra["rng"]
    if d.rank < len(rngs):
        set_rng_state(rngs[d.rank])
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
