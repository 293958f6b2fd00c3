"""The layout of a run folder and of a model folder: the one place their names are spelled
(documented in docs/run-folder.md).

    run = RunDir("runs/tiny")
    run.metrics, run.final, run.checkpoints, run.eval_at(400)
    ModelDir(run.final).weights

A run folder (`output.dir`):
  config.yaml       the resolved config          provenance.json   versions, git commit, command
  params.json       parameter counts             metrics.jsonl     one JSON record per logged step
  checkpoint/       the final model (a model folder): what mm1.load, mm1 eval and mm1 export read
  checkpoints/      full training state for --resume: step_N/ (model folder + training state), latest
  eval/             evaluation outputs: mm1 eval's, and eval/step_N/ during training

An evaluation folder (mm1 eval --out, eval/step_N): predictions.jsonl, results.json, table.md, table.csv.

A model folder: model.safetensors (or state/, the shards of a multi-process run), config.yaml,
tokenizer/, decoder/ (the decoder's transformers config). A training checkpoint adds trainer.json,
rng.pt and, for one process, optimizer.pt.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunDir:
    root: Path

    def __init__(self, root):
        object.__setattr__(self, "root", Path(root))

    config = property(lambda self: self.root / "config.yaml")
    params = property(lambda self: self.root / "params.json")
    provenance = property(lambda self: self.root / "provenance.json")
    metrics = property(lambda self: self.root / "metrics.jsonl")
    final = property(lambda self: self.root / "checkpoint")
    checkpoints = property(lambda self: self.root / "checkpoints")
    latest = property(lambda self: self.root / "checkpoints" / "latest")  # names the newest complete step_N
    eval = property(lambda self: self.root / "eval")

    def eval_at(self, step: int) -> Path:
        return self.eval / f"step_{step}"


@dataclass(frozen=True)
class ModelDir:
    root: Path

    def __init__(self, root):
        object.__setattr__(self, "root", Path(root))

    weights = property(lambda self: self.root / "model.safetensors")
    state = property(lambda self: self.root / "state")  # torch.distributed.checkpoint shards: model + optimizer
    config = property(lambda self: self.root / "config.yaml")
    tokenizer = property(lambda self: self.root / "tokenizer")
    decoder = property(lambda self: self.root / "decoder")
    # the training state of a checkpoints/step_N folder
    trainer = property(lambda self: self.root / "trainer.json")
    rng = property(lambda self: self.root / "rng.pt")
    optimizer = property(lambda self: self.root / "optimizer.pt")

    @property
    def sharded(self) -> bool:
        return (self.state / ".metadata").is_file()

    @property
    def parts(self) -> tuple[Path, ...]:
        """What makes a self-contained model folder (what an export copies)."""
        return (self.weights, self.config, self.tokenizer, self.decoder)


@dataclass(frozen=True)
class EvalDir:
    root: Path

    def __init__(self, root):
        object.__setattr__(self, "root", Path(root))

    predictions = property(lambda self: self.root / "predictions.jsonl")
    results = property(lambda self: self.root / "results.json")
    table_md = property(lambda self: self.root / "table.md")
    table_csv = property(lambda self: self.root / "table.csv")
