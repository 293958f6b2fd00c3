"""`mm1 bench gpu`: the one prepared GPU check (benchmarks/gpu_check.sh runs it).

On one GPU, in order:
1. correctness on the tiny recipes: bf16 vs fp32 losses over a few optimizer steps; each
   attention path vs the dense mask (loss and gradients, fp32 and bf16); MoE grouped vs loop
   experts (and that the grouped MoE forward makes no host synchronisation);
2. `recipes/ablation_base.yaml` (ViT-L/336, C-Abstractor 144 tokens, 1.2B decoder, 4096-token
   packed rows) with FSDP2 on a one-rank process group, bf16, torch.compile and activation
   checkpointing: tokens/s, MFU and peak memory, once per attention path;
3. a few steps of `recipes/mm1_3b.yaml` with activation checkpointing, and its peak memory.

The big recipes run on the embedded synthetic corpus with the synthetic tokenizer (the vocabulary
is still at least the recipe's 32000 rows) and randomly initialised encoders, so no weights, data
or tokenizer need to be on the machine. `--tiny` puts the tiny recipe in the place of both big
ones, without compile: that is what the test suite runs on a CPU.
"""
from __future__ import annotations

import gc
import statistics
import time
from pathlib import Path

import torch

from mm1.bench.checks import attention_check, moe_check, precision_check, seeded_model
from mm1.bench.train import _mm1_flops, _peak_rss_mib, _sync, real_batches
from mm1.build import param_counts
from mm1.config import Config, load_config
from mm1.model.attention import varlen_available
from mm1.tokenizer import build_tokenizer
from mm1.train.distributed import Dist
from mm1.train.mfu import device_peak_flops, mfu
from mm1.train.optim import build_optimizer, resolve_lr
from mm1.train.parallelize import apply_activation_checkpointing, apply_compile, apply_fsdp
from mm1.shipped import RECIPES
from mm1.train.pretrain import prepare_data
from mm1.train.runtime import autocast_dtype
from mm1.train.trainer import train_step

MIB = 2**20


def synth_overrides(root: str) -> list[str]:
    """Point a recipe at the embedded corpus, the synthetic tokenizer and random encoders."""
    sources = ("{caption: {kind: caption, shards: ['caption/*.tar']}, interleaved: {kind: interleaved, "
               "shards: ['interleaved/*.tar']}, text: {kind: text, shards: ['text/*.tar']}}")
    return [f"data.root={root}", "data.synth=null", f"data.sources={sources}", "data.num_workers=0",
            "data.mixture={caption: 0.45, interleaved: 0.45, text: 0.10}", "model.tokenizer.kind=synth",
            "model.tokenizer.path=null", "model.vision.pretrained=null", "model.decoder.pretrained=null",
            "train.device=auto"]


def attention_paths(device: torch.device, amp=torch.bfloat16) -> list[str]:
    """The non-dense paths that run on this device in this precision (varlen: CUDA, bf16)."""
    paths = ["docs", "flex"]
    return paths + (["varlen"] if device.type == "cuda" and varlen_available() and amp is not None else [])


def correctness(tiny: Config, tiny_moe: Config, device: torch.device, steps: int) -> dict:
    tokenizer = build_tokenizer(tiny.model.tokenizer)
    batches = real_batches(tiny, tokenizer, steps, device)
    moe_batch = real_batches(tiny_moe, build_tokenizer(tiny_moe.model.tokenizer), 1, device)[0]
    precisions = {"fp32": None} | ({"bf16": torch.bfloat16} if device.type == "cuda" else {})
    moe_precisions = {"bf16": torch.bfloat16} if device.type == "cuda" else precisions  # grouped_mm: bf16 on GPUs
    return {"precision": precision_check(tiny, batches),
            "attention": {name: attention_check(tiny, batches[0], attention_paths(device, amp), amp)
                          for name, amp in precisions.items()},
            "moe": {name: moe_check(tiny_moe, moe_batch, amp) for name, amp in moe_precisions.items()}}


def one_rank_group(device: torch.device) -> None:
    """A process group of this process alone, for FSDP2 on one device."""
    import torch.distributed as dist

    if not dist.is_initialized():  # an in-process store: no port to pick
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0,
                                world_size=1)


def training_model(cfg: Config, device: torch.device, amp, fsdp: bool, batches) -> tuple:
    """The recipe's model as pretrain builds it (activation checkpointing, compile, FSDP2), its AdamW,
    and its model FLOPs per token over `batches` (counted before any wrapping)."""
    model = seeded_model(cfg, device)
    flops = _mm1_flops(model, batches)["model_flops_per_token"]
    lr, wd = resolve_lr(cfg.optim, param_counts(model)["decoder_non_embedding"])
    if cfg.parallel.activation_checkpointing:
        apply_activation_checkpointing(model)
    if cfg.parallel.compile:
        apply_compile(model)
    if fsdp:
        one_rank_group(device)
        apply_fsdp(model, cfg.parallel, Dist(), device.type, amp)
    return model, build_optimizer(model, cfg.optim, lr, wd), flops


