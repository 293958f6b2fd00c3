"""Run metrics: one JSON object per logged step in <run>/metrics.jsonl (TensorBoard optional)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mm1.layout import RunDir


class MetricsWriter:
    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.path = RunDir(run_dir).metrics
        self.file = self.path.open("a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

    def drop_after(self, step: int) -> None:
        """Forget the records of steps after `step` (a resume from `step` logs them again)."""
        self.file.close()
        kept = [line for line in self.path.read_text().splitlines(keepends=True)
                if line.strip() and _step(line) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)
        self.file = self.path.open("a")

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key != "step":
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


class Throughput:
    """Tokens and model FLOPs per second since the last call."""

    def __init__(self):
        self.last, self.tokens, self.flops = time.perf_counter(), 0, 0

    def add(self, tokens: int, flops: int = 0) -> None:
        self.tokens += tokens
        self.flops += flops

    def rates(self) -> tuple[float, float]:
        now = time.perf_counter()
        dt = max(now - self.last, 1e-9)
        rates = self.tokens / dt, self.flops / dt
        self.last, self.tokens, self.flops = now, 0, 0
        return rates


def _step(line: str) -> float:
    try:
        return json.loads(line).get("step", float("inf"))
    except ValueError:  # a line cut short by a kill
        return float("inf")


def read_metrics(run_dir) -> list[dict]:
    path = RunDir(run_dir).metrics
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
