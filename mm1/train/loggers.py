"""The optional loggers: each gets the same records as metrics.jsonl (mm1.train.metrics.MetricsWriter).

    output.tensorboard: true   <run>/tensorboard/ event files     the extra mm1[tensorboard]
    output.wandb: true         a Weights & Biases run             the extra mm1[wandb]
                               (project output.wandb_project; WANDB_MODE=offline keeps it in <run>/wandb/)

A logger turned on without its package stops the run before anything is built (check_logger_packages).
On a resume, TensorBoard hides the events after the checkpoint's step (purge_step). W&B continues the
same run id (kept in <run>/wandb/run_id; offline, each session is its own offline-run folder) and is
sent the steps after the checkpoint again: what it keeps of a step it has seen is W&B's rule.
"""
from __future__ import annotations

import dataclasses
import importlib
import secrets
from pathlib import Path

from mm1.config import Config, ConfigError
from mm1.layout import RunDir
from mm1.train.metrics import scalars


class TensorBoardLogger:
    """An event file per session, opened at its first record."""

    def __init__(self, run_dir: Path, cfg: Config):
        self.dir = RunDir(run_dir).tensorboard
        self.writer, self.purge_step = None, None

    def write(self, record: dict) -> None:
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.dir), purge_step=self.purge_step)
        for key, value in scalars(record).items():
            self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def resume_at(self, step: int) -> None:
        """The steps after `step` are logged again: TensorBoard hides what this run folder held of them."""
        self.purge_step = step + 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


class WandbLogger:
    def __init__(self, run_dir: Path, cfg: Config):
        import wandb

        folder = RunDir(run_dir).wandb
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / "run_id"
        if not id_file.is_file():
            id_file.write_text(secrets.token_hex(6))  # a W&B run id: lower-case letters and digits
        self.run = wandb.init(project=cfg.output.wandb_project, name=Path(run_dir).name, dir=str(run_dir),
                              id=id_file.read_text().strip(), resume="allow", config=dataclasses.asdict(cfg))

    def write(self, record: dict) -> None:
        self.run.log(scalars(record), step=record["step"])

    def resume_at(self, step: int) -> None:
        pass  # the same W&B run id continues (resume="allow")

    def close(self) -> None:
        self.run.finish()


# output.<name> -> (the package it needs, the extra that installs it, the logger)
LOGGERS = {"tensorboard": ("tensorboard", TensorBoardLogger), "wandb": ("wandb", WandbLogger)}


def check_logger_packages(cfg: Config) -> None:
    """Every logger turned on has its package: else exit 2 naming the extra, before anything is built."""
    for name, (package, _) in LOGGERS.items():
        if not getattr(cfg.output, name):
            continue
        try:
            importlib.import_module(package)
        except ImportError:
            raise ConfigError(f"output.{name}: true needs the {package} package, which is not installed; install "
                              f"the extra mm1[{name}] (in a clone of mm1: pip install -e '.[{name}]') or "
                              f"pip install {package}; or set output.{name}=false") from None


def open_loggers(run_dir: Path, cfg: Config) -> list:
    return [make(run_dir, cfg) for name, (_, make) in LOGGERS.items() if getattr(cfg.output, name)]
