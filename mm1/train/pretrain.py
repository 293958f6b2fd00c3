"""`mm1 pretrain`: prepare data, build, train, save. Each part is its own function."""
from __future__ import annotations

import copy
import fcntl
import json
import time
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file

from mm1.build import build, check_tokenizer_fits, param_counts
from mm1.config import Config, ConfigError, dump_yaml
from mm1.config.validate import check_pretrained_paths
from mm1.data.loader import build_loader, resolve_sources
from mm1.data.synth import corpus_is_complete, write_corpus
from mm1.data.synth.write import check_writable, is_corpus_folder
from mm1.layout import RunDir
from mm1.model.vision import load_visual_weights
from mm1.tokenizer import build_tokenizer
from mm1.train.checkpoints import full_model_state
from mm1.train.distributed import Dist, barrier, cleanup, init_distributed, on_main_first
from mm1.train.evaluation import check_training_eval, prepare_training_eval
from mm1.train.loggers import check_logger_packages, open_loggers
from mm1.train.mfu import describe_peak, device_peak_flops, image_flops, mfu_key
from mm1.train.model_folder import save_model_folder
from mm1.train.optim import build_optimizer, resolve_lr
from mm1.train.parallelize import parallelize, unwrap
from mm1.train.provenance import provenance
from mm1.train.resume import check_new_run, resolve_resume
from mm1.train.runtime import autocast_dtype, pick_device, seed_everything
from mm1.train.summary import run_summary
from mm1.train.trainer import StoppedBySignal, Trainer
from mm1.train.warmstart import ensure_warm_start, warm_start_path


OWN_DATA = ("to train on your own shards, unset the embedded corpus (data.synth=null) and name them in "
            "data.sources, as recipes/own_data.yaml does (README: Your own data)")


def check_data_root(cfg: Config) -> None:
    """ConfigError when data.synth would write the embedded corpus into a folder of someone's data."""
    if cfg.data.synth is None:
        return
    try:
        check_writable(Path(cfg.data.root))
    except FileExistsError as err:
        raise ConfigError(f"data.root: {err}; the recipe sets data.synth, which writes the embedded corpus "
                          f"into data.root; {OWN_DATA}") from None


def prepare_data(cfg: Config) -> None:
    """Generate the embedded corpus on first use when the recipe asks for it (one writer at a time), and
    only into a folder that is absent, empty or holds an embedded corpus: never over a user's data."""
    if cfg.data.synth is None:
        return
    check_data_root(cfg)
    root = Path(cfg.data.root)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not corpus_is_complete(root, cfg.data.synth):
            if is_corpus_folder(root):
                print(f"mm1: rewriting the embedded corpus in {root}: the one there is unfinished or was written "
                      f"with other data.synth settings")
            else:
                print(f"mm1: writing the embedded corpus to {root} (first use)")
            write_corpus(root, cfg.data.synth)


def prepare_run_folder_and_data(run_dir: Path, cfg: Config) -> None:
    """Rank 0's set-up before the others may read: the run folder, the embedded corpus, the warm start."""
    run_dir.mkdir(parents=True, exist_ok=True)
    prepare_data(cfg)
    prepare_encoder(cfg)


def prepare_encoder(cfg: Config) -> None:
    """Train and cache the contrastive warm start of the encoder on first use, when the recipe asks for it."""
    if cfg.model.vision.warm_start is not None:
        ensure_warm_start(cfg, build_tokenizer(cfg.model.tokenizer))


def setup_runtime(cfg: Config) -> tuple[torch.device, Dist]:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.use_deterministic_algorithms(cfg.train.deterministic)
    seed_everything(cfg.train.seed)  # same init on every rank
    device = pick_device(cfg.train.device)
    d = init_distributed(device.type)
    if device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
    return device, d


def fit_global_batch(cfg: Config, world_size: int) -> None:
    """`train.global_batch_size` -> `train.grad_accum` for this many processes."""
    t = cfg.train
    if t.global_batch_size is None:
        return
    per_step = t.batch_size * world_size
    if t.global_batch_size % per_step:
        raise ConfigError(f"train.global_batch_size: {t.global_batch_size} is not a multiple of train.batch_size "
                          f"({t.batch_size}) x processes ({world_size})")
    t.grad_accum = t.global_batch_size // per_step


