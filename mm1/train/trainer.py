"""The training loop: steps, logging, full-state checkpoints, signals and numerical faults."""
from __future__ import annotations

import math
import signal
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from mm1.config.schema import Config
from mm1.data.batch import IGNORE, Batch
from mm1.data.loader import check_damaged_shards, check_skip_rate
from mm1.layout import RunDir
from mm1.train.checkpoints import load_state, save_state
from mm1.train.distributed import Dist, all_reduce_sum
from mm1.train.evaluation import evaluate_run
from mm1.train.metrics import MetricsWriter, Progress, Throughput
from mm1.train.mfu import step_flops
from mm1.train.optim import lr_at
from mm1.train.resume import schedule_change
from mm1.train.parallelize import unwrap
from mm1.train.runtime import autocast


class StoppedBySignal(Exception):
    """A stop signal (STOP_SIGNALS) stopped the run after a checkpoint; the command exits 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by signal {signum}")
        self.signum = signum


class NumericalFault(RuntimeError):
    """Too many consecutive steps with a non-finite loss or gradient norm."""


@dataclass
class StepResult:
    loss: float  # mean loss over every labelled token of the step
    grad_norm: float
    tokens: int  # non-padding positions
    images: int
    skipped: bool = False  # non-finite loss or gradient: no update was made
    aux: dict | None = None


def train_step(model, batches: list[Batch], optimizer, grad_clip: float, device, amp_dtype,
               d: Dist = Dist()) -> StepResult:
    """Accumulate gradients over micro-batches, weighting each by its share of the labelled tokens of
    the whole step on every rank, so the update equals one step on the concatenated global batch.
    A non-finite loss or gradient norm on any rank skips the update on all ranks."""
    local = sum(int((b.labels[:, 1:] != IGNORE).sum()) for b in batches)
    total = max(all_reduce_sum(local, d, device), 1)
    scale = d.world_size / total  # DDP and FSDP average gradients over ranks
    optimizer.zero_grad(set_to_none=True)
    loss_sum, bad, aux = 0.0, 0, Counter()
    for batch in batches:
        batch = batch.to(device)
        with autocast(device, amp_dtype):
            out = model(batch.input_ids, batch.images, batch.attention_mask, batch.position_ids, batch.labels,
                        batch.segment_ids, batch.cu_seqlens, batch.max_seqlen)
        loss = out.loss * out.num_label_tokens * scale
        if out.aux_loss is not None:
            loss = loss + out.aux_loss / len(batches)
            aux.update({k: v / len(batches) for k, v in (out.aux or {}).items()})
        bad += int(not torch.isfinite(loss))
        loss.backward()  # even when non-finite: every rank must take part in the gradient collectives
        loss_sum += out.loss.item() * out.num_label_tokens
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
    bad = all_reduce_sum(bad, d, device)
    mean_loss = all_reduce_sum(loss_sum, d, device) / total
    tokens = int(all_reduce_sum(sum(b.num_tokens for b in batches), d, device))
    images = int(all_reduce_sum(sum(b.images.shape[0] for b in batches), d, device))
    if bad or not math.isfinite(grad_norm):
        optimizer.zero_grad(set_to_none=True)
        return StepResult(float("nan") if bad else mean_loss, grad_norm, tokens, images, skipped=True)
    optimizer.step()
    return StepResult(mean_loss, grad_norm, tokens, images, aux=dict(aux))


UNKNOWN_WARN_SHARE = 0.01  # warn when more than this share of a source's labelled tokens are <unk>


class DataStats:
    """The realised mixture and skipped-sample counts. The mixture is counted since the start of the run
    (a resume restores the counts) in three units per source: documents (at their first piece), tokens
    (sequence positions, image placeholders included) and labelled tokens (positions with a loss label).
    `unk/<source>`: the share of the source's labelled tokens that are <unk>; above UNKNOWN_WARN_SHARE,
    a warning (once per source) says that the tokenizer does not fit the data."""

    def __init__(self, loader):
        self.loader = loader
        self.mix = {unit: Counter() for unit in ("documents", "tokens", "labelled")}
        self.unknown: Counter = Counter()
        self.warned: set[str] = set()

    def add(self, batch: Batch) -> None:
        for source, starts, tokens, labelled, unknown in zip(
                batch.sources, batch.document_starts, batch.example_tokens, batch.example_labelled,
                batch.example_unknown, strict=True):
            self.mix["documents"][source] += starts
            self.mix["tokens"][source] += tokens
            self.mix["labelled"][source] += labelled
            self.unknown[source] += unknown

    def state(self) -> dict:
        return {**{unit: dict(counts) for unit, counts in self.mix.items()}, "unknown": dict(self.unknown)}

    def restore(self, state: dict) -> None:
        for unit, counts in state.items():
            (self.unknown if unit == "unknown" else self.mix[unit]).update(counts)

    def unknown_shares(self) -> dict[str, float]:
        return {name: round(self.unknown[name] / max(n, 1), 4) for name, n in sorted(self.mix["labelled"].items())}

    def warn_unknown(self, tokenizer_kind: str) -> None:
        for name, share in self.unknown_shares().items():
            if share > UNKNOWN_WARN_SHARE and name not in self.warned:
                self.warned.add(name)
                print(f"mm1: warning: {share:.1%} of the text tokens of source {name!r} are <unk>: the "
                      f"tokenizer ({tokenizer_kind}) does not cover this data; use one that does (model.tokenizer, "
                      f"e.g. kind=bytes or a pretrained decoder's own)", file=sys.stderr)

    def record(self) -> dict:
        out = {}
        for unit, counts in self.mix.items():
            total = max(sum(counts.values()), 1)
            out.update({f"mix/{unit}/{name}": round(n / total, 4) for name, n in sorted(counts.items())})
        out.update({f"unk/{name}": share for name, share in self.unknown_shares().items()})
        out.update({f"skipped/{reason}": n for reason, n in sorted(self.loader.skips().items())})
        damaged = self.loader.damaged_shards()
        out.update({"shards/read": self.loader.shards_done(), "shards/damaged": sum(damaged.values())})
        return out


# SIGTERM / SIGINT (a kill, Ctrl-C, a pre-emption) and SIGUSR1 / SIGUSR2 (what a scheduler such as Slurm
# is asked to send before a time limit, `sbatch --signal=USR2@120`) ask for a checkpoint and a clean exit.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


class StopSignal:
    """A stop signal asks for a checkpoint and a clean exit at the next step boundary."""

    def __init__(self):
        self.received: int | None = None
        self._previous = {}

    def __enter__(self):
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Trainer:
    def __init__(self, cfg: Config, *, model, optimizer, loader, tokenizer, device, amp_dtype, run_dir: Path,
                 dist: Dist = Dist(), flops: dict | None = None, eval_tasks: list | None = None, loggers: tuple = ()):
        self.cfg, self.model, self.optimizer, self.loader = cfg, model, optimizer, loader
        self.tokenizer, self.device, self.amp_dtype, self.run_dir = tokenizer, device, amp_dtype, Path(run_dir)
        self.dist = dist
        self.flops = flops or {}  # per_image, peak (FLOP/s or None), mfu_key, from mm1.train.mfu
        self.eval_tasks = eval_tasks or []  # TaskData of eval.tasks (mm1.train.evaluation.prepare_training_eval)
        self.step, self.bad_in_a_row, self.skipped_steps = 0, 0, 0
        self.stopped_by: int | None = None  # the signal that stopped the run early
        self.stats, self.speed, self.progress = DataStats(loader), Throughput(), Progress()
        self.writer = MetricsWriter(self.run_dir, loggers) if dist.is_main else None

    def restore(self, path: Path) -> None:
        state = load_state(path, self.model, self.optimizer, self.dist)
        self.step, self.skipped_steps = state["step"], state["skipped_steps"]
        self.stats.restore(state.get("mix", {}))  # checkpoints saved before the three units held none
        if "progress" in state:  # checkpoints saved before it was counted start from 0
            self.progress.restore(state["progress"])
        if state.get("data_slots") == self._data_slots():
            per_rank = state["data"]["consumed"] // self.dist.world_size  # ranks consume in lockstep
            self.loader.load_state_dict({"consumed": per_rank, "slots": state["data"]["slots"]})
        elif self.dist.is_main:
            print(f"mm1: saved with {state.get('data_slots')} data slots (ranks x workers), resumed with "
                  f"{self._data_slots()}: model, optimizer and step restored; the data position restarts")
        if self.writer is not None:
            self.writer.drop_after(self.step)
        if self.dist.is_main:
            print(f"mm1: resumed from {path} at step {self.step}")
            change = schedule_change(path, self.cfg, self.step)
            if change:
                print(change, file=sys.stderr)

    def _data_slots(self) -> int:
        return self.dist.world_size * max(1, self.cfg.data.num_workers)

    def _gather_data_state(self) -> dict:
        """Every rank's loader position, merged: slots are disjoint, consumed batches add up."""
        local = self.loader.state_dict()
        if not self.dist.enabled:
            return local
        states = [None] * self.dist.world_size
        torch.distributed.all_gather_object(states, local)
        slots = {k: v for state in states for k, v in state["slots"].items()}
        return {"consumed": sum(state["consumed"] for state in states), "slots": slots}

    def save(self) -> Path:
        trainer = {"step": self.step, "skipped_steps": self.skipped_steps, "mix": self.stats.state(),
                   "progress": self.progress.state(),
                   "data": self._gather_data_state(), "data_slots": self._data_slots()}
        return save_state(self.run_dir, self.model, self.optimizer, self.cfg, self.tokenizer, trainer,
                          self.cfg.train.keep_checkpoints, self.dist)

    def run(self) -> bool:
        """Train to `train.steps`; returns False if a signal stopped the run early (after a checkpoint)."""
        cfg = self.cfg.train
        batches = iter(self.loader)
        bar = tqdm(total=cfg.steps, initial=self.step, desc="pretrain", dynamic_ncols=True, mininterval=1.0,
                   disable=not self.dist.is_main)
        self.model.train()
        self.progress.start_clock()
        with StopSignal() as stop:
            while self.step < cfg.steps:
                result = self._one_step(batches)
                self.step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{result.loss:.3f}", skipped=self.skipped_steps, refresh=False)
                self._log(result)
                self._check_faults()
                check_skip_rate(self.loader, self.cfg.data.max_skip_rate)
                check_damaged_shards(self.loader, self.cfg.data.max_damaged_shard_rate)
                self._maybe_evaluate()
                if self._stop_requested(stop):
                    self.stopped_by = stop.received or signal.SIGTERM  # another rank's signal
                    path = self.save()
                    if self.dist.is_main:
                            print(f"\nmm1: stopped by signal at step {self.step}; checkpoint {path}\n"
                              f"mm1: resume with: mm1 pretrain RECIPE [overrides] --resume auto")
                    return False
                due = cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.step < cfg.steps
                if due and self.bad_in_a_row == 0:  # never checkpoint in the middle of a fault streak
                    self.save()
        bar.close()
        self.save()
        return True

    def _stop_requested(self, stop: StopSignal) -> bool:
        """Any rank's signal stops every rank at the same step."""
        return all_reduce_sum(stop.received is not None, self.dist, self.device) > 0

    def _one_step(self, batches) -> StepResult:
        lr = self._lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        micro = [next(batches) for _ in range(self.cfg.train.grad_accum)]
        for batch in micro:
            self.stats.add(batch)
        result = train_step(self.model, micro, self.optimizer, self.cfg.optim.grad_clip, self.device,
                            self.amp_dtype, self.dist)
        self.speed.add(result.tokens, self._step_flops(result))
        self.progress.add(result.tokens, result.images)
        self.skipped_steps += result.skipped
        self.bad_in_a_row = self.bad_in_a_row + 1 if result.skipped else 0
        return result

    def _step_flops(self, result: StepResult) -> int:
        if not self.flops:
            return 0
        decoder = unwrap(self.model).decoder
        return step_flops(result.tokens, result.images, self.cfg.data.seq_len, decoder, self.flops["per_image"])

    def _check_faults(self) -> None:
        if self.bad_in_a_row >= self.cfg.train.max_bad_steps:
            raise NumericalFault(
                f"{self.bad_in_a_row} consecutive steps had a non-finite loss or gradient norm (up to step "
                f"{self.step}); the last good checkpoint is kept in {RunDir(self.run_dir).checkpoints}"
            )

    def _lr(self) -> float:
        o = self.cfg.optim
        return lr_at(self.step, o.lr, o.warmup_steps, self.cfg.train.steps, o.min_lr_ratio)

    def _log(self, result: StepResult) -> None:
        if self.writer is None:
            return
        if self.step % self.cfg.train.log_every and self.step not in (1, self.cfg.train.steps) and not result.skipped:
            return
        tokens_per_s, flops_per_s = self.speed.rates()
        peak = self.flops.get("peak")
        record = {"step": self.step, "loss": result.loss, "lr": self._lr_used(), "grad_norm": result.grad_norm,
                  "tokens_per_s": round(tokens_per_s, 1), "model_flops_per_s": flops_per_s,
                  self.flops.get("mfu_key", "mfu"): round(flops_per_s / peak, 4) if peak else None,
                  "images": result.images, "skipped_steps": self.skipped_steps, **self.progress.record(),
                  **(result.aux or {}), **self.stats.record()}
        self.writer.write(record)
        self.stats.warn_unknown(self.cfg.model.tokenizer.kind)

    def _lr_used(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def _maybe_evaluate(self) -> None:
        e = self.cfg.eval
        if not self.eval_tasks:
            return
        if self.step == self.cfg.train.steps or (e.every and self.step % e.every == 0):
            scores = evaluate_run(self.model, self.cfg, self.tokenizer, self.eval_tasks, self.step, self.run_dir,
                                  self.dist, self.device)
            if self.writer is not None:
                self.writer.write({"step": self.step, **scores})

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
