"""Mixture-of-experts feed-forward: a top-k router over gated (SwiGLU) experts.

The block replaces a dense decoder MLP (see `mm1.model.decoder.add_moe_layers`),
takes and returns (B, L, D) like it, and keeps the router statistics of its last
forward in `stats`, which `collect_aux` turns into the auxiliary loss.

Shapes: N = B*L tokens, D model width, F expert width, E experts, k experts per
token, A = N*k (token, expert) assignments, M <= A assignments kept after the
capacity limit. Assignments are numbered slot-major, a = j*N + n for token n's
j-th choice, so that under a capacity limit first choices win over second ones.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mm1.config.schema import MoEConfig
from mm1.config.tree import ConfigError


@dataclass
class RouterStats:
    balance_loss: torch.Tensor  # () E * sum_e f_e * P_e; 1.0 when f or P is uniform
    z_loss: torch.Tensor  # () mean over tokens of logsumexp(logits)^2
    tokens_per_expert: torch.Tensor  # (E,) assignments routed to each expert, before the capacity limit
    dropped_frac: torch.Tensor  # () fraction of the A assignments dropped by the capacity limit


def balance_loss(probs: torch.Tensor, assigned: torch.Tensor, num_experts: int) -> torch.Tensor:
    """Switch/GShard load balancing: E * sum_e f_e * P_e.

    f_e = share of the N*k assignments that went to expert e (sums to 1, no gradient),
    P_e = mean router probability of expert e (sums to 1, carries the gradient).
    With this normalisation the loss is 1 for any k whenever P or f is uniform, and it
    grows as routing concentrates on the experts with high probability (E at worst).
    """
    f = torch.bincount(assigned.flatten(), minlength=num_experts).float() / assigned.numel()  # (E,)
    p = probs.float().mean(0)  # (E,)
    return num_experts * (f * p).sum()


def z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Router z-loss (ST-MoE): mean over tokens of logsumexp(logits)^2. (N, E) -> ()"""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


def route(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax, top-k, renormalise. (N, E) -> weights (N, k) summing to 1, experts (N, k), probs (N, E).

    With k = 1 the weight is always 1, so the router then learns only through the auxiliary losses.
    """
    probs = logits.float().softmax(dim=-1)  # (N, E)
    weights, experts = probs.topk(top_k, dim=-1)  # (N, k)
    return weights / weights.sum(dim=-1, keepdim=True), experts, probs


def capacity_for(num_tokens: int, top_k: int, num_experts: int, factor: Optional[float]) -> Optional[int]:
    """Assignments one expert may take: ceil(factor * N * k / E); None = dropless."""
    if factor is None:
        return None
    return math.ceil(factor * num_tokens * top_k / num_experts)


def plan_dispatch(assigned: torch.Tensor, num_experts: int, capacity: Optional[int]):
    """Group assignments by expert. assigned (A,) expert ids, slot-major.

    Returns order (M,) assignment ids grouped by expert (slot-major within an expert),
    kept (E,) kept assignments per expert, routed (E,) assignments per expert before dropping.
    """
    order = torch.argsort(assigned, stable=True)  # (A,)
    routed = torch.bincount(assigned, minlength=num_experts)  # (E,)
    if capacity is None:
        return order, routed, routed
    starts = routed.cumsum(0) - routed  # (E,) first sorted position of each expert
    rank = torch.arange(order.numel(), device=order.device) - starts[assigned[order]]  # (A,)
    return order[rank < capacity], routed.clamp(max=capacity), routed


class Experts(nn.Module):
    """E gated feed-forwards, weights stacked in nn.Linear's (out, in) layout."""

    def __init__(self, num_experts: int, dim: int, hidden: int, act_fn: nn.Module, dtype=None, device=None):
        super().__init__()
        kw = {"dtype": dtype, "device": device}
        self.gate_proj = nn.Parameter(torch.empty(num_experts, hidden, dim, **kw))  # (E, F, D)
        self.up_proj = nn.Parameter(torch.empty(num_experts, hidden, dim, **kw))  # (E, F, D)
        self.down_proj = nn.Parameter(torch.empty(num_experts, dim, hidden, **kw))  # (E, D, F)
        self.act_fn = act_fn

    def forward(self, x: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """x (M, D) grouped by expert, counts[e] rows each -> (M, D).

        Every expert runs, even on zero rows, so that each weight takes part in the
        backward graph on every rank (DDP requires it)."""
        outs = []
        for e, h in enumerate(x.split(counts)):  # h (n_e, D)
            hidden = self.act_fn(F.linear(h, self.gate_proj[e])) * F.linear(h, self.up_proj[e])  # (n_e, F)
            outs.append(F.linear(hidden, self.down_proj[e]))  # (n_e, D)
        return torch.cat(outs)


class MoEFeedForward(nn.Module):
    """Router + experts. (B, L, D) -> (B, L, D); router statistics of the last forward in `stats`."""

    def __init__(self, dim: int, hidden: int, act_fn: nn.Module, cfg: MoEConfig, dtype=None, device=None):
        super().__init__()
        self.cfg = cfg
        self.router = nn.Linear(dim, cfg.num_experts, bias=False, dtype=dtype, device=device)
        self.experts = Experts(cfg.num_experts, dim, hidden, act_fn, dtype, device)
        self.stats: Optional[RouterStats] = None

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, D)
        n, k, e = x.shape[0], self.cfg.top_k, self.cfg.num_experts
        logits = self.router_logits(x)  # (N, E)
        weights, experts, probs = route(logits, k)  # (N, k), (N, k), (N, E)
        assigned = experts.t().reshape(-1)  # (A,) slot-major
        capacity = capacity_for(n, k, e, self.cfg.capacity_factor)
        order, kept, routed = plan_dispatch(assigned, e, capacity)  # (M,), (E,), (E,)
        tokens = order % n  # (M,) token of each kept assignment
        out = self.experts(x[tokens], kept.tolist())  # (M, D)
        gate = weights.t().reshape(-1)[order].to(out.dtype)  # (M,)
        y = out.new_zeros(n, shape[-1]).index_add_(0, tokens, out * gate[:, None])  # (N, D)
        self.stats = RouterStats(
            balance_loss=balance_loss(probs, experts, e),
            z_loss=z_loss(logits),
            tokens_per_expert=routed.detach(),
            dropped_frac=logits.new_tensor(1.0 - order.numel() / assigned.numel()),
        )
        return y.reshape(shape)


def moe_layers(module: nn.Module) -> Iterator[MoEFeedForward]:
    return (m for m in module.modules() if isinstance(m, MoEFeedForward))


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
