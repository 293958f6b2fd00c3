"""Mixture-of-experts feed-forward: a top-k router over gated (SwiGLU) experts.

The block replaces a dense decoder MLP (see `mm1.model.decoder.add_moe_layers`),
takes and returns (B, L, D) like it, and keeps the router statistics of its last
forward in `stats`, which `collect_aux` turns into the auxiliary loss.

Gate: with k = 1 the Switch Transformer gate, the raw router probability of the
chosen expert (so the router learns from the language-model loss); with k >= 2
the top-k probabilities renormalised to sum to 1 (GShard / Mixtral top-2).

Routed tokens: `set_routed_tokens` marks which positions of the next training
forwards are real tokens (padding is not). Only those are routed: padding takes no
expert capacity, gets a zero output, and is left out of every router statistic.
In eval mode every position is routed, as the decoder may then be called directly
(generation with a KV cache) with inputs the mark does not describe.

Shapes: N = B*L tokens, D model width, F expert width, E experts, k experts per
token, A = N*k (token, expert) assignments. Assignments are numbered slot-major,
a = j*N + n for token n's j-th choice, so that under a capacity limit first
choices win over second ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mm1.errors import ConfigError
from mm1.fields import checked
from mm1.model.experts import Experts


INITS = ("upcycle", "random")
IMPLS = ("auto", "loop", "grouped")


@dataclass
class MoEConfig:
    num_experts: int = checked(8, ">0")
    every: int = checked(2, ">0")  # every k-th decoder layer gets an MoE feed-forward (layers k-1, 2k-1, ...)
    top_k: int = checked(2, ">0")
    aux_loss_coef: float = checked(0.01, ">=0")  # load-balancing loss
    z_loss_coef: float = checked(0.001, ">=0")  # router z-loss
    capacity_factor: Optional[float] = checked(None, ">0")  # None = dropless routing
    init: str = "upcycle"  # one of INITS: upcycle (experts copy the dense FFN) | random
    experts_impl: str = "auto"  # loop (one expert at a time) | grouped (torch._grouped_mm, no host sync) |
    # auto (grouped where torch has it and the widths are 16-byte aligned, else loop)


def check_moe(moe: MoEConfig, num_layers: Optional[int]) -> None:
    """ConfigError naming the key for settings that cannot work; `num_layers` None = known only on load
    (a pretrained decoder, checked by add_moe_layers)."""
    if not 1 <= moe.top_k <= moe.num_experts:
        raise ConfigError(f"model.decoder.moe.top_k: {moe.top_k} is out of range; "
                          f"allowed: 1..{moe.num_experts} (model.decoder.moe.num_experts)")
    if num_layers is not None and not 1 <= moe.every <= num_layers:
        raise ConfigError(f"model.decoder.moe.every: {moe.every} is out of range; "
                          f"allowed: 1..{num_layers} (model.decoder.num_layers)")
    for key, allowed in (("init", INITS), ("experts_impl", IMPLS)):
        if getattr(moe, key) not in allowed:
            raise ConfigError(f"model.decoder.moe.{key}: {getattr(moe, key)!r} is not allowed; allowed: "
                              f"{', '.join(allowed)}")


@dataclass
class RouterStats:
    balance_loss: torch.Tensor  # () E * sum_e f_e * P_e over routed tokens; 1.0 when f or P is uniform
    z_loss: torch.Tensor  # () mean over routed tokens of logsumexp(logits)^2
    tokens_per_expert: torch.Tensor  # (E,) assignments routed to each expert, before the capacity limit
    dropped_frac: torch.Tensor  # () fraction of the routed assignments dropped by the capacity limit


def _masked_mean(values: torch.Tensor, routed: torch.Tensor) -> torch.Tensor:
    """Mean over the first dim of the rows where routed (N,) is true. (N, ...) -> (...)"""
    weight = routed.to(values.dtype).reshape(-1, *[1] * (values.dim() - 1))
    return (values * weight).sum(0) / routed.sum().clamp(min=1)


def counts(ids: torch.Tensor, size: int) -> torch.Tensor:
    """How often each of 0..size-1 occurs in ids; unlike bincount, with no host synchronisation."""
    return torch.zeros(size, dtype=torch.long, device=ids.device).scatter_add_(0, ids.reshape(-1),
                                                                               torch.ones_like(ids.reshape(-1)))


def balance_loss(probs: torch.Tensor, assigned: torch.Tensor, num_experts: int,
                 routed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Switch Transformer load balancing (its eqs. 4-6) generalised to top-k: E * sum_e f_e * P_e.

    Over the routed tokens only (routed (N,) bool; None = all):
    f_e = share of their N*k assignments that went to expert e (sums to 1, no gradient),
    P_e = their mean router probability of expert e (sums to 1, carries the gradient).
    This is transformers' Mixtral `load_balancing_loss_func` (which masks padding the same
    way) divided by k: the loss is 1 for any k whenever P or f is uniform, and it grows as
    routing concentrates on the experts with high probability (E at worst).
    """
    if routed is None:
        routed = torch.ones(probs.shape[0], dtype=torch.bool, device=probs.device)
    routed_choices = torch.where(routed[:, None], assigned, num_experts)  # (N, k); unrouted -> E
    f = counts(routed_choices, num_experts + 1)[:num_experts].float() / (routed.sum() * assigned.shape[1]).clamp(min=1)
    p = _masked_mean(probs.float(), routed)  # (E,)
    return num_experts * (f * p).sum()


