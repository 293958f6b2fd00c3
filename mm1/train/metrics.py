"""Run metrics: one JSON object per logged step in <run>/metrics.jsonl, and the same records to the
optional loggers of mm1.train.loggers (TensorBoard, Weights & Biases)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from mm1.layout import RunDir


class MetricsWriter:
    """metrics.jsonl, and each record to every logger in `loggers` (write / resume_at / close)."""

    def __init__(self, run_dir: Path, loggers: tuple = ()):
        self.path = RunDir(run_dir).metrics
        self.file = self.path.open("a")
        self.loggers = list(loggers)

    def drop_after(self, step: int) -> None:
        """Forget the records of steps after `step` (a resume from `step` logs them again)."""
        self.file.close()
        kept = [line for line in self.path.read_text().splitlines(keepends=True)
                if line.strip() and _step(line) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(kept))
        os.replace(tmp, self.path)
        self.file = self.path.open("a")
        for logger in self.loggers:
            logger.resume_at(step)

    def write(self, record: dict) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for logger in self.loggers:
            logger.write(record)

    def close(self) -> None:
        self.file.close()
        for logger in self.loggers:
            logger.close()


class Progress:
    """What the run has trained on and for how long, since its first step (a resume restores it):
    tokens (non-padding positions, image tokens included), images, and training wall time."""

    def __init__(self):
        self.tokens, self.images, self.before = 0, 0, 0.0
        self.start = time.perf_counter()

    def start_clock(self) -> None:
        self.start = time.perf_counter()

    def add(self, tokens: int, images: int) -> None:
        self.tokens += tokens
        self.images += images

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def state(self) -> dict:
        return {"tokens": self.tokens, "images": self.images, "elapsed_s": self.elapsed()}

    def restore(self, state: dict) -> None:
        self.tokens, self.images, self.before = state["tokens"], state["images"], state["elapsed_s"]
        self.start_clock()

    def record(self) -> dict:
        return {"tokens_seen": self.tokens, "images_seen": self.images, "elapsed_s": round(self.elapsed(), 2)}


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


def scalars(record: dict) -> dict:
    """The numbers of a record but its step (what a scalar logger can plot; None, such as an unknown MFU, is left out)."""
    return {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def read_metrics(run_dir) -> list[dict]:
    path = RunDir(run_dir).metrics
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
