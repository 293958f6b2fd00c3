"""A sweep folder's records without its models: `mm1 ablate --share SWEEP --to OUT`.

Everything `mm1 ablate --report` reads is copied (plan.json, each run's recipe, config, metrics, eval
outputs, done markers); each run's final model (checkpoint/), its training checkpoints (checkpoints/) and
who runs it (job.json, the sweep lock) are not. The copy is small enough to send or to commit. `--report OUT`
rebuilds its tables, and `--reuse OUT` takes its finished runs, with their evaluation, into a sweep of the same
runs and eval settings: seeds trained on different machines or days gathered in one table. A run whose model
was left out is never evaluated again (mm1.ablate.sweep.find_trained_run).
"""
from __future__ import annotations

import shutil
from pathlib import Path

from mm1.ablate.execute import EVAL_DONE, TRAIN_DONE
from mm1.ablate.jobs import JOB, LOCK
from mm1.ablate.results import load_plan
from mm1.ablate.sweep import SweepError
from mm1.layout import RunDir

MARKERS = (TRAIN_DONE, EVAL_DONE)
LEFT_OUT = (RunDir(".").final.name, RunDir(".").checkpoints.name, JOB)


def _copy_run(source: Path, dest: Path) -> None:
    """A run folder without its models. Its done markers are copied last, and only those that were there before
    the copy began (a run writes them after what they mark), so a run still going is copied as unfinished."""
    markers = [m for m in MARKERS if (source / m).is_file()]
    shutil.copytree(source, dest, ignore=lambda d, names: set(names) & set(LEFT_OUT + MARKERS) if Path(d) == source
                    else set())
    for name in markers:
        shutil.copy2(source / name, dest / name)


def share_records(sweep: Path, out: Path) -> int:
    """Copy `sweep`'s records into the new folder `out`; -> the number of runs copied."""
    sweep, out = Path(sweep), Path(out)
    plan = load_plan(sweep)  # FileNotFoundError when `sweep` is not a sweep folder
    if out.exists() and any(out.iterdir()):
        raise SweepError(f"{out} exists and is not empty; share into a new folder (nothing is overwritten)")
    if out.resolve().is_relative_to(sweep.resolve()):
        raise SweepError(f"{out} is inside the sweep folder {sweep}; share into a folder outside it")
    out.mkdir(parents=True, exist_ok=True)
    for item in sorted(sweep.iterdir()):
        if item.is_file() and item.name != LOCK:
            shutil.copy2(item, out / item.name)
    runs = [sweep / "runs" / run["name"] for run in plan["runs"]]
    for folder in runs:
        if folder.is_dir():
            _copy_run(folder, out / "runs" / folder.name)
    return len(runs)