def z_loss(logits: torch.Tensor, routed: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Router z-loss (ST-MoE): mean over routed tokens of logsumexp(logits)^2. (N, E) -> ()"""
    z = torch.logsumexp(logits.float(), dim=-1).square()  # (N,)
    return z.mean() if routed is None else _masked_mean(z, routed)


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax, top-k. (N, E) -> weights (N, k), experts (N, k), probs (N, E).

    k = 1: the weight is the raw probability (Switch Transformer), so the language-model
    loss reaches the router. k >= 2: the k probabilities renormalised to sum to 1.
    """
    probs = logits.float().softmax(dim=-1)  # (N, E)
    weights, experts = probs.topk(top_k, dim=-1)  # (N, k)
    if top_k > 1:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, experts, probs


def capacity_for(num_tokens: torch.Tensor, top_k: int, num_experts: int,
                 factor: Optional[float]) -> Optional[torch.Tensor]:
    """Assignments one expert may take: ceil(factor * N * k / E), N the routed tokens (a 0-d tensor,
    counted on the device); None = dropless."""
    if factor is None:
        return None
    return torch.ceil(factor * num_tokens * top_k / num_experts)


def plan_dispatch(assigned: torch.Tensor, num_experts: int, capacity, routed: torch.Tensor):
    """Group assignments by expert, on the device. assigned (A,) expert ids, slot-major;
    routed (A,) bool, false for assignments of unrouted tokens; capacity None or a 0-d tensor.

    Returns order (A,) assignment ids, kept ones first, grouped by expert (slot-major
    within an expert); kept (E,) kept assignments per expert; demand (E,) routed
    assignments per expert before dropping. Unrouted and dropped assignments come last.
    """
    sink = torch.full_like(assigned, num_experts)
    key = torch.where(routed, assigned, sink)  # (A,) unrouted assignments go to a sink bucket E
    demand = counts(key, num_experts + 1)[:num_experts]  # (E,)
    if capacity is not None:
        order = torch.argsort(key, stable=True)  # (A,)
        starts = F.pad(demand.cumsum(0), (1, 0))[key[order]]  # (A,) first sorted position of its expert
        rank = torch.empty_like(key).scatter_(0, order, torch.arange(key.numel(), device=key.device) - starts)
        key = torch.where(rank < capacity, key, sink)  # (A,) assignments past capacity are dropped
    order = torch.argsort(key, stable=True)  # (A,)
    kept = counts(key, num_experts + 1)[:num_experts]  # (E,)
    return order, kept, demand


class MoEFeedForward(nn.Module):
    """Router + experts. (B, L, D) -> (B, L, D); router statistics of the last forward in `stats`."""

    def __init__(self, dim: int, hidden: int, act_fn: nn.Module, cfg: MoEConfig, dtype=None, device=None):
        super().__init__()
        self.cfg = cfg
        self.router = nn.Linear(dim, cfg.num_experts, bias=False, dtype=dtype, device=device)
        self.experts = Experts(cfg.num_experts, dim, hidden, act_fn, cfg.experts_impl, dtype, device)
        self.stats: Optional[RouterStats] = None
        self.routed_tokens: Optional[torch.Tensor] = None  # (B, L) bool, set by set_routed_tokens; None = all

    @classmethod
    def from_dense(cls, mlp: nn.Module, cfg: MoEConfig, init_std: float) -> "MoEFeedForward":
        """An MoE block in place of a gated MLP (gate_proj, up_proj, down_proj, act_fn).

        init "upcycle" copies the MLP's weights into every expert; "random" draws them
        from N(0, init_std). The router is always drawn from N(0, init_std)."""
        for name in ("gate_proj", "up_proj", "down_proj"):
            layer = getattr(mlp, name, None)
            if not isinstance(layer, nn.Linear) or layer.bias is not None:
                raise ConfigError(f"model.decoder.moe: the decoder's feed-forward ({type(mlp).__name__}) is not a "
                                 f"bias-free gated MLP (gate_proj/up_proj/down_proj); MoE needs a llama-style FFN")
        w = mlp.gate_proj.weight  # (F, D)
        block = cls(w.shape[1], w.shape[0], mlp.act_fn, cfg, dtype=w.dtype, device=w.device)
        with torch.no_grad():
            nn.init.normal_(block.router.weight, std=init_std)
            for name in ("gate_proj", "up_proj", "down_proj"):
                stacked = getattr(block.experts, name)  # (E, out, in)
                if cfg.init == "upcycle":
                    stacked.copy_(getattr(mlp, name).weight.unsqueeze(0).expand_as(stacked))
                else:
                    nn.init.normal_(stacked, std=init_std)
        return block

    def router_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, E), in fp32 even under autocast (softmax and z-loss are precision-sensitive)."""
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(x.float(), self.router.weight.float())

    def _routed(self, shape: torch.Size, device) -> torch.Tensor:
        """(N,) bool: the positions to route (in training, the mask set for this shape; else all)."""
        mask = self.routed_tokens
        if mask is None or not self.training or mask.shape != shape[:-1]:
            return torch.ones(math.prod(shape[:-1]), dtype=torch.bool, device=device)
        return mask.reshape(-1).to(device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, D)
        n, k, e = x.shape[0], self.cfg.top_k, self.cfg.num_experts
        routed = self._routed(shape, x.device)  # (N,)
        logits = self.router_logits(x)  # (N, E)
        weights, experts, probs = route(logits, k)  # (N, k), (N, k), (N, E)
        assigned = experts.t().reshape(-1)  # (A,) slot-major
        capacity = capacity_for(routed.sum(), k, e, self.cfg.capacity_factor)
        order, kept, demand = plan_dispatch(assigned, e, capacity, routed.repeat(k))  # (A,), (E,), (E,)
        tokens = order % n  # (A,) token of each assignment, kept ones first
        out = self.experts(x[tokens], kept)  # (A, D), zeros past the kept rows
        gate = weights.t().reshape(-1)[order].to(out.dtype)  # (A,)
        y = out.new_zeros(n, shape[-1]).index_add_(0, tokens, out * gate[:, None])  # (N, D)
        self.stats = RouterStats(
            balance_loss=balance_loss(probs, experts, e, routed),
            z_loss=z_loss(logits, routed),
            tokens_per_expert=demand.detach(),
            dropped_frac=1.0 - kept.sum() / demand.sum().clamp(min=1),
        )
        return y.reshape(shape)


def moe_layers(module: nn.Module) -> Iterator[MoEFeedForward]:
    return (m for m in module.modules() if isinstance(m, MoEFeedForward))


def set_routed_tokens(module: nn.Module, mask: Optional[torch.Tensor]) -> None:
    """Mark the positions (B, L) bool that the MoE blocks of `module` route in their next training
    forwards (None = all). It stays set until the next call, so that activation checkpointing,
    which runs a block's forward again in backward, recomputes the same routing."""
    for block in moe_layers(module):
        block.routed_tokens = None if mask is None else mask.bool()


