"""`mm1 plot RUN [RUN ...]`: the training loss of runs (and their evaluations during training) as a PNG,
from each run's metrics.jsonl, drawn with matplotlib's Agg canvas like the ablation plots."""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mm1.layout import RunDir
from mm1.train.metrics import read_metrics

X_AXES = {"step": ("step", "optimizer step"), "tokens": ("tokens_seen", "tokens seen"),
          "time": ("elapsed_s", "training wall time (s)")}  # --x -> (metrics key, axis label)
PNG_MAGIC = b"\x89PNG"
EVAL_AVERAGE = "eval/average/"  # + <k>shot: mm1.train.evaluation's mean over the tasks
SMOOTH = 0.9  # weight of the running mean drawn over the raw loss of a run with many logged steps


def load_run(run: str) -> list[dict]:
    path = RunDir(run).metrics
    if not path.is_file():
        raise FileNotFoundError(f"{run}: no {path.name} here; pass a run folder (output.dir of mm1 pretrain)")
    records = read_metrics(run)
    if not any("loss" in r for r in records):
        raise ValueError(f"{run}: {path} holds no logged loss yet")
    return records


def run_labels(runs: list[str]) -> list[str]:
    """Folder names where they tell the runs apart, else the paths as given."""
    names = [Path(r).resolve().name for r in runs]
    return names if len(set(names)) == len(names) else list(runs)


def _points(records: list[dict], x_key: str, y_key: str, run: str) -> tuple[list, list]:
    rows = [r for r in records if y_key in r and r[y_key] is not None and math.isfinite(r[y_key])]
    if rows and any(x_key not in r for r in rows):
        raise ValueError(f"{run}: its metrics.jsonl has no {x_key} (logged before mm1 recorded it); use --x step")
    return [r[x_key] for r in rows], [r[y_key] for r in rows]


def _smoothed(values: list[float]) -> list[float]:
    out, mean = [], values[0]
    for v in values:
        mean = SMOOTH * mean + (1 - SMOOTH) * v
        out.append(mean)
    return out


def eval_means(records: list[dict]) -> dict[int, list[tuple[int, float]]]:
    """k -> [(step, eval/average/<k>shot)]: the mean over the tasks evaluated during training."""
    by_shots: dict[int, list[tuple[int, float]]] = {}
    for r in records:
        for key, value in r.items():
            if key.startswith(EVAL_AVERAGE) and isinstance(value, (int, float)):
                by_shots.setdefault(int(key[len(EVAL_AVERAGE):-len("shot")]), []).append((r["step"], value))
    return dict(sorted(by_shots.items()))


def _draw_loss(ax, runs, labels, all_records, x: str) -> None:
    x_key, x_label = X_AXES[x]
    for i, (run, label, records) in enumerate(zip(runs, labels, all_records)):
        xs, ys = _points(records, x_key, "loss", run)
        colour = f"C{i % 10}"
        if len(ys) > 20:
            ax.plot(xs, ys, color=colour, alpha=0.3, linewidth=0.8)
            ax.plot(xs, _smoothed(ys), color=colour, label=f"{label} (running mean)")
        else:
            ax.plot(xs, ys, color=colour, marker="o", markersize=3, label=label)
    ax.set_xlabel(x_label)
    if x != "time":
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _draw_eval(ax, labels, all_records) -> None:
    for i, (label, records) in enumerate(zip(labels, all_records)):
        for j, (shots, points) in enumerate(eval_means(records).items()):
            ax.plot([s for s, _ in points], [v for _, v in points], color=f"C{i % 10}", marker="os^Dv"[j % 5],
                    linestyle=("-", "--", ":", "-.")[j % 4], label=f"{label}, {shots}-shot")
    ax.set_xlabel("optimizer step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("mean over the evaluated tasks (x100)")
    ax.set_title("Evaluation during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def check_out(out: Path) -> None:
    """The PNG may replace an earlier plot, never another file."""
    if out.is_dir() or (out.exists() and out.read_bytes()[:4] != PNG_MAGIC):
        raise FileExistsError(f"{out} exists and is not a PNG: pass another --out")


def plot_runs(runs: list[str], out: Path, x: str = "step") -> Path:
    out = Path(out)
    check_out(out)
    all_records = [load_run(r) for r in runs]
    labels = run_labels(runs)
    with_eval = any(eval_means(records) for records in all_records)
    fig = Figure(figsize=(12.0 if with_eval else 7.0, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2 if with_eval else 1, squeeze=False)[0]
    _draw_loss(axes[0], runs, labels, all_records, x)
    if with_eval:
        _draw_eval(axes[1], labels, all_records)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    return out
