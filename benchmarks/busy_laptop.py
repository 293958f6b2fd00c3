"""The tiny recipe on a busy machine: torch's default threads vs one thread vs the OpenMP wait policy vs a
bounded OpenMP spin, with no competitor, a busy-loop competitor the scheduler may move, and one pinned to
the last core.

    python benchmarks/busy_laptop.py --data-root CORPUS --out DIR [--steps 20] [--repeats 1] [--settings A,B]

CORPUS: the embedded corpus (`mm1 data synth --out CORPUS`). Every run is a fresh `mm1 pretrain
recipes/tiny.yaml` of --steps steps logged at every step; the table gives the command's wall time and the
median and mean step time from metrics.jsonl's elapsed_s (steps 2..N), with the load average before it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {  # name -> (environment, overrides)
    "default threads": ({}, []),  # OMP_WAIT_POLICY unset: libgomp spins a while before it sleeps
    "OMP_WAIT_POLICY=passive": ({"OMP_WAIT_POLICY": "passive"}, []),
    "train.threads=1": ({}, ["train.threads=1"]),
    # a bounded spin (libgomp's iterations before a waiting thread sleeps; passive is 0, unset about 300,000)
    "GOMP_SPINCOUNT=10000": ({"GOMP_SPINCOUNT": "10000"}, []),
    "GOMP_SPINCOUNT=100000": ({"GOMP_SPINCOUNT": "100000"}, []),
}
COMPETITORS = ("none", "busy loop, unpinned", "busy loop, pinned to the last core")
BUSY = [sys.executable, "-c", "while True: pass"]
# mm1.cli itself, not the `mm1` entry point (mm1.entry), whose default OMP_WAIT_POLICY would hide the setting
CLI = "import sys; from mm1.cli import main; sys.exit(main(sys.argv[1:]))"


def competitor(kind: str):
    if kind == "none":
        return None
    if kind == "busy loop, pinned to the last core":
        return subprocess.Popen(["taskset", "-c", str(os.cpu_count() - 1), *BUSY])
    return subprocess.Popen(BUSY)


def one_run(setting: str, data_root: str, out: Path, steps: int) -> dict:
    env_extra, overrides = SETTINGS[setting]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(env_extra)
    load = os.getloadavg()[0]
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CLI, "pretrain", str(ROOT / "recipes" / "tiny.yaml"),
                    f"data.root={data_root}", "data.synth=null", f"output.dir={out}", f"train.steps={steps}",
                    "train.log_every=1", *overrides], env=env, cwd=ROOT, check=True, capture_output=True)
    wall = time.perf_counter() - start
    elapsed = [json.loads(line)["elapsed_s"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    step_s = [b - a for a, b in zip(elapsed, elapsed[1:])]
    return {"wall_s": round(wall, 1), "median_step_s": round(statistics.median(step_s), 3),
            "mean_step_s": round(statistics.mean(step_s), 3), "load_before": load}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--competitors", default="all", help="comma-separated indices into COMPETITORS (0,1,2) or all")
    p.add_argument("--settings", default="all", help="comma-separated names of SETTINGS or all")
    args = p.parse_args()
    rows = []
    for repeat in range(args.repeats):
        kinds = COMPETITORS if args.competitors == "all" else [COMPETITORS[int(i)] for i in args.competitors.split(",")]
        for kind in kinds:
            busy = competitor(kind)
            try:
                for setting in SETTINGS if args.settings == "all" else args.settings.split(","):
                    run = one_run(setting, args.data_root, args.out / f"r{repeat}-{len(rows)}", args.steps)
                    rows.append({"competitor": kind, "setting": setting, "repeat": repeat, **run})
                    print(json.dumps(rows[-1]), flush=True)
            finally:
                if busy is not None:
                    busy.terminate()
                    busy.wait()
    print("| competitor | setting | wall s | median step s | mean step s | load before |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['competitor']} | {r['setting']} | {r['wall_s']} | {r['median_step_s']} | {r['mean_step_s']} | "
              f"{r['load_before']:.2f} |")


if __name__ == "__main__":
    main()
