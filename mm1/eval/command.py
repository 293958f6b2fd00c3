"""The `mm1 eval` command: flags (derived from EvalConfig) -> mm1.eval.evaluate.evaluate_checkpoint.

    mm1 eval runs/tiny/checkpoint --tasks synthetic --shots 0,4,8
    mm1 eval CKPT --tasks mm1_pretrain --data-dir /data/benchmarks --trials 3 --demos rices
    mm1 eval --list-tasks

Order of work: task specs are read, their paths resolved and every annotation
file loaded before the model is, so a wrong path or task name fails at once.
"""
from __future__ import annotations

from mm1.config.flags import add_flags, from_flags
from mm1.config.validate import check_eval
from mm1.eval.config import DEFAULT_TASKS, EvalConfig
from mm1.eval.tasks import SUITES, TASK_DIR, load_specs

def _list_tasks(task_dir) -> int:
    specs = load_specs(task_dir)
    for name, spec in specs.items():
        print(f"{name:16s} {spec.metric:13s} {spec.description}")
    for suite, names in SUITES.items():
        print(f"suite {suite}: {', '.join(names)}")
    return 0


def cmd_eval(args) -> int:
    import torch

    from mm1.eval.evaluate import evaluate_checkpoint

    if args.list_tasks:
        return _list_tasks(args.task_dir)
    if not args.checkpoint:
        raise ValueError("a checkpoint folder is needed (or --list-tasks)")
    cfg = from_flags(EvalConfig, args)
    check_eval(cfg, path="mm1 eval")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = evaluate_checkpoint(args.checkpoint, cfg, args.out, data_root=args.data_root, task_dir=args.task_dir,
                                 device=args.device)
    print(result.table, end="")
    for data in result.tasks:
        if data.skipped:
            print(f"mm1 eval: {data.spec.name}: entries skipped while loading: {data.skipped}")
    print(f"mm1 eval: results written to {result.out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "eval", help="few-shot evaluation of a checkpoint (VQA accuracy, exact match, CIDEr)",
        description="Score a checkpoint at 0/4/8 shots with interleaved image+text demonstrations. Writes "
                    "predictions.jsonl, results.json, table.md and table.csv to --out and prints the table.",
    )
    p.add_argument("checkpoint", nargs="?", help="checkpoint folder written by mm1 pretrain (or its run folder)")
    add_flags(p, EvalConfig, defaults={"tasks": DEFAULT_TASKS})
    p.add_argument("--out", help="output folder (default: eval/ beside the checkpoint folder)")
    p.add_argument("--data-root", help="corpus root of the synthetic tasks (default: the checkpoint's data.root)")
    p.add_argument("--task-dir", default=str(TASK_DIR), help="folder of task spec YAMLs")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--list-tasks", action="store_true", help="list the tasks and suites, then exit")
    p.set_defaults(func=cmd_eval, usage_errors=(ValueError, FileNotFoundError))
