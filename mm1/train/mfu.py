"""Model FLOPs, device peaks and MFU (model FLOPs utilisation).

Model FLOPs count 2 per multiply-add of the matmuls (and convolutions) a training
step needs, forward + backward = 3 x forward; padding, recomputation and the
optimizer are not counted (the MFU convention of PaLM, Chowdhery et al. 2022, app. B).

Decoder, per non-padding token of a row of L positions:
    decoder_flops_per_token = 6 * N + 12 * n_layers * n_heads * head_dim * L
    N = the decoder parameters one token uses, less the input embedding table (a
        lookup, not a matmul; the output head is a matmul and counts, tied or not).
        For an MoE decoder, N counts the router and top_k of the num_experts
        experts of each MoE block (the active parameters), not all experts.
    12 * n_layers * n_heads * head_dim * L = the attention scores QK^T and the
        weighted sum AV over the whole row (forward 4 * d_attn * L, x3), as PaLM
        counts them; a causal or block-diagonal mask skips part of that work.
Images, per image (encoder + connector): their forward FLOPs counted by
    torch.utils.flop_counter on one image, x3, or x1 for a frozen encoder (no backward).
A step of T tokens and I images: T * decoder_flops_per_token + I * image_flops.

Peaks: a table of dense (no 2:4 sparsity) bf16 tensor-core FLOP/s per GPU model
from the vendors' datasheets (fp16 where the GPU has no bf16); for a CPU, the best
rate of a short fp32 matmul probe on the threads torch uses (a measured peak,
which a shared, busy machine lowers: runs of the tiny recipe on a loaded 2-core VM
probed 93 to 206 GFLOP/s). A run therefore logs `mfu` only against a datasheet
peak; on a CPU it logs `mfu_estimate`, against the probe.
"""
from __future__ import annotations

import re
import time
from typing import Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from mm1.model.moe import inactive_expert_params

# (model, variant or None, dense peak FLOP/s). A device name is split into upper-case tokens
# ("NVIDIA H100 PCIe" -> NVIDIA, H100, PCIE); the first row whose model (and variant) are among
# them wins, so a variant's row comes before its model's plain row.
GPU_PEAKS: tuple[tuple[str, Optional[str], float], ...] = (
    ("H100", "NVL", 835e12),
    ("H100", "PCIE", 756e12),
    ("H100", None, 989e12),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H200", "NVL", 835e12),
    ("H200", None, 989e12),  # SXM
    ("GH200", None, 989e12),
    ("B200", None, 2250e12),
    ("A100", None, 312e12),  # SXM4 and PCIe
    ("A10G", None, 125e12),  # AWS g5; no datasheet of its own, the A10's figure
    ("A10", None, 125e12),
    ("L40S", None, 362e12),
    ("L40", None, 181e12),
    ("L4", None, 121e12),
    ("A6000", None, 155e12),  # RTX A6000
    ("V100", "PCIE", 112e12),  # fp16 tensor cores (no bf16)
    ("V100", None, 125e12),  # SXM2, fp16
    ("T4", None, 65e12),  # fp16
)


def gpu_peak_flops(name: str) -> Optional[float]:
    """Dense bf16 peak of a CUDA device name (e.g. "NVIDIA H100 80GB HBM3"); None if not in the table."""
    tokens = set(re.split(r"[\s_\-]+", name.upper()))
    for model, variant, peak in GPU_PEAKS:
        if model in tokens and (variant is None or variant in tokens):
            return peak
    return None


def cpu_peak_flops(size: int = 1024, seconds: float = 1.0) -> float:
    """Best fp32 matmul rate over `seconds` of (size x size) @ (size x size) products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = a @ b  # warm-up: thread pool, caches
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def device_peak_flops(device: torch.device) -> tuple[Optional[float], str]:
    """(peak FLOP/s, where it comes from) for the device a step runs on."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return gpu_peak_flops(name), f"datasheet dense bf16 peak of {name!r}"
    return cpu_peak_flops(), (f"a 1-s fp32 matmul probe on {torch.get_num_threads()} CPU thread(s) at start-up: "
                              f"an estimate, which a busy machine lowers")


def mfu_key(device: torch.device) -> str:
    """The metrics key of a run's MFU: `mfu` against a datasheet peak, `mfu_estimate` against a CPU probe."""
    return "mfu" if device.type == "cuda" else "mfu_estimate"


def describe_peak(device: torch.device, peak: Optional[float], source: str) -> str:
    """One line saying what a run's logged MFU is measured against."""
    key = mfu_key(device)
    if peak is None:
        return f"{key} is not logged: mm1.train.mfu.GPU_PEAKS has no {source} (model_flops_per_s is logged)"
    rate = f"{peak / 1e12:.0f} TFLOP/s" if peak >= 1e12 else f"{peak / 1e9:.0f} GFLOP/s"
    return f"{key} in metrics.jsonl is against {rate}, {source}"


def decoder_flops_per_token(decoder: torch.nn.Module, seq_len: int) -> int:
    """Training FLOPs per token of a transformers causal LM (dense or MoE) at row length `seq_len`."""
    c = decoder.config
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    emb, head = decoder.get_input_embeddings().weight, decoder.get_output_embeddings().weight
    active = sum(p.numel() for p in decoder.parameters()) - inactive_expert_params(decoder)
    matmul_params = active - (0 if head is emb else emb.numel())
    return 6 * matmul_params + 12 * c.num_hidden_layers * c.num_attention_heads * head_dim * seq_len


def image_flops(model) -> int:
    """Training FLOPs of one image through an MM1Model's encoder and connector."""
    size = model.cfg.vision.image_size
    image = torch.zeros(1, 3, size, size, device=next(model.parameters()).device)  # (1, 3, H, W)
    # with autograd on: FlopCounterMode's module tracker hooks the gradient graph, and under
    # no_grad it fails on modules whose inputs come from a parameter (attention_pool's queries)
    with FlopCounterMode(display=False) as vision_count:
        features = model.vision(image)  # (1, P, Dv)
    with FlopCounterMode(display=False) as connector_count:
        model.connector(features.detach())  # (1, T, D)
    vision_factor = 1 if model.cfg.vision.freeze else 3
    return vision_factor * vision_count.get_total_flops() + 3 * connector_count.get_total_flops()


def step_flops(tokens: int, images: int, seq_len: int, decoder: torch.nn.Module, per_image: int) -> int:
    """Model FLOPs of a training step over `tokens` non-padding tokens and `images` images."""
    return tokens * decoder_flops_per_token(decoder, seq_len) + images * per_image


def mfu(tokens_per_s: float, flops_per_token: float, peak: Optional[float]) -> Optional[float]:
    """Model FLOPs utilisation: achieved model FLOP/s over the device's peak (None without a peak)."""
    if not peak:
        return None
    return tokens_per_s * flops_per_token / peak