def inactive_expert_params(module: nn.Module) -> int:
    """Expert parameters a token does not use: (E - k) / E of every MoE block's experts."""
    total = 0
    for block in moe_layers(module):
        per_expert = sum(p.numel() for p in block.experts.parameters()) // block.cfg.num_experts
        total += (block.cfg.num_experts - block.cfg.top_k) * per_expert
    return total


def collect_aux(module: nn.Module) -> tuple[Optional[torch.Tensor], Optional[dict]]:
    """Take the statistics of every MoE block's last forward (clearing them).

    Returns aux_loss = sum over MoE layers of aux_loss_coef * balance + z_loss_coef * z, and
    log values: balance and z-loss (mean over layers), dropped fraction (mean over layers),
    and the most / least loaded expert's share relative to uniform (1.0 = balanced; max and
    min over every layer and expert). (None, None) when there are no MoE layers.
    """
    loss, logs = None, []
    for block in moe_layers(module):
        s, block.stats = block.stats, None
        if s is None:
            continue
        term = block.cfg.aux_loss_coef * s.balance_loss + block.cfg.z_loss_coef * s.z_loss
        loss = term if loss is None else loss + term
        load = s.tokens_per_expert.float() * block.cfg.num_experts / s.tokens_per_expert.sum().clamp(min=1)  # (E,)
        logs.append(torch.stack([s.balance_loss.detach(), s.z_loss.detach(), s.dropped_frac, load.max(), load.min()]))
    if loss is None:
        return None, None
    rows = torch.stack(logs).cpu()  # (layers, 5)
    means = rows.mean(0).tolist()
    aux = {"moe/balance_loss": means[0], "moe/z_loss": means[1], "moe/dropped_frac": means[2],
           "moe/expert_load_max": float(rows[:, 3].max()), "moe/expert_load_min": float(rows[:, 4].min())}
    return loss, aux
