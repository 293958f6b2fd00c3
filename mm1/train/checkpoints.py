"""Writing and reading full-state training checkpoints, which a crash at any moment cannot corrupt
(which one a run resumes from: mm1.train.resume; the names: mm1.layout).

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
and only then does `latest` move (itself replaced atomically). Saving a step that
has a folder already writes `step_N.1` and removes the old one only after `latest`
names the new one. A process killed at any moment leaves a complete checkpoint.
Pruning keeps the newest saves by save time (then step), so the checkpoints of an
older run in the same folder go first. Nothing in these files is unpickled with
code execution (mm1.train.safeio).
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions, get_model_state_dict, get_optimizer_state_dict, get_state_dict, set_model_state_dict,
    set_optimizer_state_dict, set_state_dict,
)

from mm1.errors import CheckpointError
from mm1.layout import ModelDir, RunDir
from mm1.train.model_folder import check_fits, read_shards, save_model_folder
from mm1.train.resume import complete_checkpoints, latest_checkpoint, saved_order
from mm1.train.distributed import Dist, barrier
from mm1.train.parallelize import unwrap
from mm1.train.safeio import load_plain

LOW_SPACE = 64 << 20  # bytes: a save that fails with less than this free failed for want of space


def rng_state() -> dict:
    """Python, numpy and torch RNG states as tuples, ints and tensors (what weights_only=True reads)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss))
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
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
    """Write a checkpoint of `trainer["step"]`, move `latest` to it, prune to `keep`. Collective."""
    root = RunDir(run_dir).checkpoints
    tmp, parts = root / f".tmp-step_{trainer['step']:08d}", ModelDir(root / f".tmp-step_{trainer['step']:08d}")
    if d.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    barrier(d)
    if d.enabled:  # every rank writes its shards
        _save_sharded(parts.state, model, optimizer)
    rngs = gather_rng(d)
    final = None
    if d.is_main:
        with _disk_full_message(root, tmp):
            save_model_folder(tmp, unwrap(model), cfg, tokenizer, weights=not d.enabled)
            if not d.enabled:
                torch.save({"optimizer": get_optimizer_state_dict(model, optimizer)}, parts.optimizer)
            torch.save(rngs, parts.rng)
            info = {**trainer, "world_size": d.world_size, "saved_at": time.time()}
            parts.trainer.write_text(json.dumps(info))
            _fsync_dir(tmp)
            final = _free_name(root, trainer["step"])  # a step saved before keeps its folder until this one is in
            os.replace(tmp, final)
            _write_atomic(RunDir(run_dir).latest, final.name)
        _prune(root, keep, final)
    barrier(d)
    return final


@contextlib.contextmanager
def _disk_full_message(root: Path, tmp: Path):
    """A full disk ends the save with a message that says so; the partial copy goes, the previous stays.
    (torch.save reports a full disk as a RuntimeError without errno: the free space tells.)"""
    try:
        yield
    except (OSError, RuntimeError) as err:
        free = shutil.disk_usage(root).free
        shutil.rmtree(tmp, ignore_errors=True)
        if getattr(err, "errno", None) not in (errno.ENOSPC, errno.EDQUOT) and free > LOW_SPACE:
            raise
        kept = latest_checkpoint(root.parent)
        kept = f"the previous checkpoint, {kept.name}, is kept" if kept else "no checkpoint is kept"
        raise CheckpointError(f"no space left on the device while writing a checkpoint into {root} ({free} bytes "
                              f"free); {kept}: free some space, then continue with --resume auto") from None


def _free_name(root: Path, step: int) -> Path:
    """`step_N`, or `step_N.K` when a folder of that step is there already (it stays until pruning)."""
    path, k = root / f"step_{step:08d}", 0
    while path.exists():
        k += 1
        path = root / f"step_{step:08d}.{k}"
    return path


def _save_sharded(path: Path, model, optimizer) -> None:
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optimizer": optim_sd}, checkpoint_id=str(path))


def load_state(path: Path, model, optimizer, d: Dist = Dist()) -> dict:
    """Restore model, optimizer and this rank's RNG, whatever the number of ranks that saved it."""
    parts = ModelDir(path)
    if parts.sharded:
        _load_sharded(parts.state, model, optimizer)
    else:
        _load_full(parts, model, optimizer, d)
    rngs = load_plain(parts.rng)
    if d.rank < len(rngs):
        set_rng_state(rngs[d.rank])
    return json.loads(parts.trainer.read_text())


def _load_sharded(path: Path, model, optimizer) -> None:
    """torch.distributed.checkpoint reads the shards this rank needs, in the current layout
    (also in a process with no process group: the whole state, for 1-process resume)."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optimizer": optim_sd}
    read_shards(state, path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def _load_full(parts: ModelDir, model, optimizer, d: Dist) -> None:
    main = d.is_main or not d.enabled
    model_sd = load_file(str(parts.weights)) if main else {}
    if main:
        check_fits(unwrap(model).state_dict(), model_sd, parts.root)
    optim_sd = load_plain(parts.optimizer)["optimizer"] if main else {}
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


def _prune(root: Path, keep: int, current: Path) -> None:
    """Keep the `keep` newest saves (by save time, then step); drop older copies of the step just saved."""
    done, step = complete_checkpoints(root.parent), saved_order(current)[1]
    replaced = [p for p in done if p != current and saved_order(p)[1] == step]
    kept = [p for p in done if p not in replaced]
    for old in replaced + kept[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
