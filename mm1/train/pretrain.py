"""`mm1 pretrain`: prepare data, build, train, save. Each part is its own function."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from mm1.build import build, param_counts
from mm1.config import Config, dump_yaml
from mm1.data.loader import build_loader
from mm1.train.checkpoint import save_checkpoint
from mm1.train.metrics import MetricsWriter
from mm1.train.optim import build_optimizer, resolve_lr
from mm1.train.runtime import autocast_dtype, pick_device, seed_everything
from mm1.train.trainer import train_loop


def prepare_data(cfg: Config) -> None:
    """Generate the embedded corpus on first use when the recipe asks for it."""
    if cfg.data.synth is None:
        return
    from mm1.data.synth import corpus_is_complete, write_corpus

    if not corpus_is_complete(cfg.data.root):
        print(f"mm1: writing the embedded corpus to {cfg.data.root} (first use)")
        write_corpus(cfg.data.root, cfg.data.synth)


def pretrain(cfg: Config) -> Path:
    cfg = copy.deepcopy(cfg)
    run_dir = Path(cfg.output.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_data(cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    seed_everything(cfg.train.seed)
    device = pick_device(cfg.train)
    tokenizer, model = build(cfg)
    model.to(device)
    counts = param_counts(model)
    cfg.optim.lr, cfg.optim.weight_decay = resolve_lr(cfg.optim, counts["decoder_non_embedding"])
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    (run_dir / "params.json").write_text(json.dumps(counts, indent=2))
    print(f"mm1: {counts['total'] / 1e6:.1f}M parameters, lr {cfg.optim.lr:.3g}, device {device}, run {run_dir}")
    optimizer = build_optimizer(model, cfg.optim, cfg.optim.lr, cfg.optim.weight_decay)
    loader = build_loader(cfg, tokenizer)
    writer = MetricsWriter(run_dir, cfg.output.tensorboard)
    try:
        train_loop(cfg, model, optimizer, loader, device, autocast_dtype(cfg.train, device), cfg.optim.lr, writer)
    finally:
        writer.close()
    path = save_checkpoint(run_dir / "checkpoint", model, cfg, tokenizer)
    print(f"mm1: checkpoint saved to {path}")
    return run_dir
