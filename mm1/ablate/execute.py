"""One run of a sweep: `mm1 pretrain`, then its evaluation with the grid's EvalConfig
(`python -m mm1.eval.evaluate`), each a subprocess, with done markers.

A run folder `<out>/runs/<name>/` holds:
  recipe.yaml       the run's resolved config (input of `mm1 pretrain`; output.dir = this folder)
  run.json          name, axis labels, seed, overrides and eval settings of the run
  train.log, eval.log   the subprocesses' output (appended, one header per attempt)
  train.done, eval.done markers (JSON: seconds, start and finish time) written only after a stage succeeded
  error.json        the failed stage, exit code and the end of its log (removed when the run is retried)
  job.json          who runs it: launcher, job id (a Slurm job, or host:pid of a local sweep), when
  slurm/            the Slurm launcher's job files (submitit's batch script, pickled call, job logs)
  config.yaml, metrics.jsonl, checkpoints/, checkpoint/, eval/   written by pretrain and eval
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

from mm1 import failure
from mm1.eval.config import EvalConfig
from mm1.layout import EvalDir, ModelDir, RunDir

TRAIN_DONE, EVAL_DONE, ERROR = "train.done", "eval.done", "error.json"


def is_finished(folder: Path, grid) -> bool:
    """Trained, and evaluated when the grid (a GridSpec) has an eval."""
    return (folder / TRAIN_DONE).is_file() and (grid.eval is None or (folder / EVAL_DONE).is_file())


class Stopped(Exception):
    """The sweep was asked to stop; the run is left unfinished and resumes next time."""


class Children:
    """The live subprocesses of a sweep, so that a stop request can reach all of them."""

    def __init__(self):
        self.lock, self.procs, self.stopping = threading.Lock(), set(), False

    def start(self, cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
        with self.lock:
            if self.stopping:
                raise Stopped()
            with log.open("a") as f:
                f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
                f.flush()
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
            self.procs.add(proc)
            return proc

    def finish(self, proc: subprocess.Popen) -> int:
        rc = proc.wait()
        with self.lock:
            self.procs.discard(proc)
        return rc

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Signal every child: pretrain writes a checkpoint at the next step boundary and exits."""
        with self.lock:
            self.stopping = True
            for proc in self.procs:
                proc.send_signal(signum)


def train_command(folder: Path, launch: list[str] = ()) -> list[str]:
    """`mm1 pretrain` of the run, resuming; `launch` starts it through a launcher (`python -m
    torch.distributed.run ...`) instead of plain `python`."""
    start = [sys.executable, *launch] if launch else [sys.executable]
    return [*start, "-m", "mm1", "pretrain", str(folder / "recipe.yaml"), "--resume", "auto"]


def eval_command(folder: Path) -> list[str]:
    """Score the run's checkpoint with the grid's EvalConfig (the "eval" entry of its run.json)."""
    run = RunDir(folder)
    return [sys.executable, "-m", "mm1.eval.evaluate", str(run.final), str(folder / "run.json"), str(run.eval)]


def _log_tail(log: Path, lines: int = 25) -> str:
    text = log.read_text(errors="replace") if log.is_file() else ""
    text = text.replace("\r", "\n")  # progress bars
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def _stage(children: Children, folder: Path, stage: str, cmd: list[str], done: Path, env: dict) -> Optional[dict]:
    """Run one stage; returns an error record or None; raises Stopped when a stop request cut it short."""
    start, failure_file = time.time(), folder / f"{stage}.failure.json"
    failure_file.unlink(missing_ok=True)
    rc = children.finish(children.start(cmd, folder / f"{stage}.log", {**env, failure.ENV: str(failure_file)}))
    run = RunDir(folder)
    output = ModelDir(run.final).weights if stage == "train" else EvalDir(run.eval).results
    if rc == 0 and output.is_file():
        done.write_text(json.dumps({"seconds": round(time.time() - start, 1), "started_at": round(start, 3),
                                    "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        return None
    if children.stopping:  # cut short by the stop request: unfinished, not failed
        raise Stopped()
    tail, died = _log_tail(folder / f"{stage}.log"), failure.read(failure_file)
    if rc == 0:
        why = f"exited 0 but wrote no {'checkpoint' if stage == 'train' else 'results'}"
    else:
        why = f"{died['type']}: {died['message']}" if died else f"exit code {rc} (no exception recorded; see the log)"
    return {"stage": stage, "returncode": rc, "error": why, "log_tail": tail}


def stage_env(threads: int, devices: Optional[str] = None, extra: Optional[dict] = None) -> dict:
    """The environment of a stage: torch threads, the GPUs it may see (`"0,1"`), launcher variables."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), **(extra or {}))
    if devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = devices
    return env


DIST_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def execute_run(children: Children, folder: Path, eval_cfg: Optional[EvalConfig], env: dict,
                train_cmd: Optional[list[str]] = None) -> Optional[dict]:
    """Train (resuming from the run's latest checkpoint; `train_cmd`, default one `mm1 pretrain`) and
    evaluate (one process), skipping finished stages. Returns None on success, else the error record
    (also written to error.json); raises Stopped when a stop request cut a stage short."""
    (folder / ERROR).unlink(missing_ok=True)
    error = None
    if not (folder / TRAIN_DONE).is_file():
        error = _stage(children, folder, "train", train_cmd or train_command(folder), folder / TRAIN_DONE, env)
    if error is None and eval_cfg is not None and not (folder / EVAL_DONE).is_file():
        one = {k: v for k, v in env.items() if k not in DIST_VARS}
        error = _stage(children, folder, "eval", eval_command(folder), folder / EVAL_DONE, one)
    if error is not None:
        (folder / ERROR).write_text(json.dumps(error, indent=2) + "\n")
    return error
