"""Evaluation during pre-training (`eval.suite`, `eval.every`): which model is scored, on which rank.

The tasks are scored on rank 0 alone, on a plain (unwrapped) MM1Model, so the scores are those
`mm1 eval` gives for the same weights and settings:
  one process   the model itself;
  DDP           the module inside the wrapper (every rank holds the full weights);
  FSDP2         a copy built on rank 0 from the gathered full weights (collective), with the RNG
                state saved and restored around its construction, so training goes on unchanged.
The other ranks wait at a barrier meanwhile; an evaluation longer than the process group's timeout
(30 minutes by default) needs a smaller `eval.limit`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from mm1.build import build_model
from mm1.config.schema import Config
from mm1.eval.command import evaluate_during_training
from mm1.train.distributed import Dist, barrier
from mm1.train.parallelize import strategy
from mm1.train.state import full_model_state, unwrap


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
