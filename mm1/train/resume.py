"""Which checkpoint a run resumes from, and the rules that keep a resume from throwing work away.

    resolve_resume(run_dir, "auto")   # the newest complete checkpoint (None in a fresh folder)
    latest_checkpoint(run_dir)        # what `latest` names when complete, else the newest complete one
    check_new_run(run_dir, resume)    # a run without --resume never writes into another run's folder
    schedule_change(ckpt, cfg, step)  # the warning when a resume changes the learning-rate schedule

A checkpoint is complete when every file resume reads is there (mm1.layout.ModelDir: trainer.json,
rng.pt and the weights: model.safetensors + optimizer.pt, or the shards in state/). Checkpoints are
ordered by save time, then step, so the checkpoints of an older run in the same folder sort first.
Writing them is mm1.train.checkpoints.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import yaml

from mm1.config import ConfigError
from mm1.errors import CheckpointError
from mm1.layout import ModelDir, RunDir
from mm1.train.optim import lr_at


def is_complete(path: Path) -> bool:
    """A checkpoint folder with every file resume reads."""
    parts = ModelDir(path)
    if not (parts.trainer.is_file() and parts.rng.is_file()):
        return False
    return parts.sharded or (parts.weights.is_file() and parts.optimizer.is_file())


def saved_order(path: Path) -> tuple:
    """(when it was saved, step): sorts checkpoints oldest first, also two runs' checkpoints in one folder."""
    try:
        info = json.loads(ModelDir(path).trainer.read_text())
        return float(info.get("saved_at", path.stat().st_mtime)), int(info["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return float("-inf"), -1


def complete_checkpoints(run_dir) -> list[Path]:
    """The run's complete checkpoints, in the order they were saved (newest last)."""
    root = RunDir(run_dir).checkpoints
    found = [p for p in root.glob("step_*") if p.is_dir() and is_complete(p)] if root.is_dir() else []
    return sorted(found, key=saved_order)


def _pointer(run_dir) -> Optional[Path]:
    pointer = RunDir(run_dir).latest
    return pointer.parent / pointer.read_text().strip() if pointer.is_file() else None


def latest_checkpoint(run_dir) -> Optional[Path]:
    """The checkpoint `latest` names when it is complete, else the newest complete one; None if none is."""
    named = _pointer(run_dir)
    if named is not None and is_complete(named):
        return named
    done = complete_checkpoints(run_dir)
    return done[-1] if done else None


def _resume_auto(run_dir, announce: bool) -> Optional[Path]:
    """`--resume auto`: the latest complete checkpoint, said so when `latest` names another; None in a
    folder with no checkpoint; CheckpointError when there are checkpoints but none is complete."""
    named, found = _pointer(run_dir), latest_checkpoint(run_dir)
    root = RunDir(run_dir).checkpoints
    if found is None and (named is not None or any(root.glob("step_*"))):
        raise CheckpointError(f"--resume auto: {root} holds checkpoints but none is complete; resume from one "
                              f"with --resume PATH, or start afresh with another output.dir")
    if announce and found is not None and named is not None and found != named:
        print(f"mm1: {RunDir(run_dir).latest} names {named.name}, which is missing or incomplete; resuming from the newest "
              f"complete checkpoint, {found.name}")
    return found


def resolve_resume(run_dir, resume: Optional[str], announce: bool = True) -> Optional[Path]:
    """`auto` = the latest complete checkpoint of the run (None if there is none); else a path.
    `announce`: say so when `latest` names no complete checkpoint (one rank of a multi-process run)."""
    if resume is None:
        return None
    if resume == "auto":
        return _resume_auto(run_dir, announce)
    path = Path(resume)
    if RunDir(path).checkpoints.is_dir():
        path = latest_checkpoint(path)
    if path is None or not is_complete(path):
        raise CheckpointError(f"--resume {resume}: no complete checkpoint there (trainer.json, rng.pt and the "
                              f"weights are needed)")
    return path


SCHEDULE = (("train", "steps"), ("optim", "lr"), ("optim", "warmup_steps"), ("optim", "min_lr_ratio"))


def schedule_change(checkpoint: Path, cfg, step: int) -> Optional[str]:
    """A warning when this run's learning-rate schedule (train.steps, and the peak, warmup and floor) differs
    from the one the checkpoint was trained with: resuming then continues on another curve. None if not."""
    try:
        saved = yaml.safe_load(ModelDir(checkpoint).config.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    now = {"train": cfg.train, "optim": cfg.optim}
    changed = [(f"{part}.{key}", saved.get(part, {}).get(key), getattr(now[part], key)) for part, key in SCHEDULE
               if key in saved.get(part, {}) and saved[part][key] != getattr(now[part], key)]
    if not changed:
        return None
    o, total = cfg.optim, cfg.train.steps
    was = saved["optim"].get("lr", o.lr)
    was_lr = lr_at(step, float(was), saved["optim"].get("warmup_steps", o.warmup_steps),
                   saved["train"].get("steps", total), saved["optim"].get("min_lr_ratio", o.min_lr_ratio))
    now_lr = lr_at(step, float(o.lr), o.warmup_steps, total, o.min_lr_ratio)
    diffs = ", ".join(f"{key} {old!r} -> {new!r}" for key, old, new in changed)
    return (f"mm1: warning: the learning-rate schedule changes on resuming at step {step}: {diffs} (the checkpoint's "
            f"run had the first); the lr at step {step + 1} is {now_lr:.3g} (it would have been {was_lr:.3g}), "
            f"and the warmup and cosine decay now end at step {total}")


def check_new_run(run_dir, resume: Optional[str]) -> None:
    """A run without --resume never writes into a folder that holds another run's progress."""
    run = RunDir(run_dir)
    used = [path.name for path in (run.metrics, run.checkpoints, run.final) if path.exists()]
    if resume is None and used:
        raise ConfigError(f"output.dir: {str(run.root)!r} already holds a run ({', '.join(used)}); continue it "
                          f"with --resume auto, or write this one elsewhere with output.dir=ANOTHER_FOLDER")
