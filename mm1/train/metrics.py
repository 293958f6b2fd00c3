"""Run metrics: one JSON object per logged step in <run>/metrics.jsonl (TensorBoard optional)."""
from __future__ import annotations

import json
import time
from pathlib import Path


class MetricsWriter:
    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.file = self.path.open("a")
        self.tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))

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


def read_metrics(run_dir) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
