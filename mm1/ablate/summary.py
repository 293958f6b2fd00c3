"""`summary.md`: the paper-shaped table of an ablation (rows = configurations, columns = k-shot averages).

Cells are the mean over seeds, `± std` (sample std) when there are several; the
best mean of each column is in bold (highest score, lowest loss; none when the whole column ties). A second
table breaks the averages down per task and adds each run's final training loss; failed and unfinished runs are listed
with their errors.
"""
from __future__ import annotations

import statistics
from pathlib import Path

from mm1.ablate.results import Cell, aggregate, columns_of, shot_column


def title_of(plan: dict, column: str) -> str:
    axis = plan["grid"]["axes"].get(column)
    return (axis or {}).get("label") or column


def _cell_text(values: list[float] | None, bold: bool, digits: int = 1) -> str:
    if not values:
        return "-"
    text = f"{statistics.fmean(values):.{digits}f}"
    if len(values) > 1:
        text += f" ± {statistics.stdev(values):.{digits}f}"
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
        texts = [_cell_text(cell.values.get(m), bool(cell.values.get(m)) and statistics.fmean(cell.values[m])
                            == best.get(m), 3 if m == "final loss" else 1) for m in metrics]
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


def _header(plan: dict, cells: list[Cell]) -> list[str]:
    grid, ev = plan["grid"], plan["grid"]["eval"]
    seeds = sorted({c.seeds for c in cells})
    lines = [f"# Ablation: {grid['name']}" + (f" (preset `{plan['preset']}`)" if plan.get("preset") else ""), ""]
    if grid.get("description"):
        lines += [grid["description"].strip(), ""]
    steps = f"{grid['steps']} training steps" if grid.get("steps") else "the recipe's training steps"
    lines += [f"Each run: `{Path(grid['base']).name}` with its overrides, {steps}.", ""]
    tasks = ", ".join(tasks_of(cells)) or ev["tasks"] if ev else ""
    what = (f"Scores x100 (VQA accuracy, CIDEr) averaged over the tasks ({tasks}), {ev['limit'] or 'all'} "
            f"queries per task, {ev['trials']} demo draw(s) per k > 0." if ev else
            "Final training loss: mean of the losses logged over the last 10% of the steps.")
    seed_text = "/".join(map(str, seeds)) or "0"
    lines += [f"{what} Mean over {seed_text} seed(s) (± sample std when > 1); best of each column in bold.", ""]
    return lines


def summary_markdown(plan: dict, rows: list[dict], extra: str = "") -> str:
    cells = aggregate(rows, columns_of(plan))
    lines = _header(plan, cells)
    lines.append(markdown_table(plan, cells, main_metrics(plan)))
    detail = detail_metrics(cells, plan)
    if detail:
        lines += ["## Per task", "", markdown_table(plan, cells, detail)]
    if extra:
        lines += [extra.rstrip(), ""]
    problems = _problems(rows)
    if problems:
        lines += ["## Runs without results", "", *problems, ""]
    return "\n".join(lines).rstrip() + "\n"
