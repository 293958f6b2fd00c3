"""Ablation plots as PNG, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

`plot_grid` follows the grid's `plot:` spec: one panel per level of `panels`
("shots" = one per k), x positions from the `groups` axes, one colour per
level of `hue`. Bars are grouped like MM1 Figure 4; lines suit a numeric x
(the lr sweep). Heights are means over seeds, error bars the 95% bootstrap intervals of mm1.ablate.stats
(seeds and queries resampled), as in summary.md.
"""
from __future__ import annotations

import itertools
import math
import textwrap
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mm1.ablate.effects import Metric, cell_estimate
from mm1.ablate.queries import Scores
from mm1.ablate.results import Cell, columns_of, title_of

SHOTS = "shots"


def _levels(plan: dict, cells: list[Cell], name: str | None) -> list[str | None]:
    """The levels of an axis (or the shot counts) in the grid's order; [None] for no axis."""
    if name is None:
        return [None]
    if name == SHOTS:
        ev = plan["grid"]["eval"]
        return [str(s) for s in ev["shots"]] if ev else [None]
    i = columns_of(plan).index(name)
    return list(dict.fromkeys(c.labels[i] for c in cells))


def _stats(plan: dict, scores: Scores, cells: list[Cell], fixed: dict[str, str | None]) -> tuple[float, float, float]:
    """(mean, below, above) over the runs of the cells matching `fixed` (axis -> label; "shots" picks the
    k-shot average, else the first); below / above: the distances to the 95% interval (0 when it has none)."""
    columns, ev = columns_of(plan), plan["grid"]["eval"]
    shots = fixed.get(SHOTS)
    metric = Metric(tuple(scores.tasks), (int(shots) if shots is not None else ev["shots"][0],)) if ev else Metric(())
    runs = [r for cell in cells if all(cell.labels[columns.index(k)] == v for k, v in fixed.items()
                                       if k != SHOTS and v is not None) for r in cell.runs]
    est = cell_estimate(scores, runs, metric)
    if est is None:
        return math.nan, 0.0, 0.0
    if est.low is None:
        return est.value, 0.0, 0.0
    return est.value, est.value - est.low, est.high - est.value


def _tick(plan: dict, axis: str, level) -> str:
    if axis == SHOTS:
        return f"{level}-shot"
    unit = (plan["grid"]["axes"].get(axis) or {}).get("unit")
    return f"{level} {unit}" if unit else (str(level) if len(plan["grid"]["axes"]) <= 1 else f"{axis}={level}")


def _group_label(plan: dict, groups: list[str], combo: tuple) -> str:
    return "\n".join(_tick(plan, g, v) for g, v in zip(groups, combo))


def _group_combos(plan: dict, cells: list[Cell], groups: list[str]) -> list[tuple]:
    if not groups:
        return [()]
    columns = columns_of(plan)
    if SHOTS in groups:
        return list(itertools.product(*[_levels(plan, cells, g) for g in groups]))
    return list(dict.fromkeys(tuple(c.labels[columns.index(g)] for g in groups) for c in cells))


def _draw_bars(ax, plan: dict, scores: Scores, cells: list[Cell], panel: dict, groups: list[str],
               hue: str | None) -> None:
    combos, hues = _group_combos(plan, cells, groups), _levels(plan, cells, hue)
    width = 0.8 / len(hues)
    colours = _colormap(len(hues))
    for j, h in enumerate(hues):
        stats = [_stats(plan, scores, cells, {**panel, **dict(zip(groups, combo)), **({hue: h} if hue else {})})
                 for combo in combos]
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(combos))]
        name = (f"{h}-shot" if hue == SHOTS else str(h)) if hue else None
        errors = [[s[1] for s in stats], [s[2] for s in stats]] if any(s[1] or s[2] for s in stats) else None
        bars = ax.bar(xs, [s[0] for s in stats], width, yerr=errors, label=name, color=colours[j],
                      capsize=2, edgecolor="black", linewidth=0.4)
        ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1, rotation=90 if len(combos) * len(hues) > 16 else 0)
    ax.set_xticks(range(len(combos)), [_group_label(plan, groups, c) for c in combos], fontsize=8)
    ax.set_xlabel(" x ".join("k-shot" if g == SHOTS else title_of(plan, g) for g in groups), fontsize=8)


