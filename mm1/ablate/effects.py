"""Statistics of the ablation tables, from the per-query scores: cell intervals and paired axis effects.

    est = cell_estimate(scores, runs, Metric(("synth_vqa",), (0,)))        # one table cell
    pairs = pair_runs(scores.runs, "resolution", "32", "64")               # runs equal on every other axis + seed
    effect = paired_estimate(scores, pairs, Metric(tasks, (0,)))           # mean of 64 px minus 32 px
    effects = axis_effects(plan, scores)                                   # every axis, first level -> each other

A paired effect is the mean over pairs of (B - A), each pair two runs that agree on every other axis and on
the seed; its interval resamples the pairs' seeds and the queries jointly, the same queries on both sides.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mm1.ablate.queries import Scores
from mm1.ablate.results import Cell, columns_of, shot_column
from mm1.ablate.stats import Estimate, Sample, estimate

LOSS = "final loss"


@dataclass(frozen=True)
class Metric:
    """The mean over these tasks and shot counts of the task scores; no tasks = the final training loss."""
    tasks: tuple[str, ...]
    shots: tuple[int, ...] = ()

    @property
    def column(self) -> str:
        """The summary column it fills ("0-shot", "synth_vqa 0-shot", "final loss")."""
        if not self.tasks:
            return LOSS
        return shot_column(self.shots[0], self.tasks[0] if len(self.tasks) == 1 else None)


def values(scores: Scores, runs: list[str], metric: Metric) -> list[tuple[str, np.ndarray]] | None:
    """The blocks of `metric` for `runs` in order: (task, runs x queries); None where a run lacks one."""
    if not metric.tasks:
        blocks = [(LOSS, scores.loss.reindex(runs).to_numpy()[:, None])]
    else:
        blocks = [(t, scores.matrices[(t, k)].reindex(runs).to_numpy()) if (t, k) in scores.matrices else (t, None)
                  for t in metric.tasks for k in metric.shots]
    if any(v is None or np.isnan(v).any() for _, v in blocks):
        return None
    return blocks


def run_sample(scores: Scores, runs: list[str], metric: Metric) -> Sample | None:
    blocks = values(scores, runs, metric) if runs else None
    return Sample(list(scores.runs.loc[runs, "seed"]), blocks) if blocks else None


def difference(scores: Scores, pairs: pd.DataFrame, metric_a: Metric, metric_b: Metric | None = None) -> Sample | None:
    """Per pair (columns run_a, run_b, seed): `metric_b` of run_b minus `metric_a` of run_a, query by query."""
    a = values(scores, list(pairs["run_a"]), metric_a) if len(pairs) else None
    b = values(scores, list(pairs["run_b"]), metric_b or metric_a) if len(pairs) else None
    if a is None or b is None:
        return None
    return Sample(list(pairs["seed"]), [(task, vb - va) for (task, va), (_, vb) in zip(a, b)])


def pair_runs(runs: pd.DataFrame, axis: str, a: str, b: str) -> pd.DataFrame:
    """run_a (axis = a) and run_b (axis = b) that agree on every other column and the seed, in grid order."""
    others = [c for c in runs.columns if c != axis]
    left = runs[runs[axis] == a].reset_index()
    right = runs[runs[axis] == b].reset_index()
    return left.merge(right, on=others, suffixes=("_a", "_b"))[["run_a", "run_b", *others]]


def cell_estimate(scores: Scores, runs: list[str], metric: Metric) -> Estimate | None:
    sample = run_sample(scores, runs, metric)
    return estimate(sample, scores.resample) if sample else None


def paired_estimate(scores: Scores, pairs: pd.DataFrame, metric: Metric) -> Estimate | None:
    sample = difference(scores, pairs, metric)
    return estimate(sample, scores.resample) if sample else None


def column_metrics(plan: dict, scores: Scores) -> list[Metric]:
    """The summary's score columns: the k-shot averages over tasks, then each task's k-shot; or the final loss."""
    ev = plan["grid"]["eval"]
    if not ev:
        return [Metric(())]
    tasks = tuple(scores.tasks)
    return [Metric(tasks, (k,)) for k in ev["shots"]] + [Metric((t,), (k,)) for t in tasks for k in ev["shots"]]


def add_intervals(plan: dict, scores: Scores, cells: list[Cell]) -> None:
    """Each cell's estimate of every summary column (the final loss included) over its runs."""
    metrics = dict.fromkeys(column_metrics(plan, scores) + [Metric(())])
    for cell in cells:
        cell.intervals = {m.column: cell_estimate(scores, cell.runs, m) for m in metrics}


@dataclass
class AxisEffect:
    axis: str
    start: str  # level A (the axis's first level)
    end: str  # level B
    pairs: int
    estimates: dict[str, Estimate | None]  # summary column -> mean of B - A over the pairs


def levels_of(plan: dict, axis: str) -> list[str]:
    """An axis's levels in the grid's order, among the planned runs."""
    return list(dict.fromkeys(str(r["labels"][axis]) for r in plan["runs"]))


def axis_effects(plan: dict, scores: Scores) -> list[AxisEffect]:
    """Each axis (and variant label) with two or more levels: its first level -> each other level."""
    metrics = column_metrics(plan, scores)
    out = []
    for axis in columns_of(plan):
        levels = levels_of(plan, axis)
        for level in levels[1:]:
            pairs = pair_runs(scores.runs, axis, levels[0], level)
            out.append(AxisEffect(axis, levels[0], level, len(pairs),
                                  {m.column: paired_estimate(scores, pairs, m) for m in metrics}))
    return out
