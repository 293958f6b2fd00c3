"""The `slurm` launcher: each run is one Slurm job, submitted with submitit; the sweep watches the jobs.

A run's job asks for `launch.nodes` nodes with `launch.gpus_per_run` tasks on each (one process per
GPU; `--gpus-per-node` too unless `launch.request_gpus` is false), `--cpus-per-task`, `--time`,
`--partition`, `--account`, `--qos`, `--signal=<launch.signal>@<launch.signal_delay_s>` and the
extra options of `launch.sbatch`; its tasks run under `srun --kill-on-bad-exit=1`. Its files (batch
script, submitit's pickled call of mm1.ablate.slurm_job.RunJob, job logs) are in `<run>/slurm/`; its
id in `<run>/job.json`.

A sweep re-invoked while a run's job is queued or running watches that job instead of submitting
another. A job that ends leaves the run done, failed (error.json) or stopped (job.json `stopped`, or
cancelled / pre-empted / timed out): a stopped run resumes from its checkpoint in the next sweep.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

from mm1.ablate.execute import ERROR, is_finished
from mm1.ablate.jobs import read_job, write_job
from mm1.ablate.local import LaunchError
from mm1.ablate.spec import GridSpec, LaunchSpec

SLURM_DIR = "slurm"
QUEUED = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "RESV_DEL_HOLD", "SPECIAL_EXIT"}
RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING", "SUSPENDED", "STOPPED"}
STOPPED = {"CANCELLED", "PREEMPTED", "TIMEOUT", "DEADLINE"}  # ended from outside: the run resumes next time
POLL_S = 5.0


def job_states() -> dict[str, str]:
    """Job id -> Slurm state of this user's jobs that the controller still knows (ended ones for a while)."""
    if shutil.which("squeue") is None:
        raise LaunchError("squeue not found: the slurm launcher runs where Slurm's commands are (a login node)")
    proc = subprocess.run(["squeue", "--me", "-h", "-t", "all", "-o", "%i|%T"], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        raise LaunchError(f"squeue failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return dict(line.split("|", 1) for line in proc.stdout.split() if "|" in line)


def sbatch_parameters(launch: LaunchSpec, name: str) -> dict:
    """submitit SlurmExecutor parameters (sbatch options) of one run's job."""
    params = {"job_name": name, "nodes": launch.nodes, "ntasks_per_node": launch.gpus_per_run, "time": launch.time,
              "stderr_to_stdout": True, "signal_delay_s": launch.signal_delay_s,
              "srun_args": ["--kill-on-bad-exit=1"],  # a failed rank ends the job; the others do not wait on it
              "additional_parameters": {"signal": f"{launch.signal}@{launch.signal_delay_s}", **launch.sbatch}}
    if launch.request_gpus:
        params["gpus_per_node"] = launch.gpus_per_run
    for key in ("cpus_per_task", "partition", "account", "qos"):
        if getattr(launch, key) is not None:
            params[key] = getattr(launch, key)
    return params


def submit(folder: Path, grid: GridSpec, name: str) -> str:
    """Submit the run in `folder` as one job; returns its id (sbatch's refusal is a LaunchError)."""
    import submitit

    from mm1.ablate.slurm_job import RunJob

    executor = submitit.SlurmExecutor(folder=folder / SLURM_DIR, max_num_timeout=0)
    executor.update_parameters(**sbatch_parameters(grid.launch, f"mm1-{grid.name}-{name}"))
    try:
        with submitit.helpers.clean_env():  # a sweep started inside a job must not pass that job's variables
            job = executor.submit(RunJob(str(folder), grid.eval, grid.launch.signal))
    except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError) as err:
        raise LaunchError(f"sbatch refused the job of {name}: {err}") from None
    return str(job.job_id)


def log_tail(folder: Path, job_id: str, lines: int = 25) -> str:
    logs = sorted((folder / SLURM_DIR).glob(f"{job_id}_*_log.out"))
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def settle(folder: Path, grid: GridSpec, job_id: str, state: Optional[str]) -> tuple[str, Optional[dict]]:
    """What a job that ended left: ("done" | "failed" | "stopped", the error record of a failure)."""
    if is_finished(folder, grid):
        return "done", None
    if (folder / ERROR).is_file():
        return "failed", json.loads((folder / ERROR).read_text())
    job = read_job(folder) or {}
    if job.get("stopped") or state in STOPPED or state is None:
        return "stopped", None
    error = {"stage": "slurm", "returncode": None, "log_tail": log_tail(folder, job_id),
             "error": f"job {job_id} ended {state} before the run recorded a result (see {folder / SLURM_DIR})"}
    (folder / ERROR).write_text(json.dumps(error, indent=2) + "\n")
    return "failed", error


def run_slurm(grid: GridSpec, todo: list, outcome, log, wait: bool = True) -> None:
    """Submit every run of `todo` without a live job, then (`wait`) watch the jobs until they end."""
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise LaunchError("the slurm launcher submits with submitit: pip install -e '.[slurm]'") from None
    states = job_states()
    live = {}  # job id -> (run, folder)
    for run, folder in todo:
        job = read_job(folder) or {}
        state = states.get(str(job.get("job_id"))) if job.get("launcher") == "slurm" else None
        if state in QUEUED | RUNNING:
            log(f"mm1 ablate: {run.name}: job {job['job_id']} is {state.lower()}; watching it")
            live[job["job_id"]] = (run, folder)
            continue
        (folder / ERROR).unlink(missing_ok=True)
        job_id = submit(folder, grid, run.name)
        write_job(folder, "slurm", job_id, slurm_dir=str(folder / SLURM_DIR))
        log(f"mm1 ablate: submitted {run.name} as job {job_id}")
        live[job_id] = (run, folder)
    if not wait:
        outcome.submitted = [run.name for run, _ in live.values()]
        return
    try:
        _watch(grid, live, outcome, log)
    except KeyboardInterrupt:
        outcome.submitted = [run.name for run, _ in live.values()]


def _watch(grid: GridSpec, live: dict, outcome, log) -> None:
    while live:
        time.sleep(POLL_S)
        states = job_states()
        for job_id in [j for j in live if states.get(j) not in QUEUED | RUNNING]:
            run, folder = live.pop(job_id)
            state, error = settle(folder, grid, job_id, states.get(job_id))
            if state == "stopped":
                outcome.stopped = True
                log(f"mm1 ablate: stopped {run.name} (job {job_id} {(states.get(job_id) or 'ended').lower()}); "
                    "the next sweep resumes it from its checkpoint")
            else:
                outcome.record(run.name, error, log)
