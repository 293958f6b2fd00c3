"""The experts of an MoE block: E gated (SwiGLU) feed-forwards over rows grouped by expert.

Two implementations of the same computation:
- `loop`: one expert at a time (three nn.Linear-style matmuls each), the reference. It needs the
  row count of every expert on the host, i.e. one host synchronisation per MoE layer.
- `grouped`: `torch._grouped_mm` runs all experts in one call per projection from the group
  ends (offsets) kept on the device: no host synchronisation, and a static (A, D) shape that
  `torch.compile` can keep in one graph. Rows past the last offset (unrouted or dropped
  assignments) are neither computed nor read: they get zeros and no gradient. It takes
  bf16/fp16 operands (fp32 as well in eager mode on a CPU); `auto` falls back to the loop
  elsewhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mm1.errors import ConfigError


def grouped_mm_available() -> bool:
    return hasattr(torch, "_grouped_mm")


def _grouped_mm_flops(mat_a, mat_b, *args, offs=None, out_val=None, **kwargs) -> int:
    """FLOPs of torch._grouped_mm in each form autograd uses: (M, K) x (E, K, N) and its input
    gradient; (K, M) x (M, N) grouped along M (the weight gradient); (E, M, K) x (K, N); batched."""
    offs = offs if offs is not None else (args[0] if args else None)  # backward passes it by position
    used = int(offs[-1]) if offs is not None else None
    if mat_a.dim() == 2 and mat_b.dim() == 3:
        return 2 * used * mat_a.shape[1] * mat_b.shape[2]
    if mat_a.dim() == 2 and mat_b.dim() == 2:
        return 2 * mat_a.shape[0] * mat_b.shape[1] * used
    if mat_b.dim() == 2:
        return 2 * mat_a.shape[1] * mat_a.shape[2] * used
    return 2 * mat_a.shape[0] * mat_a.shape[1] * mat_a.shape[2] * mat_b.shape[2]


def _teach_flop_counter() -> None:
    """torch.utils.flop_counter (mm1 bench's counted FLOPs) has no formula for torch._grouped_mm."""
    from torch.utils import flop_counter

    op = getattr(torch.ops.aten, "_grouped_mm", None)
    if op is not None and op not in flop_counter.flop_registry:
        flop_counter.register_flop_formula(op, get_raw=True)(_grouped_mm_flops)


_teach_flop_counter()


def _aligned(dim: int, dtype: torch.dtype) -> bool:
    """torch._grouped_mm needs every row stride to be a multiple of 16 bytes."""
    return dim * torch.empty((), dtype=dtype).element_size() % 16 == 0


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype autocast would run a matmul in (torch._grouped_mm is not covered by autocast)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class Experts(nn.Module):
    """E gated feed-forwards, weights stacked in nn.Linear's (out, in) layout."""

    def __init__(self, num_experts: int, dim: int, hidden: int, act_fn: nn.Module, impl: str = "auto",
                 dtype=None, device=None):
        super().__init__()
        if impl == "grouped" and not grouped_mm_available():
            raise ConfigError(f"model.decoder.moe.experts_impl: 'grouped' needs torch._grouped_mm, which torch "
                              f"{torch.__version__} lacks; allowed here: auto, loop")
        kw = {"dtype": dtype, "device": device}
        self.gate_proj = nn.Parameter(torch.empty(num_experts, hidden, dim, **kw))  # (E, F, D)
        self.up_proj = nn.Parameter(torch.empty(num_experts, hidden, dim, **kw))  # (E, F, D)
        self.down_proj = nn.Parameter(torch.empty(num_experts, dim, hidden, **kw))  # (E, D, F)
        self.act_fn = act_fn
        self.impl = impl

    def use_grouped(self, x: torch.Tensor) -> bool:
        """`auto` takes the grouped path where torch._grouped_mm runs: torch has it, the widths meet its
        alignment, and the compute dtype is bf16/fp16 (fp32 only in eager mode on a CPU)."""
        if self.impl != "auto":
            return self.impl == "grouped"
        dtype, (_, hidden, dim) = compute_dtype(x), self.gate_proj.shape
        half = dtype in (torch.bfloat16, torch.float16)
        eager_cpu = x.device.type == "cpu" and not torch.compiler.is_compiling()
        return grouped_mm_available() and (half or eager_cpu) and _aligned(dim, dtype) and _aligned(hidden, dtype)

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """x (A, D): the first counts.sum() rows grouped by expert, counts[e] rows each (E,) -> (A, D);
        the remaining rows give zeros."""
        if self.use_grouped(x):
            return self.grouped(x, counts)
        return self.loop(x, counts)

    def loop(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """One expert at a time. Every expert runs, even on zero rows, so that each weight takes part
        in the backward graph on every rank (DDP requires it)."""
        sizes = counts.tolist()
        *groups, rest = x.split(sizes + [x.shape[0] - sum(sizes)])
        outs = []
        for e, h in enumerate(groups):  # h (n_e, D)
            hidden = self.act_fn(F.linear(h, self.gate_proj[e])) * F.linear(h, self.up_proj[e])  # (n_e, F)
            outs.append(F.linear(hidden, self.down_proj[e]))  # (n_e, D)
        return torch.cat(outs + [torch.zeros_like(rest)])

    def grouped(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """All experts at once with torch._grouped_mm; no host synchronisation."""
        dtype = compute_dtype(x)
        offsets = counts.cumsum(0).to(torch.int32)  # (E,) end row of each expert's group
        used = (torch.arange(x.shape[0], device=x.device) < offsets[-1])[:, None]  # (A, 1)
        h = torch.where(used, x, 0).to(dtype)  # rows past the groups get no gradient back

        def mm(a: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # (A, in) x (E, out, in) -> (A, out)
            return torch._grouped_mm(a, w.to(dtype).transpose(-2, -1), offs=offsets)

        hidden = self.act_fn(mm(h, self.gate_proj)) * mm(h, self.up_proj)  # (A, F)
        hidden = torch.where(used, hidden, 0)  # rows past the groups hold uninitialised memory
        return torch.where(used, mm(hidden, self.down_proj), 0)  # (A, D)
