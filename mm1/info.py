"""`mm1 info`: parameters, FLOPs and memory per GPU of a recipe, built on the meta device (no memory).

Parameters: total per part, and `decoder_active`, the decoder parameters one token uses
(an MoE block counts its router and top_k of its num_experts experts).

FLOPs, for training (forward + backward = 3x forward), counting 2 FLOPs per multiply-add
of matmuls and convolutions only:
  flops_per_token = 6 * N_active + 12 * n_layers * d_attn * seq_len
    N_active = `decoder_active` minus the input embedding table (a lookup; the output head
      is a matmul and counts, tied or not);
    12 * n_layers * d_attn * seq_len = the attention scores QK^T and the weighted sum AV at
      full length (d_attn = heads * head_dim), PaLM's MFU convention: a causal kernel skips
      about half of it.
  flops_per_image = the vision encoder's and the connector's forward FLOPs, counted by
    torch.utils.flop_counter on the meta device, times 3 (times 1 for a frozen encoder, which
    needs no backward). A training sequence costs seq_len * flops_per_token plus
    flops_per_image for each image it holds.

Memory per GPU, FSDP2 with fp32 master weights (model states only, activations excluded):
  sharded   = (16 bytes per trainable parameter: fp32 weight, fp32 gradient, AdamW's two fp32
               moments; 4 bytes per frozen one) / dp_shard
  gathered  = compute-dtype bytes (2 for bf16, 4 for fp32) x (the parameters outside the
               repeated blocks, which stay gathered for the step, + 2 x the largest block:
               the one computing and the one prefetched)
  dp_shard comes from `--gpus N`: parallel.dp_shard if set, else N / parallel.dp_replicate.
  `--gpus` defaults to parallel.gpus, the layout the recipe states (else 8).

Smallest GPU count (`--gpu-memory GIB`): the fewest GPUs (a multiple of parallel.dp_replicate, or
exactly dp_replicate x dp_shard when dp_shard is set) whose model states per GPU fit in GIB. The
gathered term does not shrink with more GPUs, so some budgets fit on no count. Leave room for the
activations: e.g. --gpu-memory 60 on 80 GB cards.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch

from mm1.build import param_counts, vocab_size_for
from mm1.config import Config, ConfigError
from mm1.model.mm1 import MM1Model
from mm1.tokenizer import build_tokenizer
from mm1.train.mfu import decoder_flops_per_token, image_flops
from mm1.train.optim import resolve_lr
from mm1.train.parallelize import blocks  # the FSDP units

GIB = 2**30


def _vocab_size(cfg: Config) -> int:
    if cfg.model.decoder.vocab_size is not None:
        return cfg.model.decoder.vocab_size
    return vocab_size_for(cfg, build_tokenizer(cfg.model.tokenizer))


def meta_model(cfg: Config) -> MM1Model:
    cfg = copy.deepcopy(cfg)
    cfg.model.vision.pretrained = None  # no weights are read on the meta device
    decoder_hf_cfg = None
    if cfg.model.decoder.pretrained:
        from transformers import AutoConfig

        decoder_hf_cfg = AutoConfig.from_pretrained(cfg.model.decoder.pretrained, local_files_only=True)
    with torch.device("meta"):
        return MM1Model(cfg.model, _vocab_size(cfg), image_token_id=0, decoder_hf_cfg=decoder_hf_cfg)


def _numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def memory_per_gpu(cfg: Config, model: MM1Model, gpus: int) -> dict:
    """Model-state memory per GPU under FSDP2; see the module docstring."""
    par = cfg.parallel
    shard = gpus // par.dp_replicate if par.dp_shard == -1 else par.dp_shard
    if gpus <= 0 or par.dp_replicate * shard != gpus:
        raise ConfigError(f"parallel.dp_replicate ({par.dp_replicate}) x parallel.dp_shard ({shard}) must equal "
                          f"--gpus ({gpus})")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = _numel(model)
    unit_sizes = [_numel(b) for b in blocks(model)]
    compute_bytes = 4 if cfg.train.precision == "fp32" else 2  # auto = bf16 on the GPUs this estimates
    sharded = (16 * trainable + 4 * (total - trainable)) / shard
    gathered = compute_bytes * (total - sum(unit_sizes) + 2 * max(unit_sizes))
    return {"gpus": gpus, "dp_replicate": par.dp_replicate, "dp_shard": shard,
            "compute_dtype": "fp32" if compute_bytes == 4 else "bf16",
            "sharded_states_gib": round(sharded / GIB, 2), "gathered_params_gib": round(gathered / GIB, 2),
            "total_gib": round((sharded + gathered) / GIB, 2)}


MAX_GPUS = 16384


def min_gpus(cfg: Config, model: MM1Model, budget_gib: float) -> dict:
    """The smallest GPU count whose model states per GPU fit in `budget_gib` ({"gpus": None} if none does)."""
    par = cfg.parallel
    counts = [par.dp_replicate * par.dp_shard] if par.dp_shard != -1 else range(par.dp_replicate, MAX_GPUS + 1,
                                                                                  par.dp_replicate)
    for n in counts:
        memory = memory_per_gpu(cfg, model, n)
        if memory["gathered_params_gib"] >= budget_gib:  # the same on any count
            break
        if memory["total_gib"] <= budget_gib:
            return {"budget_gib": budget_gib, "gpus": n, "total_gib": memory["total_gib"]}
    return {"budget_gib": budget_gib, "gpus": None, "total_gib": None}


def info(cfg: Config, gpus: Optional[int] = None, gpu_memory: Optional[float] = None) -> dict:
    """`gpus`: the layout of the memory estimate (default parallel.gpus, else 8); `gpu_memory` (GiB): also
    the smallest GPU count whose model states fit in it."""
    model = meta_model(cfg)
    v = cfg.model.vision
    params = param_counts(model)
    lr, weight_decay = resolve_lr(cfg.optim, params["decoder_non_embedding"])
    gpus = gpus or cfg.parallel.gpus or 8
    extra = {"min_gpus": min_gpus(cfg, model, gpu_memory)} if gpu_memory is not None else {}
    return {
        "params": params,
        "lr": {"peak": lr, "weight_decay": weight_decay, "auto": cfg.optim.lr == "auto"},
        "flops_per_token": decoder_flops_per_token(model.decoder, cfg.data.seq_len),
        "flops_per_image": image_flops(model),
        "memory_per_gpu": memory_per_gpu(cfg, model, gpus),
        "tokens_per_image": cfg.model.connector.num_tokens,
        "patches_per_image": model.vision.num_patches,
        "image_size": v.image_size,
        "connector": cfg.model.connector.kind,
        "seq_len": cfg.data.seq_len,
        "max_images_per_seq": cfg.data.max_images_per_seq,
        "mixture": cfg.data.mixture,
        "mixture_unit": cfg.data.mixture_unit,
        **extra,
    }


def _count(n: int) -> str:
    return f"{n:>16,}  ({n / 1e9:,.2f}B)" if n >= 1e9 else f"{n:>16,}  ({n / 1e6:,.1f}M)"


def _format_lr(lr: dict, non_embedding: int) -> str:
    rule = (f"optim.lr: auto, MM1's law exp(-0.4214 ln N - 0.5535) with N = {non_embedding:,} non-embedding "
            f"decoder parameters" if lr["auto"] else "optim.lr")
    return f"learning rate: {lr['peak']:.3g} peak ({rule}), weight decay {lr['weight_decay']:.3g}"


def format_info(result: dict) -> str:
    p = result["params"]
    rows = [("vision", p["vision"], p["vision"]), ("connector", p["connector"], p["connector"]),
            ("decoder", p["decoder"], p["decoder_active"]),
            ("total", p["total"], p["total"] - p["decoder"] + p["decoder_active"])]
    lines = [f"{'part':<24}{'parameters':>16}{'active per token':>35}"]
    lines += [f"{name:<24}{_count(total)} {_count(active)}" for name, total, active in rows]
    lines += [f"{'trainable':<24}{_count(p['trainable'])}",
              f"{'decoder_non_embedding':<24}{_count(p['decoder_non_embedding'])}"]
    m = result["memory_per_gpu"]
    lines += [
        f"image: {result['image_size']} px, {result['patches_per_image']} patches -> "
        f"{result['tokens_per_image']} tokens ({result['connector']})",
        f"sequence: {result['seq_len']} tokens, up to {result['max_images_per_seq']} images",
        _format_lr(result["lr"], p["decoder_non_embedding"]),
        f"mixture: {' / '.join(f'{name} {w:g}' for name, w in result['mixture'].items())} "
        f"(shares of the {result['mixture_unit']})",
        f"training FLOPs: {result['flops_per_token']:.3e} per token (decoder), "
        f"{result['flops_per_image']:.3e} per image (encoder + connector)",
        f"memory per GPU (FSDP2, {m['gpus']} GPUs = {m['dp_replicate']} x {m['dp_shard']} shards, "
        f"{m['compute_dtype']}): "
        f"{m['total_gib']:.1f} GiB = {m['sharded_states_gib']:.1f} sharded weights/grads/AdamW "
        f"+ {m['gathered_params_gib']:.1f} gathered; activations not included",
    ]
    if "min_gpus" in result:
        fit = result["min_gpus"]
        lines.append(f"smallest GPU count for {fit['budget_gib']:g} GiB of model states per GPU: " + (
            f"{fit['gpus']} ({fit['total_gib']:.1f} GiB each)" if fit["gpus"] else
            f"none up to {MAX_GPUS} (the gathered parameters alone need more)"))
    return "\n".join(lines)
