"""Process-group set-up from the launcher's environment (torchrun or accelerate launch)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Dist:
    """Join the process group when launched with WORLD_SIZE > 1 (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist()
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return Dist(rank, world, local)


def all_reduce_sum(value: float | int, d: Dist, device) -> float:
    if not d.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item()


class MainRankFailed(RuntimeError):
    """Rank 0 failed at work the other ranks were waiting for; its own log has the error."""


def on_main_first(d: Dist, work, device) -> None:
    """Run `work()` on rank 0 while the other ranks wait, then go on together. When it raises on rank 0,
    every rank raises (rank 0 its own error, the others MainRankFailed), so that none waits at a barrier
    that rank 0 never reaches until the launcher or the collective's timeout ends it."""
    error = None
    if d.is_main:
        try:
            work()
        except Exception as err:  # re-raised below, after the other ranks have heard of it
            error = err
    if d.enabled and all_reduce_sum(float(error is not None), d, device) > 0 and error is None:
        raise MainRankFailed(f"rank {d.rank}: rank 0 failed while preparing the run (see rank 0's error)")
    if error is not None:
        raise error


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def cleanup(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
