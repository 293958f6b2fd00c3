"""`summary.md`: the paper-shaped tables of an ablation (rows = configurations, columns = k-shot averages).

In order: a header (what the scores are, which mm1 commit trained the runs on which data, how a cell
reads); the Findings table (the grid's claims, mm1.ablate.findings); the main table; the Per task table,
which adds each configuration's final training loss; the Effects tables (paired axis effects,
mm1.ablate.effects); the runs without results.

A cell reads `mean ± std [low, high]`: the mean over seeds, the sample std over seeds (when there are
several) and the 95% bootstrap interval of mm1.ablate.stats, which resamples the seeds and the queries
(left out where nothing varies: one seed and no per-query records). The best mean of each column is in
bold (highest score, lowest loss; none when the whole column ties).
"""
from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path

from mm1.ablate.effects import AxisEffect
from mm1.ablate.findings import FindingResult
from mm1.ablate.results import Cell, columns_of, shot_column, title_of
from mm1.ablate.sections import effects_markdown, findings_markdown, per_seed_markdown
from mm1.ablate.stats import BOOTSTRAP_SEED, RESAMPLES

SYNTHETIC = ("Results on the built-in synthetic benchmark check that the pipeline detects effects built into a "
             "synthetic world; they do not confirm MM1's claims, which need real data.")


def _cell_text(cell: Cell, metric: str, bold: bool, digits: int = 1) -> str:
    values = cell.values.get(metric)
    if not values:
        return "-"
    text = f"{statistics.fmean(values):.{digits}f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.{digits}f}"
    est = cell.intervals.get(metric)
    if est is not None and est.low is not None:
        text += f" [{est.low:.{digits}f}, {est.high:.{digits}f}]"
    return f"**{text}**" if bold else text


def markdown_table(plan: dict, cells: list[Cell], metrics: list[str]) -> str:
    columns = columns_of(plan)
    best = {}
    for m in metrics:
        means = [statistics.fmean(c.values[m]) for c in cells if c.values.get(m)]
        if len(set(means)) > 1:  # a column where every cell ties has no best
            best[m] = min(means) if m == "final loss" else max(means)
    head = [title_of(plan, c) for c in columns] + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cell in cells:
        texts = [_cell_text(cell, m, bool(cell.values.get(m)) and statistics.fmean(cell.values[m]) == best.get(m),
                            3 if m == "final loss" else 1) for m in metrics]
        lines.append("| " + " | ".join(list(cell.labels) + texts) + " |")
    return "\n".join(lines) + "\n"


def main_metrics(plan: dict) -> list[str]:
    """The paper's columns: k-shot averages over tasks, or the final training loss for train-only grids."""
    ev = plan["grid"]["eval"]
    return [shot_column(s) for s in ev["shots"]] if ev else ["final loss"]


def tasks_of(cells: list[Cell]) -> list[str]:
    return sorted(set().union(*(c.tasks for c in cells)))


def detail_metrics(cells: list[Cell], plan: dict) -> list[str]:
    """Per task and k, then the final training loss (how far each run got)."""
    ev = plan["grid"]["eval"]
    if not ev:
        return []
    loss = ["final loss"] if any(c.values.get("final loss") for c in cells) else []
    return [shot_column(s, t) for t in tasks_of(cells) for s in ev["shots"]] + loss


def _problems(rows: list[dict]) -> list[str]:
    seen, lines = set(), []
    for row in rows:
        if row["status"] != "finished" and row["run"] not in seen:
            seen.add(row["run"])
            lines.append(f"- `{row['run']}`: {row['status']}" + (f" — {row['error']}" if row.get("error") else ""))
    return lines


