"""Finished run folders -> a tidy `results.csv` and per-configuration aggregates.

results.csv has one row per run x task x shots (the seed is a column), with the
grid's axis labels as columns. `score` is the eval score x100 averaged over the
demo trials (`score_std`: population std over trials). A run without scores
(failed, unfinished, or a train-only grid) has one row with an empty task and
its `status` and `error`. `final_loss` is the mean training loss logged over the
last 10% of the steps; `peak_lr` the run's resolved peak learning rate.
"""
from __future__ import annotations

import csv
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mm1.ablate.execute import ERROR, EVAL_DONE, TRAIN_DONE
from mm1.ablate.spec import RESULT_COLUMNS
from mm1.ablate.sweep import PLAN, REUSED
from mm1.layout import EvalDir, RunDir

FIXED = list(RESULT_COLUMNS)


def load_plan(out: Path) -> dict:
    path = Path(out) / PLAN
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {out} is not an `mm1 ablate` output folder")
    return json.loads(path.read_text())


def columns_of(plan: dict) -> list[str]:
    """Variant label columns, then the axes (the order of the grid file)."""
    grid = plan["grid"]
    return (list(grid["variants"][0]["labels"]) if grid["variants"] else []) + list(grid["axes"])


def title_of(plan: dict, column: str) -> str:
    """A column's name in tables and plots: the axis's `label`, else its name."""
    axis = plan["grid"]["axes"].get(column)
    return (axis or {}).get("label") or column


def final_loss(metrics: Path) -> float | None:
    if not metrics.is_file():
        return None
    records = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    losses = [(r["step"], r["loss"]) for r in records if "loss" in r and r["loss"] == r["loss"]]
    if not losses:
        return None
    last = max(step for step, _ in losses)
    tail = [loss for step, loss in losses if step >= 0.9 * last]
    return statistics.fmean(tail)


def data_text(data: dict | None) -> str | None:
    """A run's data in words, from its provenance.json: the synthetic benchmark's version, or the folder."""
    if not data:
        return None
    if data.get("synthetic_version") is not None:
        return f"the embedded synthetic benchmark, version {data['synthetic_version']} ({Path(data['root']).name})"
    return data["root"]


def _status(folder: Path, has_eval: bool) -> str:
    if (folder / TRAIN_DONE).is_file() and (not has_eval or (folder / EVAL_DONE).is_file()):
        return "finished"
    return "failed" if (folder / ERROR).is_file() else "unfinished"


def _run_info(folder: Path) -> dict:
    run = RunDir(folder)
    info: dict = {"final_loss": final_loss(run.metrics)}
    if run.config.is_file():
        info["peak_lr"] = (yaml.safe_load(run.config.read_text()).get("optim") or {}).get("lr")
    if run.params.is_file():
        params = json.loads(run.params.read_text())
        info["params"], info["decoder_non_embedding"] = params.get("total"), params.get("decoder_non_embedding")
    if run.provenance.is_file():
        made = json.loads(run.provenance.read_text())
        commit = (made.get("git_commit") or "")[:12] or None  # as git abbreviates it; provenance.json has it whole
        info["git_commit"] = f"{commit} with local changes" if commit and made.get("git_dirty") else commit
        info["data"] = data_text(made.get("data"))
    if (folder / REUSED).is_file():
        info["reused_from"] = json.loads((folder / REUSED).read_text())["from"]
    if (folder / TRAIN_DONE).is_file():
        info["train_seconds"] = json.loads((folder / TRAIN_DONE).read_text()).get("seconds")
    if (folder / ERROR).is_file():
        err = json.loads((folder / ERROR).read_text())
        info["error"] = f"{err.get('stage')}: {err.get('error')}"
    return info


def _score_rows(folder: Path) -> list[dict]:
    """One row per (task, shots) of the run's eval/results.json, trials averaged."""
    path = EvalDir(RunDir(folder).eval).results
    if not (folder / EVAL_DONE).is_file() or not path.is_file():
        return []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for entry in json.loads(path.read_text())["runs"]:
        groups[(entry["task"], entry["metric"], entry["shots"])].append(entry)
    return [{"task": task, "metric": metric, "shots": shots,
             "score": statistics.fmean(e["score"] for e in group),
             "score_std": statistics.pstdev(e["score"] for e in group), "trials": len(group)}
            for (task, metric, shots), group in groups.items()]


def collect(out: Path) -> tuple[dict, list[dict]]:
    """-> (plan, rows) for every run of the plan, finished or not."""
    out = Path(out)
    plan = load_plan(out)
    has_eval = plan["grid"]["eval"] is not None
    rows = []
    for run in plan["runs"]:
        folder = out / "runs" / run["name"]
        base = {"run": run["name"], **run["labels"], "seed": run["seed"], "status": _status(folder, has_eval),
                **_run_info(folder)}
        scores = _score_rows(folder)
        rows += [{**base, **s} for s in scores] or [base]
    return plan, rows


def write_csv(rows: list[dict], columns: list[str], path: Path) -> None:
    header = FIXED[:1] + columns + FIXED[1:]
    with Path(path).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _fmt(row.get(k)) for k in header})


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


@dataclass
class Cell:
    """One configuration (axis labels), its per-seed values for every column of the summary."""
    labels: tuple[str, ...]
    values: dict[str, list[float]] = field(default_factory=dict)  # e.g. "0-shot" (task average), "synth_vqa 0-shot"
    seeds: int = 0
    tasks: set[str] = field(default_factory=set)  # the tasks scored
    runs: list[str] = field(default_factory=list)  # one per seed
    intervals: dict = field(default_factory=dict)  # column -> stats.Estimate (mm1.ablate.effects.add_intervals)


def shot_column(shots: int, task: str | None = None) -> str:
    return f"{task} {shots}-shot" if task else f"{shots}-shot"


def aggregate(rows: list[dict], columns: list[str]) -> list[Cell]:
    """One cell per configuration of the finished runs, in the grid's order; seeds are pooled."""
    finished = [r for r in rows if r["status"] == "finished"]
    per_seed: dict[tuple, dict[int, list[dict]]] = defaultdict(lambda: defaultdict(list))
    order: list[tuple] = []
    for row in finished:
        key = tuple(str(row[c]) for c in columns)
        if key not in per_seed:
            order.append(key)
        per_seed[key][row["seed"]].append(row)
    cells = []
    for key in order:
        cell = Cell(key, seeds=len(per_seed[key]))
        for seed_rows in per_seed[key].values():
            cell.runs.append(seed_rows[0]["run"])
            _add_seed(cell, seed_rows)
        cells.append(cell)
    return cells


def _add_seed(cell: Cell, seed_rows: list[dict]) -> None:
    loss = seed_rows[0].get("final_loss")
    if loss is not None:
        cell.values.setdefault("final loss", []).append(loss)
    scored = [r for r in seed_rows if r.get("task")]
    by_shots: dict[int, list[float]] = defaultdict(list)
    for r in scored:
        cell.tasks.add(r["task"])
        cell.values.setdefault(shot_column(r["shots"], r["task"]), []).append(r["score"])
        by_shots[r["shots"]].append(r["score"])
    for shots, scores in sorted(by_shots.items()):
        cell.values.setdefault(shot_column(shots), []).append(statistics.fmean(scores))
