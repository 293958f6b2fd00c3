"""Run a grid's runs, each in `<out>/runs/<name>/`, resumably and `jobs` at a time.

    plan = Plan(grid, runs, configs, preset)   # from mm1.ablate.grid
    outcome = run_sweep(plan, out, jobs=2)

Re-running the same sweep skips finished runs (train.done and eval.done), resumes
unfinished ones from their latest checkpoint (`--resume auto`) and retries failed
ones. A failed run is recorded (error.json, and a row in results.csv) while the
others go on. A run folder written for a different config is an error, named,
before anything runs. SIGINT / SIGTERM stop the sweep cleanly: every running
pretrain writes a checkpoint and exits; the next sweep continues from there.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import queue
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from mm1.ablate.execute import EVAL_DONE, TRAIN_DONE, Children, Stopped, execute_run
from mm1.ablate.grid import RunSpec
from mm1.ablate.spec import GridSpec
from mm1.config import Config, dump_yaml

PLAN = "plan.json"


class SweepError(RuntimeError):
    """The sweep cannot start (a run folder from another config, another sweep in the same folder)."""


@dataclass
class Plan:
    grid: GridSpec
    runs: list[RunSpec]
    configs: list[Config]
    preset: Optional[str] = None


@dataclass
class SweepOutcome:
    skipped: list[str]  # finished before this sweep
    finished: list[str]
    failed: dict[str, dict]  # name -> error record
    stopped: bool = False


def run_folder(out: Path, run: RunSpec) -> Path:
    return out / "runs" / run.name


def is_finished(folder: Path, grid: GridSpec) -> bool:
    return (folder / TRAIN_DONE).is_file() and (grid.eval is None or (folder / EVAL_DONE).is_file())


def _first_difference(old, new, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    return f"{path}: {old!r} there, {new!r} now"


def run_record(run: RunSpec, grid: GridSpec) -> dict:
    return {**dataclasses.asdict(run), "eval": dataclasses.asdict(grid.eval) if grid.eval else None}


def prepare_folder(out: Path, run: RunSpec, cfg: Config, grid: GridSpec) -> Path:
    """Write recipe.yaml and run.json, or check that an existing folder holds the same run."""
    import yaml

    folder = run_folder(out, run)
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, dir=str(folder)))
    recipe, record = dump_yaml(cfg), run_record(run, grid)
    if (folder / "recipe.yaml").is_file():
        old_cfg = yaml.safe_load((folder / "recipe.yaml").read_text())
        old_rec = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        if old_cfg != yaml.safe_load(recipe) or old_rec.get("eval") != record["eval"]:
            diff = _first_difference({"config": old_cfg, "eval": old_rec.get("eval")},
                                     {"config": yaml.safe_load(recipe), "eval": record["eval"]})
            raise SweepError(f"{folder} holds a different run ({diff}); use another --out or delete that folder")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.yaml").write_text(recipe)
    (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder


def write_plan(out: Path, plan: Plan) -> None:
    grid = {k: v for k, v in dataclasses.asdict(plan.grid).items() if k != "presets"}
    doc = {"grid": grid, "preset": plan.preset, "runs": [dataclasses.asdict(r) for r in plan.runs]}
    (out / PLAN).write_text(json.dumps(doc, indent=2) + "\n")


@contextlib.contextmanager
def sweep_lock(out: Path):
    with open(out / ".sweep.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepError(f"another sweep is running in {out}") from None
        yield


@contextlib.contextmanager
def stop_on_signals(children: Children):
    """SIGINT / SIGTERM ask every child to checkpoint and exit (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, lambda *_: children.stop()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def worker_slots(jobs: int) -> tuple[int, list[Optional[int]]]:
    """Torch threads per job (the usable CPUs split evenly) and one GPU per job slot when GPUs exist."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    import torch

    gpus = torch.cuda.device_count()
    return max(1, cpus // jobs), [i % gpus if gpus else None for i in range(jobs)]


def run_sweep(plan: Plan, out: Path, jobs: int = 1, log: Callable[[str], None] = print) -> SweepOutcome:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if jobs < 1:
        raise SweepError(f"--jobs must be >= 1, got {jobs}")
    with sweep_lock(out):
        folders = [prepare_folder(out, r, c, plan.grid) for r, c in zip(plan.runs, plan.configs)]
        write_plan(out, plan)
        done = [is_finished(f, plan.grid) for f in folders]
        todo = [(r, f) for r, f, d in zip(plan.runs, folders, done) if not d]
        outcome = SweepOutcome(skipped=[r.name for r, d in zip(plan.runs, done) if d], finished=[], failed={})
        log(f"mm1 ablate: {len(plan.runs)} runs, {len(outcome.skipped)} already finished, {len(todo)} to run, "
            f"{jobs} at a time; folder {out}")
        _execute(plan.grid, todo, jobs, outcome, log)
    return outcome


def _execute(grid: GridSpec, todo: list, jobs: int, outcome: SweepOutcome, log) -> None:
    threads, gpus = worker_slots(jobs)
    slots: queue.Queue = queue.Queue()
    for gpu in gpus:
        slots.put(gpu)
    children, lock = Children(), threading.Lock()

    def one(run: RunSpec, folder: Path) -> None:
        gpu = slots.get()
        try:
            log(f"mm1 ablate: start {run.name}")
            error = execute_run(children, folder, grid.eval, threads, gpu)
        except Stopped:
            with lock:
                outcome.stopped = True
            return
        finally:
            slots.put(gpu)
        with lock:
            if error is None:
                outcome.finished.append(run.name)
                log(f"mm1 ablate: done  {run.name}")
            else:
                outcome.failed[run.name] = error
                log(f"mm1 ablate: FAILED {run.name} ({error['stage']}): {error['error']}")

    with stop_on_signals(children), ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(one, r, f) for r, f in todo]:
            future.result()
