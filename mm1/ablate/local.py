"""The `local` and `torchrun` launchers: runs as subprocesses of the sweep, one slot each.

    local     one `mm1 pretrain` per run, `--jobs` at a time, one GPU each (when there are GPUs)
    torchrun  `torchrun --nproc-per-node G` per run (G = launch.gpus_per_run); on a node of N GPUs,
              N / G runs at a time, each on its own CUDA_VISIBLE_DEVICES slice and rendezvous port;
              without GPUs, G gloo CPU processes per run, --jobs at a time

The CPU threads of the machine are split evenly between the processes of every slot.
"""
from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mm1.ablate.execute import Children, Stopped, execute_run, stage_env, train_command
from mm1.ablate.jobs import local_job_id, write_job
from mm1.ablate.spec import GridSpec, LaunchSpec


class LaunchError(ValueError):
    """Launcher settings that this machine cannot honour (more GPUs per run than it has)."""


@dataclass
class Slot:
    env: dict  # the stage environment: threads, CUDA_VISIBLE_DEVICES
    launch: list[str] = field(default_factory=list)  # train command prefix after python; [] = plain pretrain
    where: dict = field(default_factory=dict)  # devices / port, recorded in job.json


def _cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _gpus() -> int:
    import torch

    return torch.cuda.device_count()


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports (held open together while they are picked, so none repeats)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def local_slots(jobs: int) -> list[Slot]:
    gpus, threads = _gpus(), max(1, _cpus() // jobs)
    return [Slot(stage_env(threads, str(i % gpus) if gpus else None), where={"gpu": i % gpus} if gpus else {})
            for i in range(jobs)]


def torchrun_slots(jobs: Optional[int], per_run: int) -> list[Slot]:
    """Slots of `per_run` processes: disjoint GPU slices where there are GPUs, and one port per slot."""
    gpus = _gpus()
    if gpus:
        fit = gpus // per_run
        if fit < 1:
            raise LaunchError(f"launch.gpus_per_run: {per_run} GPUs per run, but this machine has {gpus}")
        if jobs is not None and jobs > fit:
            raise LaunchError(f"--jobs {jobs}: {gpus} GPUs hold {fit} runs of {per_run} GPUs at a time")
        jobs = fit if jobs is None else jobs
    jobs = jobs or 1
    threads = max(1, _cpus() // (jobs * per_run))
    slots = []
    for i, port in enumerate(free_ports(jobs)):
        devices = ",".join(str(g) for g in range(i * per_run, (i + 1) * per_run)) if gpus else None
        launch = ["-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", str(per_run),
                  "--master-addr", "127.0.0.1", "--master-port", str(port)]
        slots.append(Slot(stage_env(threads, devices), launch, {"devices": devices, "port": port}))
    return slots


def make_slots(launch: LaunchSpec, jobs: Optional[int]) -> list[Slot]:
    if launch.launcher == "torchrun":
        return torchrun_slots(jobs, launch.gpus_per_run)
    return local_slots(jobs or 1)


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


def run_local(grid: GridSpec, todo: list, slots: list[Slot], outcome, log) -> None:
    """Run `todo` [(RunSpec, folder)] in the slots, recording each run in `outcome` (a SweepOutcome)."""
    free: queue.Queue = queue.Queue()
    for slot in slots:
        free.put(slot)
    children, lock = Children(), threading.Lock()

    def one(run, folder: Path) -> None:
        slot = free.get()
        try:
            write_job(folder, grid.launch.launcher, local_job_id(), **slot.where)
            log(f"mm1 ablate: start {run.name}" + (f" ({_where(slot.where)})" if slot.where else ""))
            train = train_command(folder, slot.launch) if slot.launch else None
            error = execute_run(children, folder, grid.eval, slot.env, train)
        except Stopped:
            with lock:
                outcome.stopped = True
            return
        finally:
            free.put(slot)
        with lock:
            outcome.record(run.name, error, log)

    with stop_on_signals(children), ThreadPoolExecutor(max_workers=len(slots)) as pool:
        for future in [pool.submit(one, r, f) for r, f in todo]:
            future.result()


def _where(where: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in where.items() if v is not None)
