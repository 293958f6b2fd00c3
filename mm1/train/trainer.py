"""One optimizer step, and the loop that runs them and logs."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import torch
from tqdm import tqdm

from mm1.config.schema import Config
from mm1.data.batch import Batch
from mm1.model.mm1 import MM1Model
from mm1.train.metrics import MetricsWriter, Throughput
from mm1.train.optim import lr_at
from mm1.train.runtime import autocast


@dataclass
class StepResult:
    loss: float  # mean loss over every labelled token of the step
    grad_norm: float
    tokens: int  # non-padding positions
    images: int


def train_step(model: MM1Model, batches: list[Batch], optimizer, grad_clip: float, device, amp_dtype) -> StepResult:
    """Accumulate gradients over micro-batches, weighting each by its share of labelled tokens,
    so the step equals one step on the concatenated batch."""
    total = sum(int((b.labels[:, 1:] != -100).sum()) for b in batches)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    for batch in batches:
        batch = batch.to(device)
        with autocast(device, amp_dtype):
            out = model(batch.input_ids, batch.images, batch.attention_mask, batch.position_ids, batch.labels)
        loss = out.loss * (out.num_label_tokens / max(total, 1))
        if out.aux_loss is not None:
            loss = loss + out.aux_loss / len(batches)
        loss.backward()
        loss_sum += out.loss.item() * out.num_label_tokens
    params = [p for p in model.parameters() if p.grad is not None]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()
    return StepResult(
        loss_sum / max(total, 1), float(grad_norm),
        sum(b.num_tokens for b in batches), sum(b.images.shape[0] for b in batches),
    )


class DataStats:
    """Realised source proportions and skipped-sample counts."""

    def __init__(self, loader):
        self.loader = loader
        self.sources: Counter = Counter()

    def add(self, batch: Batch) -> None:
        self.sources.update(batch.sources)

    def record(self) -> dict:
        total = sum(self.sources.values())
        out = {f"mix/{name}": round(n / total, 4) for name, n in sorted(self.sources.items())}
        out.update({f"skipped/{reason}": n for reason, n in sorted(self.loader.skips().items())})
        return out


def train_loop(cfg: Config, model, optimizer, loader, device, amp_dtype, peak_lr: float, writer: MetricsWriter):
    batches: Iterator[Batch] = iter(loader)
    stats, speed = DataStats(loader), Throughput()
    bar = tqdm(range(cfg.train.steps), desc="pretrain", dynamic_ncols=True, mininterval=1.0)
    model.train()
    for step in bar:
        lr = lr_at(step, peak_lr, cfg.optim.warmup_steps, cfg.train.steps, cfg.optim.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        micro = [next(batches) for _ in range(cfg.train.grad_accum)]
        for batch in micro:
            stats.add(batch)
        result = train_step(model, micro, optimizer, cfg.optim.grad_clip, device, amp_dtype)
        speed.add(result.tokens)
        bar.set_postfix(loss=f"{result.loss:.3f}", lr=f"{lr:.2e}", refresh=False)
        if step % cfg.train.log_every == 0 or step == cfg.train.steps - 1:
            record = {"step": step + 1, "loss": result.loss, "lr": lr, "grad_norm": result.grad_norm,
                      "tokens_per_s": round(speed.rate(), 1), "images": result.images, **stats.record()}
            writer.write(record)
            bar.set_postfix(loss=f"{result.loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
    bar.close()
