"""What a run's wrong answers point at, for synth_corner, synth_detail and synth_stripes
(mm1/data/synth/answers.py).

    python tools/answer_kinds.py RUN_OR_EVAL_DIR... [--task synth_corner] [--shots 0] [--dialects]
                                 [--data-root DIR]

Each folder is a run folder of `mm1 ablate` or `mm1 pretrain` (its eval/ is read) or the --out folder of
`mm1 eval`. The scenes come from the corpus the checkpoint was trained on (its data.root, as `mm1 eval`
finds it) unless --data-root names one. Prints one markdown row per folder: the share of each answer kind
in % of the task's scored queries; for synth_corner also the named quarter (the corner's colour or its
neighbour's). With --dialects an answer in a dialect's words counts as the colour it renames.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path

from mm1.data.synth.answers import TASKS, answer_shares, kinds
from mm1.data.synth.scene import scene_from_dict
from mm1.eval.evaluate import checkpoint_data_root
from mm1.layout import eval_dir_of

SUMS = {"synth_corner": {"named quarter": ("corner", "neighbour")}}  # task -> extra column -> kinds it adds up


@functools.lru_cache(maxsize=None)
def _scenes(root: str) -> dict:
    """The held-out scenes of the corpus at `root`, read once however many runs share it."""
    raw = json.loads((Path(root) / "eval" / "scenes" / "val.json").read_text())
    return {key: scene_from_dict(d) for key, d in raw.items()}


def row(folder: Path, task: str, shots: int, data_root: str | None, dialects: bool) -> str:
    eval_dir = eval_dir_of(folder)
    root = data_root or checkpoint_data_root(Path(json.loads(eval_dir.results.read_text())["checkpoint"]))
    if not root:
        raise ValueError("the checkpoint names no data.root; pass --data-root DIR")
    with open(eval_dir.predictions) as f:
        rows = [r for r in map(json.loads, f) if r["task"] == task and r["shots"] == shots]
    shares = answer_shares(task, rows, _scenes(str(root)), dialects)
    cells = [shares[k] for k in kinds(task)] + [sum(shares[k] for k in ks) for ks in SUMS.get(task, {}).values()]
    return f"| {folder.name} | {shares['n']} | " + " | ".join(f"{100 * c:.1f}" for c in cells) + " |"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--task", default="synth_corner", choices=list(TASKS), help="the task (default: synth_corner)")
    p.add_argument("--shots", type=int, default=0, help="the k-shot predictions to count (default: 0)")
    p.add_argument("--dialects", action="store_true", help="read a dialect's colour word as the colour it renames")
    p.add_argument("--data-root", help="the corpus folder (default: the checkpoint's data.root)")
    args = p.parse_args(argv)
    columns = [*kinds(args.task), *SUMS.get(args.task, {})]
    print(f"| run | queries | {' | '.join(columns)} |")
    print("|---" * (len(columns) + 2) + "|")
    for folder in args.folders:
        try:
            print(row(folder, args.task, args.shots, args.data_root, args.dialects))
        except (OSError, ValueError, KeyError) as e:
            print(f"answer_kinds: {folder}: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
