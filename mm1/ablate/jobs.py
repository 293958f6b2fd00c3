"""Who runs a sweep and its runs: the sweep lock (with its owner) and each run's `job.json`.

    with sweep_lock(out, "slurm"): ...     # one sweep per folder; the lock file names its pid and host
    lock_owner(out)                        # that record while a sweep holds the lock, else None
    write_job(folder, "slurm", "1234")     # <run>/job.json: launcher, job id, when
    read_job(folder)                       # the record, or None

A local sweep's job id is `host:pid` of the sweep process; a Slurm job's is its Slurm id.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

JOB, LOCK = "job.json", ".sweep.lock"


class SweepLocked(RuntimeError):
    """Another sweep runs in the folder."""


def local_job_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def sweep_lock(out: Path, launcher: str):
    with open(Path(out) / LOCK, "a+") as f:  # "a+": a second sweep must not empty the owner's record
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = lock_owner(out) or {}
            raise SweepLocked(f"another sweep is running in {out} (job {owner.get('job_id', '?')}, "
                              f"launcher {owner.get('launcher', '?')})") from None
        f.truncate(0)
        f.write(json.dumps({"job_id": local_job_id(), "launcher": launcher, "since": time.time()}) + "\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)


def lock_owner(out: Path) -> Optional[dict]:
    """The record of the sweep holding the folder's lock; None when no sweep holds it."""
    path = Path(out) / LOCK
    if not path.is_file():
        return None
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            try:
                return json.loads(f.read() or "{}")
            except ValueError:
                return {}
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


def write_job(folder: Path, launcher: str, job_id: str, **extra) -> dict:
    record = {"launcher": launcher, "job_id": job_id, "submitted": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}
    tmp = Path(folder) / f".{JOB}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(Path(folder) / JOB)
    return record


def read_job(folder: Path) -> Optional[dict]:
    try:
        return json.loads((Path(folder) / JOB).read_text())
    except (OSError, ValueError):
        return None


def update_job(folder: Path, **fields) -> None:
    """Change fields of the run's job.json (a field set to None is removed)."""
    record = read_job(folder) or {"launcher": "?", "job_id": "?"}
    record.update(fields)
    launcher, job_id = record.pop("launcher"), record.pop("job_id")
    write_job(folder, launcher, job_id, **{k: v for k, v in record.items() if v is not None})
