"""Grid files of a micro model, and sweep folders as a finished `mm1 ablate` leaves them, with made-up scores:
markers, eval/results.json, eval/predictions.jsonl (one record per task x shots x trial x query), metrics,
params and config."""
from __future__ import annotations

import dataclasses
import json
import statistics
import zlib

import numpy as np
import yaml

from mm1.ablate.sweep import Plan, write_plan
from mm1.eval.runner import SampleRecord
from tests.conftest import TINY

# A model small enough that a run is mostly process start-up.
MICRO = {
    "data.synth": None, "model.vision.width": 32, "model.vision.layers": 1, "model.vision.heads": 2,
    "model.connector.hidden": 32, "model.connector.num_tokens": 4, "model.decoder.hidden_size": 32,
    "model.decoder.num_layers": 1, "model.decoder.num_heads": 2, "data.seq_len": 96, "train.batch_size": 2,
    "train.log_every": 1, "optim.warmup_steps": 1,
}


def write_grid(path, synth_root=None, **fields):
    data = {"name": "micro", "base": str(TINY), "steps": 2,
            "set": {**MICRO, "data.root": str(synth_root or "no-data")}, **fields}  # no-data: a grid never run
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


TASKS = {"synth_caption": "cider", "synth_vqa": "vqa_accuracy", "synth_textvqa": "vqa_accuracy"}
QUERIES = 8


def fixture_score(labels: dict, seed: int, task: str, shots: int) -> float:
    """Made-up scores: resolution and tokens matter, the connector barely, k-shot adds, seeds jitter."""
    base = 10 + 8 * (labels["resolution"] == "64") + 5 * (labels["tokens"] == "16")
    return base + {"avg_pool": 0.0, "attention_pool": 0.3, "c_abstractor": 0.6}[labels["connector"]] \
        + shots + seed * 0.5 + len(task) * 0.1


def alternating(run: str, task: str, shots: int, query: int) -> float:
    """The same for every run, zero mean over an even number of queries: task scores stay fixture_score's."""
    return 2.0 if query % 2 else -2.0


def run_noise(sd: float):
    """Independent noise per run, task, shots and query (x100 scale), repeatable."""
    def noise(run: str, task: str, shots: int, query: int) -> float:
        return sd * np.random.default_rng(zlib.crc32(f"{run}/{task}/{shots}/{query}".encode())).standard_normal()
    return noise


def _records(run, task: str, shots: int, values: list[float]) -> list[str]:
    return [json.dumps(dataclasses.asdict(SampleRecord(task, shots, 0, f"q{q}", f"img{q}", "what?", ["a", "b"], [],
                                                       "a", "a", v / 100))) for q, v in enumerate(values)]


def write_fixture_sweep(out, grid, runs, score=fixture_score, lr=None, loss=None, noise=alternating,
                        queries=QUERIES, predictions=True):
    """Each task's query scores are score(...) + noise(...); results.json holds their mean, as mm1 eval does."""
    write_plan(out, Plan(grid, runs, [], "tiny"))
    for run in runs:
        folder = out / "runs" / run.name
        (folder / "eval").mkdir(parents=True)
        for marker in ("train.done", "eval.done"):
            (folder / marker).write_text(json.dumps({"seconds": 1.0}))
        results, lines = [], []
        for t, m in TASKS.items():
            for k in (grid.eval.shots if grid.eval else []):
                values = [score(run.labels, run.seed, t, k) + noise(run.name, t, k, q) for q in range(queries)]
                results.append({"task": t, "metric": m, "shots": k, "trial": 0, "score": statistics.fmean(values)})
                lines += _records(run, t, k, values)
        (folder / "eval" / "results.json").write_text(json.dumps({"runs": results}))
        if predictions:
            (folder / "eval" / "predictions.jsonl").write_text("\n".join(lines) + "\n")
        final = loss(run.labels) if loss else 1.0
        (folder / "metrics.jsonl").write_text(
            "\n".join(json.dumps({"step": s, "loss": final + (100 - s) / 100}) for s in (1, 50, 95, 100)))
        n = {"S": 1e6, "M": 1e7, "L": 1e8}.get(run.labels.get("size"), 5e6)
        (folder / "params.json").write_text(json.dumps({"total": 2 * n, "decoder_non_embedding": n}))
        (folder / "config.yaml").write_text(yaml.safe_dump({"optim": {"lr": lr(run.labels) if lr else 1e-3}}))
