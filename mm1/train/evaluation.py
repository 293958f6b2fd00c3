"""Evaluation during pre-training (`eval.tasks`, `eval.every`): checks before the run, and which model
is scored on which rank.

    check_training_eval(cfg)           # config time: unknown task or missing file -> ConfigError
    tasks = prepare_training_eval(cfg) # after the corpus is written, before the model: every file read
    scores = evaluate_run(model, cfg, tokenizer, tasks, step, run_dir, d, device)

The tasks are scored on rank 0 alone, on a plain (unwrapped) MM1Model, so the scores are those
`mm1 eval` gives for the same weights and `eval` settings:
  one process   the model itself;
  DDP           the module inside the wrapper (every rank holds the full weights);
  FSDP2         a copy built on rank 0 from the gathered full weights (collective), with the RNG
                state saved and restored around its construction, so training goes on unchanged.
The other ranks wait at a barrier meanwhile; an evaluation longer than the process group's timeout
(30 minutes by default) needs a smaller `eval.limit`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import torch

from mm1.build import build_model
from mm1.config.schema import Config
from mm1.config.tree import ConfigError, to_dict
from mm1.eval.evaluate import evaluate_model, prepare
from mm1.eval.tasks import DATA_DIR_ENV, load_specs, resolve, select_tasks
from mm1.layout import RunDir
from mm1.train.checkpoints import full_model_state
from mm1.train.distributed import Dist, barrier
from mm1.train.parallelize import strategy, unwrap


def _eval_config(cfg: Config, run_dir: Path):
    return dataclasses.replace(cfg.eval, cache_dir=cfg.eval.cache_dir or str(RunDir(run_dir).eval / "rices_cache"))


def check_training_eval(cfg: Config) -> None:
    """ConfigError (naming `eval.tasks`) for an unknown task or suite, or a task file that is missing.

    Cheap (task specs and file checks, no model, no data): call it when the config is loaded. The files
    of the embedded corpus's tasks are checked here only if the corpus is not generated on first use
    (`data.synth` unset); `prepare_training_eval` checks them once it is written."""
    if not cfg.eval.tasks:
        return
    try:
        chosen = select_tasks(cfg.eval.tasks, load_specs())
    except ValueError as err:
        raise ConfigError(f"eval.tasks: {cfg.eval.tasks!r} is not allowed ({err})") from None
    for spec in chosen:
        if spec.root == "data_dir" or cfg.data.synth is None:
            try:
                resolve(spec, data_root=cfg.data.root, data_dir=cfg.eval.data_dir)
            except (ValueError, FileNotFoundError) as err:
                where = "data.root" if spec.root == "data_root" else f"eval.data_dir or ${DATA_DIR_ENV}"
                raise ConfigError(f"eval.tasks: {err} (the files are looked for under {where})") from None


def prepare_training_eval(cfg: Config) -> list:
    """The TaskData of `cfg.eval.tasks`, every annotation file read (ConfigError naming `eval.tasks` if one
    fails); [] when no task is set. Read once per run and reused at every evaluation."""
    if not cfg.eval.tasks:
        return []
    try:
        return prepare(_eval_config(cfg, Path(cfg.output.dir)), cfg.data.root)
    except (ValueError, FileNotFoundError, ConfigError) as err:
        raise ConfigError(f"eval.tasks: {err}") from None


def evaluate_during_training(model, tokenizer, cfg: Config, step: int, run_dir, tasks: list) -> dict[str, float]:
    """Score `tasks` with a plain model; outputs go to run_dir/eval/step_{step}.
    Returns {"eval/<task>/<k>shot": score x100, "eval/average/<k>shot": mean over tasks}."""
    run_dir = Path(run_dir)
    result = evaluate_model(model, tokenizer, _eval_config(cfg, run_dir), tasks, cfg.model.vision.image_size,
                            RunDir(run_dir).eval_at(step), f"{run_dir} (step {step}, during training)",
                            to_dict(cfg.model), progress=False)
    return result.scores()


def evaluation_model(model, cfg: Config, tokenizer, d: Dist, device) -> Optional[torch.nn.Module]:
    """The plain model to score on this rank (None on ranks other than 0). Collective under FSDP2."""
    if not (d.enabled and strategy(cfg.parallel, d) == "fsdp"):
        return unwrap(model) if d.is_main else None
    state = full_model_state(model)
    if not d.is_main:
        return None
    with torch.random.fork_rng(devices=[]):
        copy = build_model(cfg, tokenizer, device="cpu", decoder_hf_cfg=unwrap(model).decoder.config)
    copy.load_state_dict(state)
    return copy.to(device)


def evaluate_run(model, cfg: Config, tokenizer, tasks: list, step: int, run_dir: Path, d: Dist,
                 device) -> dict[str, float]:
    """Score `tasks` at `step`: {"eval/<task>/<k>shot": ...} on rank 0, {} elsewhere; every rank returns
    together, with the training model back in training mode."""
    target = evaluation_model(model, cfg, tokenizer, d, device)
    scores = {}
    if target is not None:
        scores = evaluate_during_training(target, tokenizer, cfg, step, run_dir, tasks)
    barrier(d)
    model.train()
    return scores