def build_trainer(cfg: Config, resume: Optional[str] = None) -> Trainer:
    """Everything a run needs, restored from a checkpoint when `resume` finds one."""
    cfg = copy.deepcopy(cfg)
    check_training_eval(cfg)
    run_dir = Path(cfg.output.dir)
    check_pretrained_paths(cfg)
    check_logger_packages(cfg)
    check_new_run(run_dir, resume)
    check_data_root(cfg)
    check_tokenizer_fits(cfg, build_tokenizer(cfg.model.tokenizer))  # before the corpus and the model
    if cfg.data.synth is None:  # own shards: a pattern that matches nothing stops it before anything is written
        resolve_sources(cfg)
    device, d = setup_runtime(cfg)
    fit_global_batch(cfg, d.world_size)
    on_main_first(d, lambda: prepare_run_folder_and_data(run_dir, cfg), device)
    resolve_sources(cfg)  # every rank, the corpus written: a pattern that matches nothing stops them all
    eval_tasks = prepare_training_eval(cfg)  # every rank: a missing file stops them all before any model
    tokenizer, model = build(cfg)
    if cfg.model.vision.warm_start is not None:
        path = warm_start_path(cfg, tokenizer)
        load_visual_weights(model.vision.visual, load_file(str(path)), f"the warm-started encoder {path}")
    model.to(device)
    counts = param_counts(model)
    cfg.optim.lr, cfg.optim.weight_decay = resolve_lr(cfg.optim, counts["decoder_non_embedding"])
    if d.is_main:
        write_run_files(run_dir, cfg, counts)
        print(f"mm1: {counts['total'] / 1e6:.1f}M parameters, lr {cfg.optim.lr:.3g}, device {device}, "
              f"{d.world_size} process(es), run {run_dir}")
    amp = autocast_dtype(cfg.train, device)
    peak, peak_source = device_peak_flops(device)
    flops = {"per_image": image_flops(model), "peak": peak, "mfu_key": mfu_key(device)}
    if d.is_main:
        print(f"mm1: {describe_peak(device, peak, peak_source)}")
    model = parallelize(model, cfg.parallel, d, device, amp)
    optimizer = build_optimizer(model, cfg.optim, cfg.optim.lr, cfg.optim.weight_decay)
    loader = build_loader(cfg, tokenizer, rank=d.rank, world_size=d.world_size)
    trainer = Trainer(cfg, model=model, optimizer=optimizer, loader=loader, tokenizer=tokenizer, device=device,
                      amp_dtype=amp, run_dir=run_dir, dist=d, flops=flops, eval_tasks=eval_tasks,
                      loggers=open_loggers(run_dir, cfg) if d.is_main else ())
    start = resolve_resume(run_dir, resume, announce=d.is_main)
    if start is not None:
        trainer.restore(start)
    elif trainer.writer is not None:  # --resume in a folder with no checkpoint yet: the run starts again
        trainer.writer.drop_after(0)
    return trainer


def write_run_files(run_dir: Path, cfg: Config, counts: dict) -> None:
    run = RunDir(run_dir)
    run.config.write_text(dump_yaml(cfg))
    run.params.write_text(json.dumps(counts, indent=2))
    run.provenance.write_text(json.dumps(provenance(cfg), indent=2))


def pretrain(cfg: Config, resume: Optional[str] = None) -> Path:
    """Train `cfg`; `resume` = "auto" (latest checkpoint of the run, if any) or a checkpoint path.
    Returns the run folder; its `checkpoint/` holds the final model once training is complete.
    Raises StoppedBySignal when a stop signal (SIGTERM, SIGINT, SIGUSR1, SIGUSR2) stopped it early (after a
    checkpoint)."""
    started = time.perf_counter()
    trainer = build_trainer(cfg, resume)
    try:
        finished = trainer.run()
        if finished:
            save_final(trainer)
            if trainer.dist.is_main:
                print(run_summary(trainer, time.perf_counter() - started))
    finally:
        trainer.close()
        cleanup(trainer.dist)
    if not finished:
        raise StoppedBySignal(trainer.stopped_by)
    return trainer.run_dir


def save_final(trainer: Trainer) -> None:
    """The model alone (weights, config, tokenizer) in `<run>/checkpoint`: what eval and export read."""
    model_sd = full_model_state(trainer.model)
    if trainer.dist.is_main:
        path = save_model_folder(RunDir(trainer.run_dir).final, unwrap(trainer.model), trainer.cfg, trainer.tokenizer,
                               state=model_sd)
        print(f"mm1: checkpoint saved to {path}")
    barrier(trainer.dist)
