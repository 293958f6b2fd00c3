"""The summary `mm1 pretrain` prints when a run is complete: what it trained on, how long, the loss,
where its files are and the commands that read them next."""
from __future__ import annotations

import math
import shlex
from pathlib import Path

from mm1.data.synth.write import MANIFEST
from mm1.layout import RunDir
from mm1.train.metrics import read_metrics

LAST_LOSSES = 5  # the logged steps the final loss is also averaged over (one step's loss is noisy)


def duration(seconds: float) -> str:
    """1 h 2 min 3 s, 2 min 3 s, 3.4 s."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min {secs} s" if hours else f"{minutes} min {secs} s"


def eval_command(run_dir, cfg) -> str:
    """How to score the run: its own eval settings, else the synthetic suite when it trained on the
    embedded corpus (whose held-out sets it reads), else the public benchmarks."""
    run, e = shlex.quote(str(run_dir)), cfg.eval
    shots = ",".join(map(str, e.shots))
    if e.tasks:
        data_dir = f" --data-dir {shlex.quote(e.data_dir)}" if e.data_dir else ""
        return f"mm1 eval {run} --tasks {e.tasks} --shots {shots}{data_dir}"
    if cfg.data.synth is not None or (cfg.data.root and (Path(cfg.data.root) / MANIFEST).is_file()):
        return f"mm1 eval {run} --tasks synthetic --shots 0,4,8"
    return f"mm1 eval {run} --tasks mm1_pretrain --data-dir EVAL_DATA_DIR --shots 0,4,8 (see mm1 eval --list-tasks)"


def loss_line(run_dir) -> str:
    losses = [(r["step"], r["loss"]) for r in read_metrics(run_dir) if math.isfinite(r.get("loss", math.nan))]
    if not losses:
        return "mm1: no finite loss was logged"
    (first_step, first), (last_step, last) = losses[0], losses[-1]
    tail = [loss for _, loss in losses[-LAST_LOSSES:]]
    return (f"mm1: loss {first:.3f} at step {first_step} -> {last:.3f} at step {last_step} "
            f"(mean of the last {len(tail)} logged steps: {sum(tail) / len(tail):.3f})")


def run_summary(trainer, wall_s: float) -> str:
    """The lines printed at the end of a complete run (`wall_s`: since the build began)."""
    run, p = RunDir(trainer.run_dir), trainer.progress
    return "\n".join([
        f"mm1: run complete: {trainer.step} steps, {p.tokens:,} tokens (non-padding, image tokens included) and "
        f"{p.images:,} images seen; wall time {duration(wall_s)} from the build to the saved model, "
        f"{duration(p.elapsed())} of training since step 1",
        loss_line(run.root),
        f"mm1: model {run.final}; metrics {run.metrics} (draw them: mm1 plot {shlex.quote(str(run.root))})",
        f"mm1: evaluate it: {eval_command(run.root, trainer.cfg)}",
    ])
