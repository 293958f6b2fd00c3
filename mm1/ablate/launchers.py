"""The launchers of `mm1 ablate` (`--launcher`, or `launch.launcher` in a grid file), one function each.

    launch_runs(grid, todo, jobs, outcome, log, wait)   # todo: [(RunSpec, run folder)] not yet finished

Every launcher keeps the same bookkeeping in the run folders (mm1.ablate.execute: done markers,
error.json; mm1.ablate.jobs: job.json), so a sweep started with one can be watched, resumed or
reported with another.
"""
from __future__ import annotations

from mm1.ablate.local import LaunchError, make_slots, run_local
from mm1.ablate.spec import LAUNCHERS, GridSpec

__all__ = ["LaunchError", "check_launch_args", "launch_runs"]


def _live_slurm_jobs(todo: list) -> list[str]:
    """Runs of `todo` whose Slurm job is still queued or running ("name (job id)")."""
    from mm1.ablate.jobs import read_job

    jobs = {run.name: (read_job(folder) or {}) for run, folder in todo}
    if not any(job.get("launcher") == "slurm" for job in jobs.values()):
        return []
    from mm1.ablate.slurm import QUEUED, RUNNING, job_states

    states = job_states()
    return [f"{name} (job {job['job_id']})" for name, job in jobs.items()
            if job.get("launcher") == "slurm" and states.get(str(job["job_id"])) in QUEUED | RUNNING]


def _local(grid: GridSpec, todo: list, jobs, outcome, log, wait: bool) -> None:
    live = _live_slurm_jobs(todo)
    if live:  # two trainings must never write one run folder
        raise LaunchError(f"{', '.join(live)}: a Slurm job still has it; watch it with --launcher slurm, or "
                          "scancel it first")
    run_local(grid, todo, make_slots(grid.launch, jobs), outcome, log)


def _slurm(grid: GridSpec, todo: list, jobs, outcome, log, wait: bool) -> None:
    from mm1.ablate.slurm import run_slurm

    run_slurm(grid, todo, outcome, log, wait)


RUNNERS = {"local": _local, "torchrun": _local, "slurm": _slurm}
assert tuple(RUNNERS) == LAUNCHERS


def check_launch_args(grid: GridSpec, jobs, wait: bool = True) -> None:
    """Command-line settings that do not fit the launcher, before any folder is written."""
    if not wait and grid.launch.launcher != "slurm":
        raise LaunchError(f"--no-wait: only the slurm launcher leaves runs going (launcher is {grid.launch.launcher})")
    if jobs is not None and jobs < 1:
        raise LaunchError(f"--jobs must be >= 1, got {jobs}")
    if jobs is not None and grid.launch.launcher == "slurm":
        raise LaunchError("--jobs: the slurm launcher submits one job per run; Slurm decides how many run at once")


def launch_runs(grid: GridSpec, todo: list, jobs, outcome, log, wait: bool = True) -> None:
    RUNNERS[grid.launch.launcher](grid, todo, jobs, outcome, log, wait)
