"""The one entry point of few-shot evaluation: `mm1 eval`, evaluation during training and `mm1 ablate`
all call these with an `EvalConfig`.

    tasks = prepare(cfg, data_root)                        # specs resolved, every file read; no model
    result = evaluate_model(model, tokenizer, cfg, tasks, image_size, out, source, model_config)
    result = evaluate_checkpoint("runs/tiny", cfg)         # load, prepare, evaluate, write

    python -m mm1.eval.evaluate CHECKPOINT CONFIG.json OUT # what a sweep's eval stage runs

Each writes predictions.jsonl, results.json, table.md and table.csv to its output folder.
"""
from __future__ import annotations

import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from mm1 import failure
from mm1.config.tree import build, to_dict
from mm1.config.validate import check_eval
from mm1.eval.config import DEFAULT_TASKS, EvalConfig
from mm1.eval.report import summarize, write_outputs
from mm1.eval.runner import RunResult, TaskData, evaluate, load_task_data
from mm1.eval.tasks import TASK_DIR, load_specs, resolve, select_tasks
from mm1.layout import ModelDir, RunDir
from mm1.train.model_folder import load_model_folder
from mm1.train.runtime import pick_device


@dataclass
class Evaluation:
    runs: list[RunResult]
    tasks: list[TaskData]
    table: str  # markdown, as in table.md
    out: Path

    def scores(self) -> dict[str, float]:
        """{"eval/<task>/<k>shot": mean over trials, "eval/average/<k>shot": mean over tasks}, x100."""
        summary = summarize(self.runs)
        out = {f"eval/{task}/{k}shot": e["mean"] for task, by_shots in summary.items() for k, e in by_shots.items()}
        for k in sorted({k for by_shots in summary.values() for k in by_shots}):
            out[f"eval/average/{k}shot"] = statistics.fmean(by[k]["mean"] for by in summary.values() if k in by)
        return out


def prepare(cfg: EvalConfig, data_root: Optional[str], task_dir: Path | str = TASK_DIR) -> list[TaskData]:
    """`cfg.tasks` -> TaskData with every file checked and read (no model needed)."""
    specs = select_tasks(cfg.tasks or DEFAULT_TASKS, load_specs(task_dir))
    return [load_task_data(resolve(s, data_root=data_root, data_dir=cfg.data_dir), cfg) for s in specs]


def evaluate_model(model, tokenizer, cfg: EvalConfig, tasks: list[TaskData], image_size: int, out: Path | str,
                   source: str, model_config: dict, progress: bool = True) -> Evaluation:
    """Score `tasks` with a loaded model and write the outputs to `out`; `source` names the weights."""
    runs = evaluate(model, tokenizer, tasks, cfg, image_size, progress)
    table = write_outputs(out, runs, tasks, cfg, source, model_config)
    return Evaluation(runs, tasks, table, Path(out))


def checkpoint_dir(path: str | Path) -> Path:
    """A checkpoint folder, or a run folder that holds checkpoint/."""
    p = Path(path)
    final = RunDir(p).final
    return final if ModelDir(final).weights.is_file() else p


def checkpoint_data_root(ckpt: Path) -> Optional[str]:
    cfg_file = ModelDir(ckpt).config
    if not cfg_file.is_file():
        raise FileNotFoundError(f"{ckpt} is not an mm1 checkpoint: config.yaml is missing")
    return (yaml.safe_load(cfg_file.read_text()).get("data") or {}).get("root")


def evaluate_checkpoint(checkpoint: str | Path, cfg: EvalConfig, out: Path | str | None = None, *,
                        data_root: Optional[str] = None, task_dir: Path | str = TASK_DIR, device: str = "auto",
                        progress: bool = True) -> Evaluation:
    """Load a checkpoint (or run folder) and score it; the tasks' files are read before the model loads.
    `out` defaults to eval/ beside the checkpoint folder; `data_root` to the checkpoint's data.root."""
    ckpt = checkpoint_dir(checkpoint)
    tasks = prepare(cfg, data_root or checkpoint_data_root(ckpt), task_dir)
    loaded = load_model_folder(ckpt, device=pick_device(device, "--device"))
    out = Path(out) if out else RunDir(ckpt.parent).eval
    return evaluate_model(loaded.model, loaded.tokenizer, cfg, tasks, loaded.cfg.model.vision.image_size, out,
                          str(ckpt.resolve()), to_dict(loaded.cfg.model), progress)


def main(argv: list[str]) -> int:
    """CHECKPOINT CONFIG.json OUT: CONFIG.json holds the EvalConfig's fields, or a sweep's run.json whose
    "eval" entry does."""
    checkpoint, config, out = argv
    fields = json.loads(Path(config).read_text())
    cfg = build(EvalConfig, fields.get("eval", fields), "eval")
    check_eval(cfg)
    result = evaluate_checkpoint(checkpoint, cfg, out, progress=False)
    print(result.table, end="")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BaseException as err:
        failure.record(err)
        raise
