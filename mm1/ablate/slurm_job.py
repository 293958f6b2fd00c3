"""Inside a run's Slurm job: one task per process (nodes x gpus_per_run), each calling RunJob().

Each task starts `mm1 pretrain --resume auto` with the torch distributed environment taken from
Slurm's (RANK = SLURM_PROCID, WORLD_SIZE = SLURM_NTASKS, LOCAL_RANK = SLURM_LOCALID, MASTER_ADDR = the
first node of the job, MASTER_PORT from the job id: submitit's TorchDistributedEnvironment); rank 0
keeps the run's bookkeeping (mm1.ablate.execute) and evaluates after training, in the same job.

Stops: Slurm sends every process of the job `launch.signal` (default SIGUSR2) `signal_delay_s`
before the time limit, and SIGTERM on `scancel` or a pre-emption. pretrain checkpoints at the next
step boundary and exits; the task then records the stop in job.json. After the time-limit signal,
rank 0 requeues the job (`scontrol requeue`) if the run got further since the job started, and the
requeued job resumes from that checkpoint; a pre-empted job is requeued by Slurm itself, a cancelled
one resumes when the sweep is re-invoked.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

from mm1.ablate.execute import TRAIN_DONE, Children, Stopped, execute_run, stage_env, train_command
from mm1.ablate.jobs import update_job
from mm1.eval.config import EvalConfig
from mm1.layout import RunDir


def distributed_env() -> dict:
    """RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT from Slurm's variables."""
    from submitit.helpers import TorchDistributedEnvironment

    d = TorchDistributedEnvironment()
    return {"RANK": str(d.rank), "WORLD_SIZE": str(d.world_size), "LOCAL_RANK": str(d.local_rank),
            "LOCAL_WORLD_SIZE": str(d.local_world_size), "MASTER_ADDR": d.master_addr,
            "MASTER_PORT": str(d.master_port)}


def _threads(local_world: int) -> int:
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    return max(1, len(os.sched_getaffinity(0)) // local_world)


def checkpoint_step(folder: Path) -> Optional[str]:
    """The checkpoint `latest` names (written once a save is complete), or None. Read without importing the
    training stack: this process only watches pretrain, and a job's start-up time counts."""
    latest = RunDir(folder).latest
    return latest.read_text().strip() if latest.is_file() else None


class RunJob:
    """The call submitit pickles into the job: train (and evaluate) the run in `folder`."""

    def __init__(self, folder: str, eval_cfg: Optional[EvalConfig], signal_name: str = "USR2"):
        self.folder, self.eval_cfg, self.signal_name = folder, eval_cfg, signal_name

    def __call__(self) -> str:
        folder, env = Path(self.folder), distributed_env()
        rank = int(env["RANK"])
        env = stage_env(_threads(int(env["LOCAL_WORLD_SIZE"])), extra=env)
        children, received = Children(), []
        time_limit = getattr(signal, f"SIG{self.signal_name}")

        def on_signal(signum, frame) -> None:  # replaces submitit's handlers: pretrain checkpoints, then we act
            received.append(signum)
            children.stop(signum)

        for sig in {time_limit, signal.SIGTERM}:
            signal.signal(sig, on_signal)
        start_step = checkpoint_step(folder)
        if rank == 0:
            update_job(folder, started=time.strftime("%Y-%m-%dT%H:%M:%S"), stopped=None,
                       restarts=int(os.environ.get("SLURM_RESTART_COUNT", "0")), nodes=os.environ.get("SLURM_NODELIST"))
        try:
            error = execute_run(children, folder, self.eval_cfg, env) if rank == 0 else self._other_rank(children,
                                                                                                       folder, env)
        except Stopped:
            return self._stopped(folder, rank, received, time_limit, start_step)
        if error is not None:
            raise RuntimeError(f"run failed ({error['stage']}): {error['error']}")
        return "done"

    @staticmethod
    def _other_rank(children: Children, folder: Path, env: dict) -> None:
        """A rank > 0 trains only; rank 0 records the outcome."""
        if (folder / TRAIN_DONE).is_file():
            return None
        rc = children.finish(children.start(train_command(folder), folder / f"train.rank{env['RANK']}.log", env))
        if rc != 0 and children.stopping:
            raise Stopped()
        return None

    def _stopped(self, folder: Path, rank: int, received: list, time_limit: int, start_step) -> str:
        """Record the stop; after the time-limit signal, requeue when the run got further in this job."""
        if rank != 0:
            return "stopped"
        checkpoint = checkpoint_step(folder)
        requeue = time_limit in received and checkpoint is not None and checkpoint != start_step
        step = int(checkpoint.split("_")[1].split(".")[0]) if checkpoint else None
        update_job(folder, stopped={"signal": signal.Signals(received[-1]).name if received else "?", "step": step,
                                    "requeued": requeue, "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        if requeue:
            subprocess.run(["scontrol", "requeue", os.environ["SLURM_JOB_ID"]], check=False, timeout=60)
        return "stopped"
