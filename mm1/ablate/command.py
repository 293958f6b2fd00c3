"""`mm1 ablate`: run an ablation grid (train + evaluate every run) and write its tables and plots.

    mm1 ablate --grid connectors --preset tiny --dry-run       # every run, its overrides, its cost
    mm1 ablate --grid connectors --preset tiny --jobs 2        # -> runs/ablate/connectors-tiny/
    mm1 ablate --report runs/ablate/connectors-tiny            # rebuild results.csv, summary.md, PNGs
    mm1 ablate --share runs/ablate/connectors-tiny --to DIR    # its records without the models, to send
    mm1 ablate --grid data_mixture --preset tiny "seeds=[3,4,5]" --out DIR   # the same grid, other seeds
    mm1 ablate --grid resolution --preset tiny --reuse runs/ablate/tokens-tiny   # copy the runs both grids share
    mm1 ablate --grid connectors --launcher torchrun --gpus-per-run 4    # 2 runs at a time on 8 GPUs
    mm1 ablate --grid connectors --launcher slurm --gpus-per-run 8 --partition gpu --time 240 --no-wait
    mm1 ablate --grid connectors --status                                # pending / queued / running / done / failed

Every run's config is loaded before anything runs, so a bad override fails at
once, naming the run and the key path. Re-running the same command resumes.
"""
from __future__ import annotations

import sys
from pathlib import Path

from mm1.ablate.grid import GridError
from mm1.ablate.sweep import SweepError

EXIT_FAILED_RUNS, EXIT_STOPPED = 1, 130  # and mm1.cli.EXIT_USAGE for a mistake in the grid or the folder


def default_out(grid_name: str, preset: str | None) -> Path:
    return Path("runs") / "ablate" / (f"{grid_name}-{preset}" if preset else grid_name)


def _report(out: Path) -> int:
    from mm1.ablate.report import build_report

    report = build_report(out)
    print(report.summary, end="")
    if report.lr_fit is not None:
        print(f"mm1 ablate: lr law fit: a = {report.lr_fit.a:.4f}, b = {report.lr_fit.b:.4f}")
    elif report.lr_fit_error:
        print(f"mm1 ablate: no lr law fit: {report.lr_fit_error}")
    print("mm1 ablate: wrote " + ", ".join(str(p) for p in report.files))
    return 0


def _status(out: Path) -> int:
    from mm1.ablate.status import format_status, sweep_status

    print(format_status(sweep_status(out)), end="")
    return 0


LAUNCH_FLAGS = ("launcher", "gpus_per_run", "nodes", "cpus_per_task", "time", "partition", "account", "qos")


def launch_flags(args) -> dict:
    """The launcher flags given on the command line, as `launch` keys of the grid."""
    from mm1.ablate.grid import GridError

    launch = {key: getattr(args, key) for key in LAUNCH_FLAGS if getattr(args, key) is not None}
    if args.no_request_gpus:
        launch["request_gpus"] = False
    if args.sbatch:
        import yaml

        launch["sbatch"] = {}
        for option in args.sbatch:
            key, sep, value = option.partition("=")
            if not key:
                raise GridError(f"--sbatch {option!r}: expected OPTION or OPTION=VALUE, e.g. constraint=h100")
            launch["sbatch"][key.lstrip("-")] = yaml.safe_load(value) if sep else True
    return launch


def _grid(args) -> int:
    from mm1.ablate.cost import format_plan
    from mm1.ablate.grid import check_runs, expand, load_grid, shared_overrides
    from mm1.ablate.sweep import Plan, run_sweep

    grid = load_grid(args.grid, args.preset, args.changes, launch_flags(args))
    if args.status:
        return _status(Path(args.out) if args.out else default_out(grid.name, args.preset))
    runs = expand(grid)
    configs = check_runs(runs)
    if args.dry_run:
        print(format_plan(runs, configs, len(shared_overrides(grid)), grid.launch, args.mfu, args.gpu), end="")
        return 0
    out = Path(args.out) if args.out else default_out(grid.name, args.preset)
    outcome = run_sweep(Plan(grid, runs, configs, args.preset), out, args.jobs, wait=not args.no_wait,
                        reuse=[Path(r) for r in args.reuse or ()])
    if outcome.submitted:
        print(f"mm1 ablate: {len(outcome.submitted)} job(s) queued or running; watch them with the same command "
              f"and --status, or re-run it to wait for them ({out})")
    _report(out)
    if outcome.stopped:
        print(f"mm1 ablate: stopped; re-run the same command to resume ({out})", file=sys.stderr)
        return EXIT_STOPPED
    if outcome.failed:
        print(f"mm1 ablate: {len(outcome.failed)} run(s) failed: {', '.join(outcome.failed)} "
              f"(see error.json in each run folder); the others finished", file=sys.stderr)
        return EXIT_FAILED_RUNS
    return 0