def _reading(plan: dict, cells: list[Cell], seeds_only: list[str]) -> list[str]:
    """How a cell reads, and where its interval comes from."""
    seeds = "/".join(map(str, sorted({c.seeds for c in cells}))) or "0"
    drawn = ("the seeds and, within them, each task's scored queries (the same queries for every run)"
             if plan["grid"]["eval"] else "the seeds")
    lines = [f"Each cell: mean over {seeds} seed(s) ± sample std over the seeds (when > 1) [95% interval: a "
             f"bootstrap of {RESAMPLES} resamples, RNG seed {BOOTSTRAP_SEED}, drawing {drawn}; left out where "
             "nothing varies]. Best mean of each column in bold.", ""]
    if seeds_only:
        lines += [f"Per-query records (eval/predictions.jsonl) are missing or incomplete for {', '.join(seeds_only)}: "
                  "those intervals resample the seeds only.", ""]
    return lines


def _header(plan: dict, rows: list[dict], cells: list[Cell], seeds_only: list[str]) -> list[str]:
    grid, ev = plan["grid"], plan["grid"]["eval"]
    lines = [f"# Ablation: {grid['name']}" + (f" (preset `{plan['preset']}`)" if plan.get("preset") else ""), ""]
    if grid.get("description"):
        lines += [grid["description"].strip(), ""]
    steps = f"{grid['steps']} training steps" if grid.get("steps") else "the recipe's training steps"
    lines += [f"Each run: `{Path(grid['base']).name}` with its overrides, {steps}.", ""]
    tasks = ", ".join(tasks_of(cells)) or ev["tasks"] if ev else ""
    what = (f"Scores x100 (VQA accuracy, CIDEr) averaged over the tasks ({tasks}), {ev['limit'] or 'all'} "
            f"queries per task, {ev['trials']} demo draw(s) per k > 0." if ev else
            "Final training loss: mean of the losses logged over the last 10% of the steps.")
    lines += [what, ""]
    if any(t.startswith("synth_") for t in tasks_of(cells)):
        lines += [SYNTHETIC, ""]
    return lines + _made_by(rows) + _reading(plan, cells, seeds_only)


def _made_by(rows: list[dict]) -> list[str]:
    """Which mm1 commit trained the runs, on which data (from each run's provenance.json)."""
    runs = {r["run"]: r for r in rows if r.get("git_commit") or r.get("data")}
    if not runs:
        return []

    def listing(key: str) -> str:
        counts = Counter(r.get(key) or "unknown" for r in runs.values())
        if len(counts) == 1:
            return next(iter(counts))
        return "; ".join(f"{value} ({n} run{'s' * (n > 1)})" for value, n in counts.most_common())

    lines = [f"Trained by mm1 at commit {listing('git_commit')}, on {listing('data')}.", ""]
    copied = {name: r["reused_from"] for name, r in runs.items() if r.get("reused_from")}
    if copied:
        lines += ["Copied from other sweeps (`--reuse`): " + "; ".join(
            f"`{name}` was trained in {source}" for name, source in sorted(copied.items())) + ".", ""]
    return lines


def summary_markdown(plan: dict, rows: list[dict], cells: list[Cell], effects: list[AxisEffect] = (),
                     findings: list[FindingResult] = (), seeds_only: list[str] = (), extra: str = "") -> str:
    """`cells` from results.aggregate with effects.add_intervals; `effects` and `findings` as computed."""
    lines = _header(plan, rows, cells, list(seeds_only)) + findings_markdown(plan, list(findings))
    lines += per_seed_markdown(list(findings))
    lines += ["## Results", "", markdown_table(plan, cells, main_metrics(plan))]
    detail = detail_metrics(cells, plan)
    if detail:
        lines += ["## Per task", "", markdown_table(plan, cells, detail)]
    ev = plan["grid"]["eval"]
    lines += effects_markdown(plan, list(effects), ev["shots"] if ev else [], tasks_of(cells))
    if extra:
        lines += [extra.rstrip(), ""]
    problems = _problems(rows)
    if problems:
        lines += ["## Runs without results", "", *problems, ""]
    return "\n".join(lines).rstrip() + "\n"
