"""MM1's learning-rate law, fitted from an lr sweep at several model sizes.

For each size, the best run (lowest final loss, or highest eval average) gives
one point (N, lr*), N = the decoder's non-embedding parameters. Least squares in
log space, ln lr* = a ln N + b, gives a and b; MM1 reports a = -0.4214,
b = -0.5535 from 9M / 85M / 302M / 1.2B decoders.
"""
from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass

MM1_LAW = (-0.4214, -0.5535)


@dataclass
class LrFit:
    a: float
    b: float
    points: list[tuple[float, float]]  # (N, best lr) per size
    notes: list[str]  # e.g. a best lr at the edge of the swept range

    def lr(self, n: float) -> float:
        return math.exp(self.a * math.log(n) + self.b)


def fit_log_linear(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least squares of ln y = a ln x + b; needs two distinct x."""
    xs, ys = [math.log(x) for x, _ in points], [math.log(y) for _, y in points]
    if len(set(xs)) < 2:
        raise ValueError(f"the lr law needs best learning rates at two or more model sizes, got {len(set(xs))}")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return a, my - a * mx


def _run_value(rows: list[dict], select: str) -> float | None:
    """The selection value of one run (its rows share the run): final loss, or minus the eval average."""
    if select == "final_loss":
        return rows[0].get("final_loss")
    scores = [r["score"] for r in rows if r.get("task")]
    return -statistics.fmean(scores) if scores else None


def best_points(rows: list[dict], size_axis: str, select: str) -> tuple[list[tuple[float, float]], list[str]]:
    """One (N, best lr) point per size from the finished runs (seeds averaged per lr)."""
    by_run: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        if row["status"] == "finished":
            by_run[row["run"]].append(row)
    by_size: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    sizes_n: dict[str, float] = {}
    for run_rows in by_run.values():
        first, value = run_rows[0], _run_value(run_rows, select)
        if value is None or first.get("peak_lr") is None or not first.get("decoder_non_embedding"):
            continue
        by_size[first[size_axis]][float(first["peak_lr"])].append(value)
        sizes_n[first[size_axis]] = float(first["decoder_non_embedding"])
    points, notes = [], []
    for size, by_lr in by_size.items():
        means = {lr: statistics.fmean(v) for lr, v in by_lr.items()}
        best = min(means, key=means.get)
        if len(means) > 1 and best in (min(means), max(means)):
            notes.append(f"size {size}: the best lr {best:g} is at the edge of the sweep; the fit is biased there")
        points.append((sizes_n[size], best))
    return sorted(points), notes


def fit_lr_law(rows: list[dict], size_axis: str, select: str = "final_loss") -> LrFit:
    points, notes = best_points(rows, size_axis, select)
    a, b = fit_log_linear(points)
    return LrFit(a, b, points, notes)


def format_fit(fit: LrFit) -> str:
    ra, rb = MM1_LAW
    lines = [f"lr = exp(a ln N + b) with a = {fit.a:.4f}, b = {fit.b:.4f} (MM1: a = {ra}, b = {rb})", "",
             "| N (decoder non-embedding) | best lr | fitted lr | MM1's law |", "|---|---|---|---|"]
    for n, lr in fit.points:
        lines.append(f"| {n:,.0f} | {lr:.3g} | {fit.lr(n):.3g} | {math.exp(ra * math.log(n) + rb):.3g} |")
    return "\n".join(lines + [f"- {note}" for note in fit.notes]) + "\n"
