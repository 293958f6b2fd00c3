"""`mm1 bench train`: speed of mm1's training step, and of Hugging Face Llava's, in one run.

mm1's step is `mm1.train.trainer.train_step` (forward, backward, gradient clipping,
AdamW). The reference is `transformers.LlavaForConditionalGeneration` built to the
same sizes: a CLIP vision tower of the same width, depth (the blocks mm1 runs, up
to its feature layer), heads, MLP ratio, activation and image size, mm1's own
decoder config as its text model, and the same step (forward with labels, backward, clipping,
AdamW with mm1's parameter groups). Both get the same real batches from the
recipe's loader, already on the device: same input ids, images, position ids and
block-diagonal document mask.

Matching image tokens: Llava's projector keeps every patch (CLS dropped), mm1's
connector pools to T tokens per image. Llava's patch size is therefore set to
image_size / sqrt(T), so that both splice T tokens per image into identical
sequences. When T is smaller than mm1's patch count, Llava's encoder runs on
fewer, larger patches than mm1's, a cheaper encoder (reported as
`vision_tokens_per_image`); with T = mm1's patch count the encoders are identical.

Timing: `warmup` untimed steps, then `steps` timed ones; the two models alternate
(ABBA order) on the same batch; figures are medians. Peak memory: on CUDA,
torch.cuda.max_memory_allocated per model; on CPU, the peak RSS (VmHWM) of a
fresh process that builds the batches and one model and runs a few steps.
"""
from __future__ import annotations

import copy
import itertools
import math
import multiprocessing
import resource
import statistics
import time
from typing import Callable

import open_clip
import torch
import transformers
from torch.utils.flop_counter import FlopCounterMode

from mm1.bench.checks import model_inputs
from mm1.build import build, param_counts
from mm1.config.schema import Config
from mm1.config.tree import apply_override
from mm1.data.batch import Batch
from mm1.data.loader import MixedBatches
from mm1.model.attention import document_mask
from mm1.model.vision import normalise_pixels
from mm1.tokenizer import build_tokenizer
from mm1.train.mfu import decoder_flops_per_token, device_peak_flops, image_flops, mfu
from mm1.train.optim import build_optimizer, resolve_lr
from mm1.train.runtime import autocast, autocast_dtype, pick_device
from mm1.train.trainer import train_step

Step = Callable[[Batch], None]
MIB = 2**20


def real_batches(cfg: Config, tokenizer, count: int, device: torch.device) -> list[Batch]:
    return [b.to(device) for b in itertools.islice(MixedBatches(cfg, tokenizer), count)]


def mm1_step(cfg: Config, device: torch.device) -> tuple[torch.nn.Module, Step]:
    torch.manual_seed(cfg.train.seed)
    _, model = build(cfg, device)
    lr, wd = resolve_lr(cfg.optim, param_counts(model)["decoder_non_embedding"])
    optimizer = build_optimizer(model, cfg.optim, lr, wd)
    amp = autocast_dtype(cfg.train, device)
    model.train()
    return model, lambda batch: train_step(model, [batch], optimizer, cfg.optim.grad_clip, device, amp)


def llava_config(cfg: Config, mm1_model) -> transformers.LlavaConfig:
    """Llava of mm1's sizes whose projector gives mm1's T tokens per image (see the module docstring)."""
    v, tokens = cfg.model.vision, cfg.model.connector.num_tokens
    side = math.isqrt(tokens)
    if side * side != tokens or v.image_size % side:
        raise ValueError(f"Llava cannot give {tokens} tokens per {v.image_size}px image: it needs a square "
                         f"number of tokens whose side divides the image size")
    vision = transformers.CLIPVisionConfig(
        hidden_size=v.width, intermediate_size=int(v.width * v.mlp_ratio), num_attention_heads=v.heads,
        num_hidden_layers=v.feature_layer % v.layers + 1, image_size=v.image_size, patch_size=v.image_size // side,
        hidden_act=_activation(mm1_model))
    return transformers.LlavaConfig(
        vision_config=vision, text_config=copy.deepcopy(mm1_model.decoder.config),
        image_token_index=mm1_model.image_token_id, vision_feature_layer=-1,
        vision_feature_select_strategy="default")


def _activation(mm1_model) -> str:
    """The MLP activation of mm1's vision tower, as a transformers `hidden_act` name."""
    quick = any(isinstance(m, open_clip.transformer.QuickGELU) for m in mm1_model.vision.modules())
    return "quick_gelu" if quick else "gelu"


