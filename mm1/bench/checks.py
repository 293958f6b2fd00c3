"""Correctness checks of the fast paths, on whatever device: the parts of `mm1 bench gpu` that the test
suite also runs on a CPU with the tiny recipe.

- `attention_check`: each `model.decoder.attention` path against the dense mask (loss, every gradient);
- `moe_check`: the grouped experts against the loop (output, every gradient), and on CUDA that the
  grouped MoE forward makes no host synchronisation;
- `precision_check`: a few optimizer steps in fp32 and in bf16 from one init on the same batches.

Every figure is a relative error, ||got - ref|| / ||ref||; the largest over the parameters for gradients.
"""
from __future__ import annotations

import copy

import torch

from mm1.build import build, param_counts
from mm1.config.schema import Config
from mm1.data.batch import Batch
from mm1.model.moe import collect_aux, moe_layers
from mm1.train.optim import build_optimizer, resolve_lr
from mm1.train.runtime import autocast
from mm1.train.trainer import train_step


def model_inputs(batch: Batch) -> tuple:
    return (batch.input_ids, batch.images, batch.attention_mask, batch.position_ids, batch.labels,
            batch.segment_ids, batch.cu_seqlens, batch.max_seqlen)


def loss_and_grads(model, batch: Batch, amp=None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of one forward, and every parameter's gradient (none when grad is disabled)."""
    model.zero_grad(set_to_none=True)
    with autocast(batch.input_ids.device, amp):
        out = model(*model_inputs(batch))
    if not torch.is_grad_enabled():
        return out.loss.detach().float(), {}
    out.loss.backward()
    return out.loss.detach().float(), {n: p.grad.float() for n, p in model.named_parameters() if p.grad is not None}


def rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return float((got.float() - ref.float()).norm() / ref.float().norm().clamp(min=1e-30))


def grad_error(got: dict, ref: dict) -> float:
    """Largest relative gradient error over the parameters; inf when they differ in which have one."""
    if got.keys() != ref.keys():
        return float("inf")
    return max((rel(got[n], ref[n]) for n in ref), default=0.0)


def seeded_model(cfg: Config, device):
    torch.manual_seed(cfg.train.seed)
    return build(cfg, device)[1]


def attention_check(cfg: Config, batch: Batch, paths: list[str], amp=None) -> dict[str, dict]:
    """Each path's loss and gradients vs the dense mask's, with one set of weights. On CPU, flex runs
    without gradients (torch has no FlexAttention backward there): its gradients are not compared."""
    cfg = copy.deepcopy(cfg)
    cfg.model.decoder.attention = "docs"  # builds the packed attention implementation; paths are set below
    model = seeded_model(cfg, batch.input_ids.device)
    results = {}
    for path in paths:
        grads = not (path == "flex" and batch.input_ids.device.type == "cpu")
        with torch.set_grad_enabled(grads):
            ref_loss, ref_grads = loss_and_grads(_with(model, "dense"), batch, amp)
            loss, g = loss_and_grads(_with(model, path), batch, amp)
        results[path] = {"loss": float(loss), "dense_loss": float(ref_loss), "loss_rel": rel(loss, ref_loss),
                         "grad_rel": grad_error(g, ref_grads) if grads else None}
    return results


def _with(model, path: str):
    model.cfg.decoder.attention = path
    return model


def moe_check(cfg: Config, batch: Batch, amp=None) -> dict:
    """Grouped vs loop experts on one MoE model: loss, aux loss and gradients; host syncs on CUDA."""
    model = seeded_model(cfg, batch.input_ids.device)
    results = {}
    for impl in ("loop", "grouped"):
        for block in moe_layers(model.decoder):
            block.experts.impl = impl
        results[impl] = loss_and_grads(model, batch, amp)
    (loop_loss, loop_g), (grouped_loss, grouped_g) = results["loop"], results["grouped"]
    out = {"loss_rel": rel(grouped_loss, loop_loss), "grad_rel": grad_error(grouped_g, loop_g),
           "host_sync_free": None}
    if batch.input_ids.device.type == "cuda":
        out["host_sync_free"] = moe_forward_is_sync_free(model, batch, amp)
    return out


def moe_forward_is_sync_free(model, batch: Batch, amp=None) -> bool:
    """Run the first grouped MoE block alone under CUDA's sync debug mode ('error')."""
    block = next(moe_layers(model.decoder))
    x = torch.randn(*batch.input_ids.shape, block.router.in_features, device=batch.input_ids.device)
    block.routed_tokens = batch.attention_mask.bool()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with autocast(x.device, amp):
            block(x)
        return True
    except RuntimeError:
        return False
    finally:
        torch.cuda.set_sync_debug_mode("default")
        collect_aux(model.decoder)


def precision_check(cfg: Config, batches: list[Batch], dtype=torch.bfloat16) -> dict:
    """Optimizer steps in fp32 and under `dtype` autocast from one init, on the same batches."""
    losses = {}
    for name, amp in (("fp32", None), ("bf16", dtype)):
        model = seeded_model(cfg, batches[0].input_ids.device)
        lr, wd = resolve_lr(cfg.optim, param_counts(model)["decoder_non_embedding"])
        optimizer = build_optimizer(model, cfg.optim, lr, wd)
        device = batches[0].input_ids.device
        losses[name] = [train_step(model, [b], optimizer, cfg.optim.grad_clip, device, amp).loss for b in batches]
    worst = max(abs(a - b) / abs(a) for a, b in zip(losses["fp32"], losses["bf16"]))
    return {"fp32": losses["fp32"], "bf16": losses["bf16"], "max_rel_diff": worst}