def throughput(cfg: Config, device: torch.device, steps: int, warmup: int, fsdp: bool) -> dict:
    """Tokens/s, MFU and peak memory of the recipe's training step (median of `steps` after `warmup`)."""
    amp = autocast_dtype(cfg.train, device)
    torch._dynamo.reset()  # each run compiles afresh, so no run inherits another's guards or cache limit
    batches = real_batches(cfg, build_tokenizer(cfg.model.tokenizer), warmup + steps, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    model, optimizer, flops = training_model(cfg, device, amp, fsdp, batches[warmup:])
    times, losses = [], []
    for batch in batches:
        _sync(device)
        start = time.perf_counter()
        losses.append(train_step(model, [batch], optimizer, cfg.optim.grad_clip, device, amp).loss)
        _sync(device)
        times.append(time.perf_counter() - start)
    timed = batches[warmup:]
    rates = [b.num_tokens / t for b, t in zip(timed, times[warmup:])]
    peak, peak_source = device_peak_flops(device)
    memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_rss_mib() * MIB) / MIB
    result = {"tokens_per_s": statistics.median(rates), "step_s": statistics.median(times[warmup:]),
              "first_step_s": times[0], "losses": losses, "model_flops_per_token": flops,
              "mfu": mfu(statistics.median(rates), flops, peak), "peak_flops": peak, "peak_source": peak_source,
              "peak_memory_mib": memory, "batch_shape": list(batches[0].input_ids.shape)}
    del model, optimizer
    gc.collect()
    return result


def big_recipe(name: str, root: str, attention: str, extra: list[str]) -> Config:
    return load_config(RECIPES / name, synth_overrides(root) + [f"model.decoder.attention={attention}",
                                                                "parallel.activation_checkpointing=true", *extra])


def run_gpu_check(root: str | None, tiny: bool = False, steps: int = 3, warmup: int = 2,
                  paths: list[str] | None = None) -> dict:
    """Every part of the check (see the module docstring); `root`: the embedded corpus (None: the tiny
    recipe's, in the user cache); `tiny`: the CPU-sized version; `paths`: the attention paths of the
    ablation_base runs (default: every one that trains on this device)."""
    begin = time.perf_counter()
    root = root or load_config(RECIPES / "tiny.yaml").data.root
    if not Path(root).exists():  # the embedded corpus, as the tiny recipe writes it
        prepare_data(load_config(RECIPES / "tiny.yaml", [f"data.root={root}"]))
    tiny_cfg = load_config(RECIPES / "tiny.yaml", synth_overrides(root) + ["train.batch_size=4"])
    tiny_moe = load_config(RECIPES / "tiny_moe.yaml", synth_overrides(root) + ["train.batch_size=4"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "tiny": tiny, "checks": correctness(tiny_cfg, tiny_moe, device, 4)}
    base, big = ("tiny.yaml", "tiny.yaml") if tiny else ("ablation_base.yaml", "mm1_3b.yaml")
    extra = ["train.batch_size=2", "train.precision=fp32"] if tiny else ["parallel.compile=true"]
    result["ablation_base"] = {}
    trainable = [p for p in ["dense", *attention_paths(device)] if not (p == "flex" and device.type == "cpu")]
    for path in paths or trainable:  # (no FlexAttention backward on CPU)
        cfg = big_recipe(base, root, path, extra)
        result["ablation_base"][path] = throughput(cfg, device, steps, warmup, fsdp=True)
    cfg = big_recipe(big, root, "auto", extra[:1] if tiny else [])
    result["mm1_3b"] = throughput(cfg, device, 2, 1, fsdp=True) | {"attention": "auto"}
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    result["seconds"] = time.perf_counter() - begin
    result["passed"] = passed(result)
    return result


FP32_TOL, BF16_TOL, PRECISION_TOL = 1e-5, 2e-2, 2e-2


def check_rows(result: dict) -> list[tuple[str, float, float]]:
    """(what, worst relative error, tolerance) of every correctness check."""
    c, rows = result["checks"], []
    rows.append(("bf16 vs fp32 losses", c["precision"]["max_rel_diff"], PRECISION_TOL))
    for precision, paths in c["attention"].items():
        tol = FP32_TOL if precision == "fp32" else BF16_TOL
        for path, r in paths.items():
            worst = max(r["loss_rel"], r["grad_rel"] or 0.0)
            rows.append((f"attention {path} vs dense ({precision}{'' if r['grad_rel'] is not None else ', loss'})",
                         worst, tol))
    for precision, r in c["moe"].items():
        tol = FP32_TOL if precision == "fp32" else BF16_TOL
        rows.append((f"MoE grouped vs loop ({precision})", max(r["loss_rel"], r["grad_rel"]), tol))
        if r["host_sync_free"] is not None:
            rows.append((f"MoE grouped forward host syncs ({precision})", float(not r["host_sync_free"]), 0.5))
    return rows


def passed(result: dict) -> bool:
    return all(err <= tol for _, err, tol in check_rows(result))


def format_gpu(result: dict) -> str:
    lines = [f"device {result['device']}, torch {result['torch']}; {result['seconds']:.0f} s"]
    for what, err, tol in check_rows(result):
        lines.append(f"  {what:<46} {err:10.2e}  (<= {tol:g}: {'ok' if err <= tol else 'FAILED'})")
    lines.append(f"  {'run':<24} {'tokens/s':>10} {'MFU':>7} {'step s':>8} {'peak MiB':>9}")
    runs = [(f"ablation_base {p}", r) for p, r in result["ablation_base"].items()] + [("mm1_3b", result["mm1_3b"])]
    for name, r in runs:
        share = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
        lines.append(f"  {name:<24} {r['tokens_per_s']:10.0f} {share:>7} {r['step_s']:8.3f} "
                     f"{r['peak_memory_mib']:9.0f}")
    return "\n".join(lines)