def llava_step(cfg: Config, mm1_model, device: torch.device) -> tuple[torch.nn.Module, Step]:
    torch.manual_seed(cfg.train.seed)
    with torch.device(device):
        model = transformers.LlavaForConditionalGeneration(llava_config(cfg, mm1_model))
    lr, wd = resolve_lr(cfg.optim, param_counts(mm1_model)["decoder_non_embedding"])
    optimizer = build_optimizer(model, cfg.optim, lr, wd)
    amp = autocast_dtype(cfg.train, device)
    model.train()

    def step(batch: Batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        mask = batch.attention_mask if batch.segment_ids is None else document_mask(batch.segment_ids)
        with autocast(device, amp):
            out = model(input_ids=batch.input_ids, pixel_values=normalise_pixels(batch.images), attention_mask=mask,
                        position_ids=batch.position_ids, labels=batch.labels, use_cache=False)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
        optimizer.step()
        out.loss.item()

    return model, step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(steps: dict[str, Step], batches: list[Batch] | dict[str, list[Batch]], warmup: int, count: int,
               device: torch.device) -> dict[str, list[float]]:
    """Seconds per timed step of each model; the models alternate (ABBA) on the same batch, or on their
    own i-th batch when `batches` maps each model to its own list."""
    names, times = list(steps), {name: [] for name in steps}
    for i in range(warmup + count):
        for name in names if i % 2 == 0 else reversed(names):
            own = batches[name] if isinstance(batches, dict) else batches
            batch = own[i % len(own)]
            _sync(device)
            start = time.perf_counter()
            steps[name](batch)
            _sync(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def counted_flops(step: Step, batch: Batch) -> int:
    """FLOPs torch's flop counter sees in one step (what was computed, padding included)."""
    with FlopCounterMode(display=False) as counter:
        step(batch)
    return counter.get_total_flops()


def _peak_rss_mib() -> float:
    """This process's peak resident set size. Linux: VmHWM, the peak of this process image; getrusage's
    ru_maxrss would also hold the RSS of the parent that forked it (kept across exec)."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) * 1024 / MIB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MIB  # Linux units: KiB


def _peak_memory_child(cfg: Config, which: str, steps: int) -> dict:
    """Run in a fresh process: build the batches and one model, take `steps` steps, report the peak."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = pick_device(cfg.train.device)
    batches = real_batches(cfg, build_tokenizer(cfg.model.tokenizer), steps, device)
    before = _peak_rss_mib()
    _, step = build_contenders(cfg, device, [which])
    for batch in batches:
        step[which](batch)
    if device.type == "cuda":
        return {"peak_memory_mib": torch.cuda.max_memory_allocated(device) / MIB,
                "peak_memory_kind": "torch.cuda.max_memory_allocated"}
    return {"peak_memory_mib": _peak_rss_mib(), "peak_memory_kind": "peak RSS of a fresh process",
            "rss_before_model_mib": before}


def peak_memory(cfg: Config, which: str, steps: int = 3) -> dict:
    """Peak memory of one model's training steps, alone in a fresh (spawned) process."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_peak_memory_child, (cfg, which, steps))


def build_contenders(cfg: Config, device: torch.device, names: list[str]) -> tuple[dict, dict[str, Step]]:
    """The models and step functions of `names` ("mm1", "llava"); Llava alone is sized from a meta mm1."""
    models, steps = {}, {}
    if "mm1" in names:
        models["mm1"], steps["mm1"] = mm1_step(cfg, device)
    if "llava" in names:
        reference = models["mm1"] if "mm1" in models else build(cfg, "meta")[1]
        models["llava"], steps["llava"] = llava_step(cfg, reference, device)
    return models, steps


def llava_skip_reason(cfg: Config) -> str | None:
    if cfg.model.decoder.moe is not None:
        return "the recipe's decoder is MoE; Llava's decoder would be dense"
    return None


def _medians(times: list[float], tokens: list[int], images: list[int]) -> dict:
    return {"step_s": statistics.median(times), "step_s_min": min(times), "step_s_all": times,
            "tokens_per_s": statistics.median(t / s for t, s in zip(tokens, times, strict=True)),
            "images_per_s": statistics.median(i / s for i, s in zip(images, times, strict=True))}


def bench_train(cfg: Config, steps: int = 10, warmup: int = 3, num_batches: int = 4, llava: bool = True,
                memory: bool = True, peak: float | None = None, padded: bool = True) -> dict:
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = pick_device(cfg.train.device)
    batches = real_batches(cfg, build_tokenizer(cfg.model.tokenizer), num_batches, device)
    skipped = "--no-llava" if not llava else llava_skip_reason(cfg)
    names = ["mm1"] + ([] if skipped else ["llava"])
    models, step_fns = build_contenders(cfg, device, names)
    probes = [device_peak_flops(device)]  # a CPU is probed before and after the timed steps; the best is its peak
    times = time_steps(step_fns, batches, warmup, steps, device)
    probes.append(device_peak_flops(device))
    peak_flops, peak_source = (peak, "--peak-tflops") if peak else max(probes, key=lambda p: p[0] or 0)
    used = [batches[(warmup + i) % len(batches)] for i in range(steps)]
    tokens, images = [b.num_tokens for b in used], [b.images.shape[0] for b in used]
    amp = autocast_dtype(cfg.train, device)
    result = {"device": str(device), "threads": torch.get_num_threads(), "precision": "fp32" if amp is None else "bf16",
              "batch_shape": list(batches[0].input_ids.shape), "steps": steps, "warmup": warmup,
              "tokens_per_step": statistics.mean(tokens), "images_per_step": statistics.mean(images),
              "peak_flops": peak_flops, "peak_source": peak_source, "peak_probes": [p[0] for p in probes],
              "llava_skipped": skipped}
    result.update(_mm1_flops(models["mm1"], used))
    for name in names:
        result[name] = _medians(times[name], tokens, images)
        result[name]["counted_flops_per_step"] = counted_flops(step_fns[name], used[0])
        if memory:
            result[name].update(peak_memory(cfg, name))
    m = result["mm1"]
    m["model_flops_per_s"] = m["tokens_per_s"] * result["model_flops_per_token"]
    m["mfu"] = mfu(m["tokens_per_s"], result["model_flops_per_token"], peak_flops)
    if "llava" in names:
        result["match"] = _match(cfg, models["llava"])
        result["speedup_mm1_over_llava"] = statistics.median(
            a / b for a, b in zip(times["llava"], times["mm1"], strict=True))
        result["speedup_of_fastest_steps"] = min(times["llava"]) / min(times["mm1"])
        if padded:
            result["samples"] = packed_vs_padded(cfg, step_fns, batches, warmup, steps, device)
    return result


def packed_vs_padded(cfg: Config, step_fns: dict[str, Step], packed: list[Batch], warmup: int, count: int,
                     device: torch.device) -> dict:
    """Samples (examples) per second: mm1 on the recipe's packed rows vs Llava on one example per row,
    padded to the batch's longest (data.packing=false), as peers train; both read the recipe's corpus
    from the start, alternating."""
    flat = copy.deepcopy(cfg)
    flat.data.packing = False
    batches = {"mm1": packed, "llava": real_batches(flat, build_tokenizer(cfg.model.tokenizer), len(packed), device)}
    times = time_steps(step_fns, batches, warmup, count, device)
    rates = {}
    for name, own in batches.items():
        per_step = [len(own[(warmup + i) % len(own)].keys) for i in range(count)]
        rates[name] = statistics.median(n / t for n, t in zip(per_step, times[name], strict=True))
    shapes = {name: list(own[0].input_ids.shape) for name, own in batches.items()}
    return {"mm1_packed_samples_per_s": rates["mm1"], "llava_padded_samples_per_s": rates["llava"],
            "ratio": rates["mm1"] / rates["llava"], "batch_shapes": shapes}


def _mm1_flops(model, batches: list[Batch]) -> dict:
    """mm1's model FLOPs (mm1.train.mfu) over the timed steps' batches, per token."""
    per_image, rows = image_flops(model), [b.input_ids.shape[1] for b in batches]
    total = sum(b.num_tokens * decoder_flops_per_token(model.decoder, b.input_ids.shape[1])
                + b.images.shape[0] * per_image for b in batches)
    return {"decoder_flops_per_token": decoder_flops_per_token(model.decoder, max(rows)), "image_flops": per_image,
            "model_flops_per_token": total / sum(b.num_tokens for b in batches)}


def _match(cfg: Config, llava) -> dict:
    v, vis = cfg.model.vision, llava.config.vision_config
    return {"image_tokens_per_image": cfg.model.connector.num_tokens, "image_size": v.image_size,
            "mm1_patch_size": v.patch_size, "llava_patch_size": vis.patch_size,
            "mm1_vision_tokens_per_image": (v.image_size // v.patch_size) ** 2 + 1,  # patches + CLS
            "llava_vision_tokens_per_image": (vis.image_size // vis.patch_size) ** 2 + 1,
            "attn_implementation": llava.config.text_config._attn_implementation}


def bench_variants(cfg: Config, variants: dict[str, list[str]], steps: int = 10, warmup: int = 3,
                   num_batches: int = 4) -> dict:
    """mm1's training step under each variant (dotted overrides of `cfg`), alternating on the same
    batches, same init: median step time, tokens/s, and each variant's speed relative to the first
    (the median of the per-step ratios). Variants must not change the batches (data settings)."""
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    device = pick_device(cfg.train.device)
    batches = real_batches(cfg, build_tokenizer(cfg.model.tokenizer), num_batches, device)
    steps_by_name, losses = {}, {}
    for name, overrides in variants.items():
        variant = copy.deepcopy(cfg)
        for override in overrides:
            apply_override(variant, override)
        model, steps_by_name[name] = mm1_step(variant, device)
        with torch.no_grad():
            losses[name] = float(model(*model_inputs(batches[0])).loss)
    times = time_steps(steps_by_name, batches, warmup, steps, device)
    used = [batches[(warmup + i) % len(batches)] for i in range(steps)]
    tokens, images = [b.num_tokens for b in used], [b.images.shape[0] for b in used]
    first = next(iter(variants))
    result = {"device": str(device), "threads": torch.get_num_threads(),
              "batch_shape": list(batches[0].input_ids.shape), "steps": steps, "warmup": warmup, "variants": {}}
    for name in variants:
        r = _medians(times[name], tokens, images) | {"overrides": variants[name], "first_loss": losses[name]}
        r["speed_vs_" + first] = statistics.median(a / b for a, b in zip(times[first], times[name], strict=True))
        result["variants"][name] = r
    return result
