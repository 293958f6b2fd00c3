"""`mm1 ablate ... --status`: every run of a sweep folder with its state and job, from the run folders,
the sweep lock and (for Slurm jobs) squeue; nothing is changed.

States:
  pending   not finished and nothing runs it: not started, or stopped (a kill, scancel, a time limit
            without requeue); the next sweep starts it, resuming from its latest checkpoint
  queued    waiting: its Slurm job is pending (or requeued), or a live local sweep has not reached it
  running   its Slurm job runs, or a live local sweep runs it
  done      trained (train.done) and evaluated (eval.done, when the grid evaluates)
  failed    error.json: the stage that failed and why; the next sweep retries it
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mm1.ablate.execute import ERROR, EVAL_DONE, TRAIN_DONE
from mm1.ablate.jobs import lock_owner, read_job
from mm1.ablate.results import load_plan
from mm1.layout import RunDir

STATES = ("pending", "queued", "running", "done", "failed")


@dataclass
class RunState:
    name: str
    state: str
    job: str  # job id, or "-"
    detail: str


def _last_step(folder: Path) -> Optional[int]:
    metrics = RunDir(folder).metrics
    if not metrics.is_file():
        return None
    lines = [ln for ln in metrics.read_text().splitlines() if ln.strip()]
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return None


def _progress(folder: Path) -> str:
    import yaml

    step = _last_step(folder)
    if step is None:
        return ""
    recipe = folder / "recipe.yaml"
    steps = (yaml.safe_load(recipe.read_text()).get("train") or {}).get("steps") if recipe.is_file() else None
    return f"step {step}/{steps}" if steps else f"step {step}"


def _seconds(marker: Path) -> str:
    return f"{json.loads(marker.read_text()).get('seconds', '?')} s"


def run_state(folder: Path, has_eval: bool, slurm: dict, owner: Optional[dict]) -> RunState:
    """The state of one run; `slurm`: job id -> squeue state; `owner`: the live sweep's lock record."""
    job = read_job(folder) or {}
    job_id = str(job.get("job_id", "-"))
    if (folder / TRAIN_DONE).is_file() and (not has_eval or (folder / EVAL_DONE).is_file()):
        detail = f"train {_seconds(folder / TRAIN_DONE)}" + (f", eval {_seconds(folder / EVAL_DONE)}" if has_eval else "")
        return RunState(folder.name, "done", job_id, detail)
    progress = _progress(folder)
    if job.get("launcher") == "slurm" and job_id in slurm:
        squeue = slurm[job_id]
        from mm1.ablate.slurm import QUEUED, RUNNING

        if squeue in QUEUED:
            return RunState(folder.name, "queued", job_id, ", ".join(x for x in (squeue.lower(), progress) if x))
        if squeue in RUNNING:
            return RunState(folder.name, "running", job_id, progress)
    if (folder / ERROR).is_file():
        error = json.loads((folder / ERROR).read_text())
        return RunState(folder.name, "failed", job_id, f"{error.get('stage')}: {error.get('error')}")
    if owner is not None and owner.get("launcher") != "slurm":
        live = job.get("launcher") != "slurm" and job_id == owner.get("job_id")
        return RunState(folder.name, "running" if live else "queued", job_id if live else "-", progress)
    stopped = job.get("stopped")
    why = f"stopped by {stopped['signal']}" if stopped else (f"job ended {slurm[job_id].lower()}"
                                                               if job_id in slurm else "")
    return RunState(folder.name, "pending", job_id, ", ".join(x for x in (why, progress) if x) or "not started")


def sweep_status(out: Path) -> list[RunState]:
    out = Path(out)
    plan = load_plan(out)
    has_eval = plan["grid"].get("eval") is not None
    folders = [out / "runs" / run["name"] for run in plan["runs"]]
    slurm = {}
    if any((read_job(f) or {}).get("launcher") == "slurm" for f in folders):
        from mm1.ablate.local import LaunchError
        from mm1.ablate.slurm import job_states

        try:
            slurm = job_states()
        except LaunchError as err:  # the folders still tell what has finished, failed or stopped
            print(f"mm1: {err}; the Slurm jobs' states below come from their run folders only", file=sys.stderr)
    owner = lock_owner(out)
    return [run_state(f, has_eval, slurm, owner) for f in folders]


def format_status(states: list[RunState]) -> str:
    width = max([len(s.name) for s in states] + [3])
    jobs = max([len(s.job) for s in states] + [3])
    lines = [f"{'run':<{width}}  {'state':<8} {'job':<{jobs}}  detail"]
    lines += [f"{s.name:<{width}}  {s.state:<8} {s.job:<{jobs}}  {s.detail}".rstrip() for s in states]
    counts = [f"{sum(s.state == name for s in states)} {name}" for name in STATES]
    return "\n".join(lines + [f"{len(states)} runs: " + ", ".join(counts)]) + "\n"
