"""Evaluation outputs: predictions.jsonl, results.json, table.md and table.csv.

results.json holds the checkpoint, the settings, every resolved task spec, a
`config_hash` (sha256 of the settings, the resolved specs and the model config:
two results with the same hash were produced the same way), one entry per
(task, shots, trial) run and a summary of mean and std over trials (population
std, as OpenFlamingo reports it). Scores are x100 (VQA accuracy, exact match, CIDEr).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import statistics
import time
from collections import defaultdict
from pathlib import Path

from mm1 import __version__
from mm1.eval.config import EvalConfig
from mm1.eval.runner import RunResult, TaskData
from mm1.layout import EvalDir

RUN_FIELDS = ("task", "metric", "shots", "trial", "score", "num_samples", "num_errors", "errors", "seconds")


def config_hash(payload) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def summarize(runs: list[RunResult]) -> dict[str, dict[int, dict]]:
    """task -> shots -> {metric, mean, std, trials, num_samples, num_errors}."""
    groups: dict[tuple[str, int], list[RunResult]] = defaultdict(list)
    for run in runs:
        groups[(run.task, run.shots)].append(run)
    out: dict[str, dict[int, dict]] = defaultdict(dict)
    for (task, shots), group in groups.items():
        scores = [r.score for r in group]
        out[task][shots] = {
            "metric": group[0].metric, "mean": statistics.fmean(scores), "std": statistics.pstdev(scores),
            "trials": len(group), "num_samples": group[0].num_samples, "num_errors": sum(r.num_errors for r in group),
        }
    return dict(out)


def _cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    return f"{entry['mean']:.1f} ± {entry['std']:.1f}" if entry["trials"] > 1 else f"{entry['mean']:.1f}"


def format_table(summary: dict[str, dict[int, dict]], shots: list[int]) -> str:
    """Markdown: one row per task (plus their average), one column per shot count."""
    lines = ["| task | metric | " + " | ".join(f"{s}-shot" for s in shots) + " |",
             "|---|---|" + "---|" * len(shots)]
    for task, by_shots in summary.items():
        metric = next(iter(by_shots.values()))["metric"]
        lines.append(f"| {task} | {metric} | " + " | ".join(_cell(by_shots.get(s)) for s in shots) + " |")
    if len(summary) > 1:
        means = [[t[s]["mean"] for t in summary.values() if s in t] for s in shots]
        lines.append("| average | | " + " | ".join(f"{statistics.fmean(m):.1f}" if m else "-" for m in means) + " |")
    notes = [f"{task} {s}-shot: {e['num_errors']} of {e['num_samples'] * e['trials']} samples failed (scored 0)"
             for task, by_shots in summary.items() for s, e in sorted(by_shots.items()) if e["num_errors"]]
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else [])) + "\n"


def table_csv(summary: dict[str, dict[int, dict]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["task", "metric", "shots", "mean", "std", "trials", "num_samples", "num_errors"])
    for task, by_shots in summary.items():
        for shots, e in sorted(by_shots.items()):
            writer.writerow([task, e["metric"], shots, f"{e['mean']:.4f}", f"{e['std']:.4f}", e["trials"],
                             e["num_samples"], e["num_errors"]])
    return buf.getvalue()


def results_document(runs: list[RunResult], tasks: list[TaskData], settings: EvalConfig,
                     checkpoint: str, model_config: dict) -> dict:
    settings_dict = {k: v for k, v in dataclasses.asdict(settings).items() if k not in ("cache_dir", "every")}
    specs = {d.spec.name: dataclasses.asdict(d.spec) for d in tasks}
    summary = summarize(runs)
    return {
        "checkpoint": checkpoint,
        "mm1_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config_hash": config_hash({"settings": settings_dict, "tasks": specs, "model": model_config}),
        "settings": settings_dict,
        "tasks": {d.spec.name: {"spec": specs[d.spec.name], "num_queries": len(d.queries),
                                "demo_pool": len(d.pool), "skipped": d.skipped} for d in tasks},
        "runs": [{**{f: getattr(r, f) for f in RUN_FIELDS},
                  "samples_per_s": r.num_samples / r.seconds if r.seconds else None} for r in runs],
        "summary": {task: {str(s): e for s, e in by.items()} for task, by in summary.items()},
    }


def write_outputs(out_dir: Path | str, runs: list[RunResult], tasks: list[TaskData], settings: EvalConfig,
                  checkpoint: str, model_config: dict) -> str:
    """Write the four files into out_dir; returns the markdown table."""
    out = EvalDir(out_dir)
    out.root.mkdir(parents=True, exist_ok=True)
    with out.predictions.open("w") as f:
        for run in runs:
            for rec in run.records:
                f.write(json.dumps(dataclasses.asdict(rec)) + "\n")
    doc = results_document(runs, tasks, settings, checkpoint, model_config)
    out.results.write_text(json.dumps(doc, indent=2) + "\n")
    summary = summarize(runs)
    table = format_table(summary, settings.shots)
    out.table_md.write_text(table)
    out.table_csv.write_text(table_csv(summary))
    return table