def _share(args) -> int:
    from mm1.ablate.share import share_records

    if not args.to:
        raise SweepError("--share needs --to OUT, a new folder for the copy")
    runs = share_records(Path(args.share), Path(args.to))
    print(f"mm1 ablate: copied the records of {runs} runs of {args.share} to {args.to}, without their models; "
          f"--report {args.to} rebuilds the tables, --reuse {args.to} takes its finished runs into another sweep")
    return 0


GRID_ONLY = ("changes", "preset", "out", "jobs", "reuse", "dry_run", "status", "no_wait", "no_request_gpus",
             "sbatch", *LAUNCH_FLAGS)


def check_flags(args) -> None:
    """A flag the chosen mode would ignore is a mistake: name it before anything runs."""
    if args.grid is None:
        mode = "--share" if args.share else "--report"
        ignored = [("KEY=VALUE" if key == "changes" else "--" + key.replace("_", "-"))
                   for key in GRID_ONLY if getattr(args, key) not in (None, False, [])]
        if ignored:
            raise SweepError(f"{', '.join(ignored)}: only with --grid, not with {mode}")
    if args.to and not args.share:
        raise SweepError(f"--to {args.to}: only with --share DIR, the sweep folder to copy")


def cmd_ablate(args) -> int:
    check_flags(args)
    if args.share:
        return _share(args)
    return _report(Path(args.report)) if args.report else _grid(args)


def register(sub) -> None:
    p = sub.add_parser(
        "ablate", help="run an ablation grid (MM1 Figure 4 and friends) and write its tables and plots",
        description="Train and evaluate every run of a grid (ablations/NAME.yaml), each in <out>/runs/<run>/, "
                    "then write results.csv, summary.md and PNG plots. Re-running resumes; failed runs are "
                    "recorded while the others go on.")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--grid", help="grid name in ablations/ (connectors, resolution, tokens, encoder, "
                                     "data_mixture, moe, lr) or a path to a grid YAML")
    what.add_argument("--report", metavar="DIR", help="rebuild tables and plots of a sweep folder; no training")
    what.add_argument("--share", metavar="DIR",
                      help="copy a sweep folder's records without its models (checkpoint/, checkpoints/) to --to: "
                           "what --report reads, and what --reuse takes with its evaluation")
    p.add_argument("changes", nargs="*", metavar="KEY=VALUE",
                   help="change a top-level key of the grid after its preset, e.g. seeds=[3,4,5] or steps=500")
    p.add_argument("--preset", help="a preset of the grid, e.g. tiny (CPU scale on the embedded data)")
    p.add_argument("--out", help="sweep folder (default: runs/ablate/<grid>[-<preset>])")
    p.add_argument("--to", metavar="OUT", help="--share: the new folder to copy into")
    p.add_argument("--jobs", type=int, default=None,
                   help="local and torchrun: runs at once (default: local 1; torchrun GPUs / --gpus-per-run, or 1 "
                        "without GPUs); CPU threads are split between them")
    p.add_argument("--reuse", action="append", metavar="DIR",
                   help="another sweep folder: a run it has trained with the same config is copied from there "
                        "instead of trained again, with its evaluation when the eval settings match (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="list every run with its overrides, GPUs and cost, then exit")
    p.add_argument("--status", action="store_true",
                   help="list every run of the sweep folder as pending / queued / running / done / failed, with "
                        "its job id; changes nothing")
    g = p.add_argument_group("launcher (replace the keys of the grid's `launch`)")
    g.add_argument("--launcher", help="local (one process per run) | torchrun (--gpus-per-run processes per run) | "
                                      "slurm (one Slurm job per run, submitted with submitit)")
    g.add_argument("--gpus-per-run", type=int, help="torchrun: processes (GPUs) per run; slurm: per node")
    g.add_argument("--nodes", type=int, help="slurm: nodes per run")
    g.add_argument("--partition", help="slurm: partition")
    g.add_argument("--time", type=int, help="slurm: time limit per job, minutes (a job it stops is requeued)")
    g.add_argument("--account", help="slurm: account")
    g.add_argument("--qos", help="slurm: quality of service")
    g.add_argument("--cpus-per-task", type=int, help="slurm: CPUs per process")
    g.add_argument("--no-request-gpus", action="store_true",
                   help="slurm: ask for no GPUs (a CPU partition: --gpus-per-run gloo CPU processes per node)")
    g.add_argument("--sbatch", action="append", metavar="OPTION[=VALUE]",
                   help="slurm: an extra sbatch option, e.g. --sbatch constraint=h100 --sbatch exclusive")
    g.add_argument("--no-wait", action="store_true",
                   help="slurm: submit and return; re-run the same command to watch the jobs or resume")
    g.add_argument("--mfu", type=float, default=0.4, help="--dry-run: the MFU the wall-time estimate assumes")
    g.add_argument("--gpu", default="H100", help="--dry-run: the GPU model whose peak the estimate uses")
    p.set_defaults(func=cmd_ablate, usage_errors=(GridError, SweepError, FileNotFoundError))
