"""Which caption style a run's captions are in: the house styles of the galleries, or the plain one.

    python tools/caption_styles.py RUN_OR_EVAL_DIR... [--task synth_caption_style]

Each folder is a run folder of `mm1 ablate` or `mm1 pretrain` (its eval/ is read) or the --out folder of
`mm1 eval`. Prints one markdown row per folder and shot count: the share of the task's predictions in %
written in each of mm1/data/synth/styles.py's STYLES, told by their form alone ("plain" is anything that is
not a house style). With synth_caption_style's tally demonstrations, a model that reads the style from them
writes tallies at 8 shots; docs/ablations/README.md quotes these rows.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from mm1.data.synth.styles import STYLES, style_of
from mm1.layout import eval_dir_of


def rows(folder: Path, task: str) -> list[str]:
    """One row per shot count of `task` in the folder's predictions."""
    by_shots: dict[int, Counter] = {}
    with open(eval_dir_of(folder).predictions) as f:
        for r in map(json.loads, f):
            if r["task"] == task:
                by_shots.setdefault(r["shots"], Counter())[style_of(r["prediction"] or "")] += 1
    if not by_shots:
        raise ValueError(f"no {task} predictions")
    out = []
    for shots, counts in sorted(by_shots.items()):
        n = sum(counts.values())
        out.append(f"| {folder.name} | {shots} | {n} | " + " | ".join(f"{100 * counts[s] / n:.1f}" for s in STYLES)
                   + " |")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folders", nargs="+", type=Path)
    p.add_argument("--task", default="synth_caption_style", help="the captioning task (default: synth_caption_style)")
    args = p.parse_args(argv)
    print(f"| run | shots | captions | {' | '.join(STYLES)} |")
    print("|---" * (len(STYLES) + 3) + "|")
    for folder in args.folders:
        try:
            print("\n".join(rows(folder, args.task)))
        except (OSError, ValueError, KeyError) as e:
            print(f"caption_styles: {folder}: {e}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
