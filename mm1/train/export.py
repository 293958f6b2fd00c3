"""`mm1 export RUN --out DIR`: a self-contained model folder (weights, config, tokenizer)."""
from __future__ import annotations

import shutil
from pathlib import Path

from mm1.train.checkpoint import CONFIG, DECODER, TOKENIZER, WEIGHTS, is_sharded, load_checkpoint, save_weights
from mm1.train.state import latest_checkpoint

PARTS = (WEIGHTS, CONFIG, TOKENIZER, DECODER)


def source_checkpoint(run) -> Path:
    """The run's final checkpoint, else its latest full-state checkpoint, else `run` itself if it is one."""
    run = Path(run)
    for candidate in (run / "checkpoint", latest_checkpoint(run), run):
        if candidate is not None and ((candidate / WEIGHTS).is_file() or is_sharded(candidate)):
            return candidate
    raise FileNotFoundError(f"{run}: no checkpoint found (looked for checkpoint/, checkpoints/latest, {WEIGHTS})")


def export(run, out) -> Path:
    src, out = source_checkpoint(run), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out}: folder exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)
    if is_sharded(src):  # a multi-process run's checkpoint: gather its shards into one weights file
        save_weights(load_checkpoint(src).model.state_dict(), out / WEIGHTS)
    for part in PARTS:
        path = src / part
        if path.is_dir():
            shutil.copytree(path, out / part)
        elif path.is_file():
            shutil.copy2(path, out / part)
    return out
