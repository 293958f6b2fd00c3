"""The `mm1` command (and `python -m mm1`): the one process setting that must come before torch loads
its OpenMP runtime, then mm1.cli.

OMP_WAIT_POLICY=PASSIVE: OpenMP threads sleep when they wait instead of spinning. With torch's default
of one thread per core, a spinning thread that shares its core with another busy process stalls every
parallel region; benchmarks/RESULTS.md ("The tiny recipe on a busy machine") has the measurements. A value
already in the environment is kept.
"""
from __future__ import annotations

import os


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from mm1.cli import main as cli_main

    return cli_main(argv)
