"""The layout of a run folder and of a model folder: the one place their names are spelled
(documented in docs/run-folder.md).

    run = RunDir("runs/tiny")
    run.metrics, run.final, run.checkpoints, run.eval_at(400)
    ModelDir(run.final).weights

A run folder (`output.dir`):
  config.yaml       the resolved config          provenance.json   versions, git commit
  params.json       parameter counts             metrics.jsonl     one JSON record per logged step
  checkpoint/       the final model (a model folder): what mm1.load, mm1 eval and mm1 export read
  checkpoints/      full training state for --resume: step_N/ (model folder + training state), latest
  eval/             evaluation outputs: mm1 eval's, and eval/step_N/ during training
  tensorboard/      output.tensorboard's event files   wandb/   output.wandb's run id and W&B's files

An evaluation folder (mm1 eval --out, eval/step_N): predictions.jsonl, results.json, table.md, table.csv.

A model folder: model.safetensors (or state/, the shards of a multi-process run), config.yaml,
tokenizer/, decoder/ (the decoder's transformers config). A training checkpoint adds trainer.json,
rng.pt and, for one process, optimizer.pt.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


def _at(name: str) -> property:
    """The path `name` inside the folder."""
    return property(lambda self: self.root / name)


@dataclass(frozen=True)
class _Folder:
    root: Path

    def __init__(self, root):
        object.__setattr__(self, "root", Path(root))


class RunDir(_Folder):

    config = _at("config.yaml")
    params = _at("params.json")
    provenance = _at("provenance.json")
    metrics = _at("metrics.jsonl")
    final = _at("checkpoint")
    checkpoints = _at("checkpoints")
    latest = _at("checkpoints/latest")  # names the newest complete step_N
    eval = _at("eval")
    tensorboard = _at("tensorboard")  # output.tensorboard's event files
    wandb = _at("wandb")  # output.wandb: W&B's own files (offline runs) and run_id

    def eval_at(self, step: int) -> Path:
        return self.eval / f"step_{step}"


class ModelDir(_Folder):

    weights = _at("model.safetensors")
    state = _at("state")  # torch.distributed.checkpoint shards: model + optimizer
    config = _at("config.yaml")
    tokenizer = _at("tokenizer")
    decoder = _at("decoder")
    # the training state of a checkpoints/step_N folder
    trainer = _at("trainer.json")
    rng = _at("rng.pt")
    optimizer = _at("optimizer.pt")

    @property
    def sharded(self) -> bool:
        return (self.state / ".metadata").is_file()

    @property
    def parts(self) -> tuple[Path, ...]:
        """What makes a self-contained model folder (what an export copies)."""
        return (self.weights, self.config, self.tokenizer, self.decoder)


class EvalDir(_Folder):

    predictions = _at("predictions.jsonl")
    results = _at("results.json")
    table_md = _at("table.md")
    table_csv = _at("table.csv")


def eval_dir_of(folder: str | Path) -> EvalDir:
    """The evaluation folder of `folder`: itself when it holds predictions (`mm1 eval --out`), else the
    eval/ of a run folder."""
    given = EvalDir(folder)
    return given if given.predictions.is_file() else EvalDir(RunDir(folder).eval)
