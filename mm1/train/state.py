"""Full-state checkpoints that a crash at any moment cannot corrupt.

Layout under `<run>/checkpoints/`:
  step_00000100/   trainer.json (step, data position, fault counters), rng.pt (every
                   rank's RNG states), config.yaml, tokenizer/, decoder/, and the weights:
                     one process:   model.safetensors + optimizer.pt (full state)
                     N processes:   state/ (torch.distributed.checkpoint: each rank writes
                                    its own shards of model and optimizer; no rank ever
                                    holds the full state)
  latest           the name of the newest *complete* checkpoint

Both kinds resume on any number of processes: a sharded checkpoint is resharded by
torch.distributed.checkpoint on load, a full one is broadcast from rank 0.

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
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, get_state_dict, set_model_state_dict,
    set_optimizer_state_dict, set_state_dict,
)

from mm1.train.checkpoint import STATE, WEIGHTS, is_sharded, read_shards, save_checkpoint
from mm1.train.distributed import Dist, barrier

CHECKPOINTS = "checkpoints"
LATEST = "latest"
OPTIMIZER = "optimizer.pt"  # full optimizer state (1-process runs)
RNG = "rng.pt"
TRAINER = "trainer.json"


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def full_model_state(model) -> dict:
    """The whole (unsharded) model state on CPU, on rank 0 (empty elsewhere). Collective."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def gather_rng(d: Dist) -> list:
    """Every rank's RNG state, on every rank. Collective."""
    if not d.enabled:
        return [rng_state()]
    rngs = [None] * d.world_size
    torch.distributed.all_gather_object(rngs, rng_state())
    return rngs


def save_state(run_dir, model, optimizer, cfg, tokenizer, trainer: dict, keep: int, d: Dist = Dist()) -> Path:
    """Write checkpoint `step_N` for `trainer["step"]`, move `latest`, prune to `keep`. Collective."""
    root = Path(run_dir) / CHECKPOINTS
    final = root / f"step_{trainer['step']:08d}"
    tmp = root / f".tmp-{final.name}"
    if d.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(d)
    if d.enabled:  # every rank writes its shards
        _save_sharded(tmp / STATE, model, optimizer)
    rngs = gather_rng(d)
    if d.is_main:
        save_checkpoint(tmp, unwrap(model), cfg, tokenizer, weights=not d.enabled)
        if not d.enabled:
            torch.save({"optimizer": get_optimizer_state_dict(model, optimizer)}, tmp / OPTIMIZER)
        torch.save(rngs, tmp / RNG)
        (tmp / TRAINER).write_text(json.dumps({**trainer, "world_size": d.world_size}))
        _fsync_dir(tmp)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _write_atomic(root / LATEST, final.name)
        _prune(root, keep)
    barrier(d)
    return final


def _save_sharded(path: Path, model, optimizer) -> None:
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(path))


def unwrap(model):
    return getattr(model, "module", model)


def latest_checkpoint(run_dir) -> Optional[Path]:
    root = Path(run_dir) / CHECKPOINTS
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    path = root / pointer.read_text().strip()
    return path if (path / TRAINER).is_file() else None


def resolve_resume(run_dir, resume: Optional[str]) -> Optional[Path]:
    """`auto` = the latest complete checkpoint of the run (None if there is none); else a path."""
    if resume is None:
        return None
    if resume == "auto":
        return latest_checkpoint(run_dir)
    path = Path(resume)
    if (path / CHECKPOINTS).is_dir():
        path = latest_checkpoint(path)
    if path is None or not (path / TRAINER).is_file():
        raise FileNotFoundError(f"--resume {resume}: no complete checkpoint there (trainer.json missing)")
    return path


def load_state(path: Path, model, optimizer, d: Dist = Dist()) -> dict:
    """Restore model, optimizer and this rank's RNG, whatever the number of ranks that saved it."""
    if is_sharded(path):
        _load_sharded(path / STATE, model, optimizer)
    else:
        _load_full(path, model, optimizer, d)
    rngs = torch.load(path / RNG, map_location="cpu", weights_only=False)
    if d.rank < len(rngs):
        set_rng_state(rngs[d.rank])
    return json.loads((path / TRAINER).read_text())


def _load_sharded(path: Path, model, optimizer) -> None:
    """torch.distributed.checkpoint reads the shards this rank needs, in the current layout
    (also in a process with no process group: the whole state, for 1-process resume)."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optimizer": optim_sd}
    read_shards(state, path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def _load_full(path: Path, model, optimizer, d: Dist) -> None:
    main = d.is_main or not d.enabled
    model_sd = load_file(str(path / WEIGHTS)) if main else {}
    optim_sd = torch.load(path / OPTIMIZER, map_location="cpu", weights_only=False)["optimizer"] if main else {}
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=d.enabled)
    set_model_state_dict(model, model_sd, options=options)
    set_optimizer_state_dict(model, optimizer, optim_sd, options=options)


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
