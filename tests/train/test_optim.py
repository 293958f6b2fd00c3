"""MM1's learning-rate law and the warmup + cosine schedule."""
from __future__ import annotations

import pytest

from mm1.config.schema import OptimConfig
from mm1.train.optim import lr_at, mm1_lr, resolve_lr


@pytest.mark.parametrize("n, expected", [(2.6e9, 6.20e-5), (3e10, 2.21e-5)])
def test_lr_law_matches_paper(n, expected):
    assert mm1_lr(n) == pytest.approx(expected, rel=0.01)


def test_auto_lr_sets_weight_decay_to_a_tenth():
    lr, wd = resolve_lr(OptimConfig(lr="auto"), 2.6e9)
    assert wd == pytest.approx(0.1 * lr)
    assert resolve_lr(OptimConfig(lr=1e-3, weight_decay=0.05), 1) == (1e-3, 0.05)


def test_schedule_warms_up_then_decays_to_ten_percent():
    peak, warmup, total = 1e-3, 10, 110
    assert lr_at(0, peak, warmup, total, 0.1) == pytest.approx(peak / 10)
    assert lr_at(9, peak, warmup, total, 0.1) == pytest.approx(peak)
    assert lr_at(60, peak, warmup, total, 0.1) == pytest.approx(peak * 0.55)  # half-way down the cosine
    assert lr_at(110, peak, warmup, total, 0.1) == pytest.approx(peak * 0.1)
    values = [lr_at(s, peak, warmup, total, 0.1) for s in range(warmup, total)]
    assert all(a >= b for a, b in zip(values, values[1:]))