def _draw_lines(ax, plan: dict, scores: Scores, cells: list[Cell], panel: dict, x_axis: str, hue: str | None,
                logx: bool) -> None:
    xs, hues = _levels(plan, cells, x_axis), _levels(plan, cells, hue)
    colours = _colormap(len(hues))
    for j, h in enumerate(hues):
        stats = [_stats(plan, scores, cells, {**panel, x_axis: x, **({hue: h} if hue else {})}) for x in xs]
        points = [(float(x), *s) for x, s in zip(xs, stats) if not math.isnan(s[0])]
        if points:
            name = (f"{h}-shot" if hue == SHOTS else str(h)) if hue else None
            ax.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[[p[2] for p in points],
                        [p[3] for p in points]], marker="o", capsize=2, label=name, color=colours[j])
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(title_of(plan, x_axis))


def _colormap(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def y_label(plan: dict) -> str:
    if plan["grid"]["eval"]:
        return "average over tasks, x100\n(VQA accuracy, CIDEr)"
    return "final training loss"


def plot_grid(plan: dict, scores: Scores, cells: list[Cell], path: Path) -> Path:
    spec = plan["grid"]["plot"]
    panels = _levels(plan, cells, spec["panels"])
    width = max(8.0, 3.2 * len(panels) + 1.5)
    fig = Figure(figsize=(width, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, level in zip(axes, panels):
        panel = {spec["panels"]: level} if spec["panels"] else {}
        if spec["kind"] == "lines":
            _draw_lines(ax, plan, scores, cells, panel, spec["groups"][0], spec["hue"], spec["logx"])
        else:
            _draw_bars(ax, plan, scores, cells, panel, spec["groups"], spec["hue"])
            ax.set_ylim(bottom=0)
        if level is not None:
            ax.set_title(f"{level}-shot" if spec["panels"] == SHOTS else f"{title_of(plan, spec['panels'])}: {level}")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(y_label(plan))
    if spec["hue"]:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=8, title_fontsize=8,
                   title=title_of(plan, spec["hue"]) if spec["hue"] != SHOTS else None)
    seeds = len(plan["grid"]["seeds"])
    drawn = "seeds and queries" if plan["grid"]["eval"] and len(scores.seeds_only) < len(scores.tasks) else "seeds"
    note = (f"mean of {seeds} seeds" if seeds > 1 else "one seed per configuration") + (
        f"; error bars: 95% bootstrap interval over {drawn}" if seeds > 1 or drawn != "seeds" else "")
    title = textwrap.fill(spec.get("title") or f"Ablation: {plan['grid']['name']}", int(width * 11))
    fig.suptitle(f"{title}\n({note})", fontsize=11)
    fig.savefig(path, dpi=150)
    return Path(path)


def plot_lr_fit(points: list[tuple[float, float]], a: float, b: float, path: Path,
                reference: tuple[float, float] | None = None) -> Path:
    """Best lr against non-embedding parameters N (log-log), the fitted law and, optionally, MM1's."""
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ns = [n for n, _ in points]
    lo, hi = min(ns) / 1.5, max(ns) * 1.5
    grid = [lo * (hi / lo) ** (i / 50) for i in range(51)]
    ax.scatter(ns, [lr for _, lr in points], color="black", zorder=3, label="best lr of the sweep")
    ax.plot(grid, [math.exp(a * math.log(n) + b) for n in grid], label=f"fit: exp({a:.4f} ln N {b:+.4f})")
    if reference is not None:
        ra, rb = reference
        ax.plot(grid, [math.exp(ra * math.log(n) + rb) for n in grid], linestyle="--",
                label=f"MM1: exp({ra:.4f} ln N {rb:+.4f})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("decoder non-embedding parameters N")
    ax.set_ylabel("peak learning rate")
    ax.set_title("Learning-rate law lr = exp(a ln N + b)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=150)
    return Path(path)
