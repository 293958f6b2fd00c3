"""`mm1 export RUN --out DIR [--format mm1|hf]`: a self-contained model folder.

mm1 (the default): weights, config and tokenizer as mm1.load reads them.
hf: a folder that transformers' Auto classes load (mm1.hf.export).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from mm1.layout import ModelDir, RunDir
from mm1.train.model_folder import load_model_folder, save_weights
from mm1.train.resume import latest_checkpoint

FORMATS = ("mm1", "hf")


def source_checkpoint(run) -> Path:
    """The run's final checkpoint, else its latest full-state checkpoint, else `run` itself if it is one."""
    run = RunDir(run)
    for candidate in (run.final, latest_checkpoint(run.root), run.root):
        if candidate is not None and (ModelDir(candidate).weights.is_file() or ModelDir(candidate).sharded):
            return candidate
    raise FileNotFoundError(f"{run.root}: no checkpoint found (looked for checkpoint/, checkpoints/latest, "
                            f"model.safetensors)")


def export(run, out, fmt: str = "mm1") -> Path:
    if fmt not in FORMATS:
        raise ValueError(f"--format: {fmt!r} is not allowed; allowed: {', '.join(FORMATS)}")
    src, out = ModelDir(source_checkpoint(run)), Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"--out {out}: folder exists and is not empty")
    if fmt == "hf":
        from mm1.hf.export import write_hf_folder

        loaded = load_model_folder(src.root)
        write_hf_folder(loaded.model, loaded.tokenizer, out)
        return out
    out.mkdir(parents=True, exist_ok=True)
    if src.sharded:  # a multi-process run's checkpoint: gather its shards into one weights file
        save_weights(load_model_folder(src.root).model.state_dict(), ModelDir(out).weights)
    for path in src.parts:
        if path.is_dir():
            shutil.copytree(path, out / path.name)
        elif path.is_file():
            shutil.copy2(path, out / path.name)
    return out
