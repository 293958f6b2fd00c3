"""The next-token loss, computed a chunk of positions at a time.

The output head and the fp32 cross-entropy run on at most `chunk` labelled positions
at once, and each chunk is checkpointed: its (chunk, V) logits are freed after its
forward and recomputed one chunk at a time in backward. So the logits of a whole
row (L x V, 32k vocabulary x 4096 positions at MM1's scale) never exist at once,
in either pass, for the price of one more head matmul per chunk in backward. The
loss and the gradients are those of the full computation (the same sums, chunk by chunk).
"""
from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mm1.data.batch import IGNORE

CHUNK = 1024  # labelled positions per chunk: 128 MiB of fp32 logits at a 32k vocabulary


def next_token_loss(hidden: torch.Tensor, labels: torch.Tensor, head: nn.Module,
                    chunk: int = CHUNK) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of the logits at position t against labels[t + 1], ignoring IGNORE (-100).

    The output head runs only on the positions that have a label: image tokens (more than
    half of an MM1 sequence) and padding never get vocabulary logits, which saves their
    head FLOPs and the memory of their (L, V) logits.
    """
    targets = labels[:, 1:]  # (B, L-1)
    keep = targets != IGNORE
    count = int(keep.sum())
    inputs, targets = hidden[:, :-1][keep], targets[keep]  # (N, D), (N,) for the N labelled positions
    step = _chunk_loss
    if count > chunk and torch.is_grad_enabled():
        step = partial(checkpoint, _chunk_loss, use_reentrant=False)
    loss = sum((step(head, h, t) for h, t in zip(inputs.split(chunk), targets.split(chunk))),
               start=inputs.new_zeros((), dtype=torch.float32))
    return loss / max(count, 1), count


def _chunk_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed fp32 cross-entropy of one chunk. (n, D), (n,) -> ()"""
    return F.cross_entropy(head(hidden).float(), targets, reduction="sum")
