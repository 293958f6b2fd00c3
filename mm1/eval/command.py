"""Entry points of few-shot evaluation: the `mm1 eval` command and the hook the trainer calls.

    mm1 eval runs/tiny/checkpoint --tasks synthetic --shots 0,4,8
    mm1 eval CKPT --tasks mm1_pretrain --data-dir /data/benchmarks --trials 3 --demos rices
    mm1 eval --list-tasks

Order of work: task specs are read, their paths resolved and every annotation
file loaded before the model is, so a wrong path or task name fails at once.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import yaml

from mm1.config.tree import ConfigError, to_dict
from mm1.eval.metrics import PROTOCOLS
from mm1.eval.rices import DEFAULT_CACHE
from mm1.eval.tasks import DATA_DIR_ENV, SUITES, TASK_DIR, ZERO_SHOT, load_specs, resolve, select_tasks

EXIT_USAGE = 2


def parse_shots(text: str) -> list[int]:
    try:
        shots = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 0,4,8; got {text!r}") from None
    if not shots or any(s < 0 for s in shots):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0, got {text!r}")
    return shots


def checkpoint_dir(path: str) -> Path:
    """A checkpoint folder, or a run folder that holds checkpoint/."""
    p = Path(path)
    return p / "checkpoint" if (p / "checkpoint" / "model.safetensors").is_file() else p


def _checkpoint_data_root(ckpt: Path) -> str | None:
    cfg_file = ckpt / "config.yaml"
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{ckpt} is not an mm1 checkpoint: config.yaml is missing")
    return (yaml.safe_load(cfg_file.read_text()).get("data") or {}).get("root")


def prepare_tasks(names: str, settings, data_root, data_dir, task_dir=TASK_DIR) -> list:
    """Task names -> TaskData with every file checked and loaded (no model needed)."""
    from mm1.eval.runner import load_task_data

    specs = select_tasks(names, load_specs(task_dir))
    return [load_task_data(resolve(s, data_root=data_root, data_dir=data_dir), settings) for s in specs]


def _settings(args):
    from mm1.eval.runner import EvalSettings

    return EvalSettings(shots=args.shots, trials=args.trials, demos=args.demos, limit=args.limit or None,
                        batch_size=args.batch_size, seed=args.seed, cache_dir=Path(args.cache_dir),
                        vqa_protocol=args.vqa_protocol, zero_shot=args.zero_shot)


def _list_tasks(task_dir) -> int:
    specs = load_specs(task_dir)
    for name, spec in specs.items():
        print(f"{name:16s} {spec.metric:13s} {spec.description}")
    for suite, names in SUITES.items():
        print(f"suite {suite}: {', '.join(names)}")
    return 0


def _pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no GPU is visible")
    return torch.device(name)


def cmd_eval(args) -> int:
    import mm1
    from mm1.eval.report import write_outputs
    from mm1.eval.runner import evaluate

    if args.list_tasks:
        return _list_tasks(args.task_dir)
    if not args.checkpoint:
        raise ValueError("a checkpoint folder is needed (or --list-tasks)")
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt, settings = checkpoint_dir(args.checkpoint), _settings(args)
    data_root = args.data_root or _checkpoint_data_root(ckpt)
    tasks = prepare_tasks(args.tasks, settings, data_root, args.data_dir, args.task_dir)
    loaded = mm1.load(ckpt, device=_pick_device(args.device))
    runs = evaluate(loaded.model, loaded.tokenizer, tasks, settings, loaded.cfg.model.vision.image_size)
    out = Path(args.out) if args.out else ckpt.parent / "eval"
    table = write_outputs(out, runs, tasks, settings, str(ckpt.resolve()), to_dict(loaded.cfg.model))
    print(table, end="")
    for data in tasks:
        if data.skipped:
            print(f"mm1 eval: {data.spec.name}: entries skipped while loading: {data.skipped}")
    print(f"mm1 eval: results written to {out}")
    return 0


def _run(args) -> int:
    try:
        return cmd_eval(args)
    except (ValueError, FileNotFoundError, ConfigError) as err:
        print(f"mm1 eval: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="few-shot evaluation of a checkpoint (VQA accuracy, CIDEr)",
        description="Score a checkpoint at 0/4/8 shots with interleaved image+text demonstrations. Writes "
                    "predictions.jsonl, results.json, table.md and table.csv to --out and prints the table.",
    )
    p.add_argument("checkpoint", nargs="?", help="checkpoint folder written by mm1 pretrain (or its run folder)")
    p.add_argument("--tasks", default="synthetic",
                   help=f"comma-separated tasks and suites ({', '.join(SUITES)}); see --list-tasks")
    p.add_argument("--shots", type=parse_shots, default=[0, 4, 8], help="comma-separated shot counts (default 0,4,8)")
    p.add_argument("--trials", type=int, default=3, help="random demo draws per task and shot count > 0")
    p.add_argument("--demos", choices=("random", "rices"), default="random", help="demonstration selection")
    p.add_argument("--zero-shot", choices=ZERO_SHOT,
                   help="0-shot prompts for every task: query_only (the bare query) or text_demos (OpenFlamingo's: "
                        "two demonstrations with their images removed, then the query); default: each task's own")
    p.add_argument("--vqa-protocol", choices=PROTOCOLS, default="official",
                   help="which VQA evaluation script vqa_accuracy reproduces: official (GT-Vision-Lab vqaEval.py as "
                        "it is now), openflamingo (OpenFlamingo's copy) or official_2016 (before the 2021 fix)")
    p.add_argument("--limit", type=int, default=100, help="scored queries per task, a seeded subset; 0 = all")
    p.add_argument("--batch-size", type=int, default=32, help="prompts decoded together")
    p.add_argument("--seed", type=int, default=0, help="seed of the query subset and the random demos")
    p.add_argument("--out", help="output folder (default: eval/ beside the checkpoint folder)")
    p.add_argument("--data-root", help="corpus root of the synthetic tasks (default: the checkpoint's data.root)")
    p.add_argument("--data-dir", help=f"folder of the public benchmarks (default: ${DATA_DIR_ENV})")
    p.add_argument("--task-dir", default=str(TASK_DIR), help="folder of task spec YAMLs")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="RICES feature cache")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--list-tasks", action="store_true", help="list the tasks and suites, then exit")
    p.set_defaults(func=_run)


def _training_settings(cfg, run_dir: Path):
    from mm1.eval.runner import EvalSettings

    return EvalSettings(shots=list(cfg.eval.shots), trials=cfg.eval.trials, limit=cfg.eval.limit,
                        batch_size=cfg.eval.batch_size, seed=cfg.data.seed,
                        cache_dir=run_dir / "eval" / "rices_cache", progress=False)


def check_training_eval(cfg) -> None:
    """ConfigError (naming `eval.suite`) for an unknown task or suite, or a task file that is missing.

    Cheap (task specs and file checks, no model, no data): call it when the config is loaded. The files
    of the embedded corpus's tasks are checked here only if the corpus is not generated on first use
    (`data.synth` unset); `prepare_training_eval` checks them once it is written."""
    if not cfg.eval.suite:
        return
    specs = load_specs()
    try:
        chosen = select_tasks(cfg.eval.suite, specs)
    except ValueError as err:
        raise ConfigError(f"eval.suite: {cfg.eval.suite!r} is not allowed ({err})") from None
    for spec in chosen:
        if spec.root == "data_dir" or cfg.data.synth is None:
            try:
                resolve(spec, data_root=cfg.data.root, data_dir=cfg.eval.data_dir)
            except (ValueError, FileNotFoundError) as err:
                where = "data.root" if spec.root == "data_root" else f"eval.data_dir or ${DATA_DIR_ENV}"
                raise ConfigError(f"eval.suite: {err} (the files are looked for under {where})") from None


def prepare_training_eval(cfg) -> list:
    """The TaskData of `cfg.eval.suite`, every annotation file read (ConfigError naming `eval.suite` if one
    fails); [] when no suite is set. Read once per run and reused at every evaluation."""
    if not cfg.eval.suite:
        return []
    settings = _training_settings(cfg, Path(cfg.output.dir))
    try:
        return prepare_tasks(cfg.eval.suite, settings, cfg.data.root, cfg.eval.data_dir)
    except (ValueError, FileNotFoundError, ConfigError) as err:
        raise ConfigError(f"eval.suite: {err}") from None


def evaluate_during_training(model, tokenizer, cfg, step: int, run_dir, tasks: list) -> dict[str, float]:
    """Score `tasks` (from `prepare_training_eval`) with `cfg.eval`'s settings; outputs go to
    run_dir/eval/step_{step}.

    Returns {"eval/<task>/<k>shot": score x100, "eval/average/<k>shot": mean over tasks}. The model is
    switched to eval mode and back; no global random state is touched. Pass a plain MM1Model (not a
    DDP/FSDP wrapper) and call it on one rank (mm1.train.evaluation does both).
    """
    from mm1.eval.report import summarize, write_outputs
    from mm1.eval.runner import evaluate

    run_dir = Path(run_dir)
    settings = _training_settings(cfg, run_dir)
    runs = evaluate(model, tokenizer, tasks, settings, cfg.model.vision.image_size)
    write_outputs(run_dir / "eval" / f"step_{step}", runs, tasks, settings,
                  f"{run_dir} (step {step}, during training)", to_dict(cfg.model))
    summary = summarize(runs)
    scores = {f"eval/{task}/{shots}shot": entry["mean"] for task, by_shots in summary.items()
              for shots, entry in by_shots.items()}
    for shots in settings.shots:
        values = [by_shots[shots]["mean"] for by_shots in summary.values() if shots in by_shots]
        scores[f"eval/average/{shots}shot"] = sum(values) / len(values)
    return scores
