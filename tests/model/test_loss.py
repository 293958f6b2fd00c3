"""The chunked next-token loss equals the full cross-entropy, in value and gradients."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mm1.model.loss import next_token_loss


def full_loss(hidden, labels, head):
    """The whole computation at once: every labelled position's fp32 logits."""
    targets = labels[:, 1:]
    keep = targets != -100
    logits = head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, targets[keep])


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("chunk", [7, 64, 10_000])
def test_chunked_loss_and_gradients_equal_the_full_computation(chunk):
    torch.manual_seed(0)
    B, L, D, V = 3, 40, 32, 211
    head = nn.Linear(D, V, bias=False)
    labels = torch.randint(0, V, (B, L))
    labels[torch.rand(B, L) < 0.3] = -100  # image and padding positions
    hidden = torch.randn(B, L, D, requires_grad=True)
    loss, count = next_token_loss(hidden, labels, head, chunk=chunk)
    assert count == int((labels[:, 1:] != -100).sum()) > chunk or chunk == 10_000
    loss.backward()
    got = (loss.detach(), hidden.grad.clone(), head.weight.grad.clone())
    hidden.grad, head.weight.grad = None, None
    ref = full_loss(hidden, labels, head)
    ref.backward()
    assert rel(got[0], ref.detach()) < 1e-6
    assert rel(got[1], hidden.grad) < 1e-6
    assert rel(got[2], head.weight.grad) < 1e-6


def test_chunks_are_recomputed_in_backward_not_kept():
    """With grad enabled, no (chunk, V) logits tensor is saved for backward: only the chunk's inputs."""
    torch.manual_seed(1)
    D, V = 16, 4099
    head = nn.Linear(D, V, bias=False)
    hidden = torch.randn(1, 65, D, requires_grad=True)
    labels = torch.randint(0, V, (1, 65))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.shape) or t, lambda t: t):
        loss, _ = next_token_loss(hidden, labels, head, chunk=16)
    assert not any(V in shape for shape in saved), saved
    loss.backward()
    assert hidden.grad.abs().sum() > 0
