"""Per-query scores of a sweep as pandas tables: each finished run's eval/predictions.jsonl with its labels.

    scores = load_scores(out, plan, rows)   # rows from mm1.ablate.results.collect
    scores.frame                            # tidy: run, labels, seed, task, shots, id, score
    scores.matrix("synth_vqa", 0)           # runs x query ids

`score` is the query's score x100 (VQA accuracy, or its image's CIDEr-D), averaged over the demo trials, so
the mean over a run's queries is the task score of results.csv. A task whose per-query records are missing
for some run, or disagree with its results.json (other query ids, another mean), is kept at run level: one
pseudo query per run carrying the task score, whose intervals come from the seeds only (`seeds_only`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mm1.ablate.results import columns_of
from mm1.ablate.stats import Resample, draw
from mm1.layout import EvalDir, RunDir

PSEUDO = "*"  # the query id of a run-level task score
KEYS = ["run", "task", "shots", "id"]


@dataclass
class Scores:
    runs: pd.DataFrame  # index run: the grid's label columns (text) and seed, of the finished runs
    frame: pd.DataFrame  # one row per run x task x shots x query
    loss: pd.Series  # run -> final training loss (NaN where none was logged)
    seeds_only: list[str]  # tasks scored without per-query records
    resample: Resample
    matrices: dict[tuple[str, int], pd.DataFrame] = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return sorted(self.frame["task"].unique())

    def matrix(self, task: str, shots: int) -> pd.DataFrame:
        """Runs x query ids (the resample's order) of one task and shot count."""
        return self.matrices[(task, shots)]

    def of_seed(self, seed: int) -> Scores:
        """The runs of one seed, with the bootstrap draws that a sweep of that seed alone makes."""
        runs = self.runs[self.runs["seed"] == seed]
        queries = {task: counts.shape[1] for task, counts in self.resample.query_counts.items()}
        return Scores(runs, self.frame[self.frame["run"].isin(runs.index)], self.loss.reindex(runs.index),
                      self.seeds_only, draw([seed], queries), self.matrices)


def _predictions(folder: Path) -> pd.DataFrame | None:
    path = EvalDir(RunDir(folder).eval).predictions
    if not path.is_file() or not path.stat().st_size:
        return None
    records = pd.read_json(path, lines=True, dtype={"id": str})
    if not {"task", "shots", "id", "score"} <= set(records):
        return None
    return records[["task", "shots", "id", "score"]].assign(id=lambda d: d["id"].astype(str))


def _per_query(out: Path, runs: list[str]) -> pd.DataFrame:
    """Trial-averaged query scores x100 of the runs that have predictions.jsonl."""
    parts = [p.assign(run=run) for run in runs if (p := _predictions(out / "runs" / run)) is not None]
    if not parts:
        return pd.DataFrame(columns=KEYS + ["score"])
    frame = pd.concat(parts, ignore_index=True)
    return (frame.groupby(KEYS, as_index=False)["score"].mean()).assign(score=lambda d: 100 * d["score"])


def _consistent(queries: pd.DataFrame, task_scores: pd.DataFrame) -> bool:
    """Every run and shot count of the task has the same query ids, and their mean is its task score."""
    groups = queries.groupby(["run", "shots"])
    expected = task_scores.set_index(["run", "shots"])["score"]
    ids = groups["id"].apply(frozenset)
    if set(ids.index) != set(expected.index) or ids.nunique() != 1 or queries["score"].isna().any():
        return False
    return bool(np.allclose(groups["score"].mean().reindex(expected.index), expected, atol=1e-6))


def _finished(plan: dict, rows: list[dict]) -> pd.DataFrame:
    columns = columns_of(plan)
    done = [r for r in rows if r["status"] == "finished"]
    table = pd.DataFrame(done, columns=["run", *columns, "seed", "final_loss"]).drop_duplicates("run")
    return table.set_index("run").astype({c: str for c in columns})


def load_scores(out: Path | str, plan: dict, rows: list[dict]) -> Scores:
    runs = _finished(plan, rows)
    scored = pd.DataFrame([r for r in rows if r["status"] == "finished" and r.get("task")],
                          columns=["run", "task", "shots", "score"])
    queries = _per_query(Path(out), list(runs.index))
    parts, seeds_only = [], []
    for task, task_scores in scored.groupby("task"):
        mine = queries[queries["task"] == task]
        if _consistent(mine, task_scores):
            parts.append(mine)
        else:
            seeds_only.append(task)
            parts.append(task_scores.assign(id=PSEUDO))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=KEYS + ["score"])
    frame = frame.merge(runs.drop(columns="final_loss"), left_on="run", right_index=True)
    ids = {task: sorted(group["id"].unique()) for task, group in frame.groupby("task")}
    resample = draw(plan["grid"]["seeds"], {t: len(v) for t, v in ids.items() if len(v) > 1})
    matrices = {(task, shots): group.pivot(index="run", columns="id", values="score").reindex(columns=ids[task])
                for (task, shots), group in frame.groupby(["task", "shots"])}
    loss = runs["final_loss"].astype(float)
    return Scores(runs.drop(columns="final_loss"), frame, loss, seeds_only, resample, matrices)
