"""Weighted mixing of sources (the loader's Mixer): realised proportions, determinism, resumable state."""
from __future__ import annotations

from collections import Counter

import pytest

from mm1.data.mixture import Mixer


def draws(mixer: Mixer, n: int) -> list[str]:
    return [mixer.next_source() for _ in range(n)]


@pytest.mark.parametrize("weights", [
    {"caption": 0.45, "interleaved": 0.45, "text": 0.10},
    {"caption": 5, "interleaved": 5, "text": 1},
    {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4},
])
def test_realised_proportions_within_two_points(weights):
    total = sum(weights.values())
    counts = Counter(draws(Mixer(weights, seed=3), 10_000))
    for name, w in weights.items():
        assert abs(counts[name] / 10_000 - w / total) < 0.02, (name, counts)


def test_mixture_is_deterministic_given_the_seed():
    w = {"a": 1.0, "b": 2.0}
    first, again, other = draws(Mixer(w, seed=7), 200), draws(Mixer(w, seed=7), 200), draws(Mixer(w, seed=8), 200)
    assert first == again and first != other


def test_a_mixer_resumes_from_its_draw_count():
    w = {"a": 1.0, "b": 2.0, "c": 0.5}
    whole = draws(Mixer(w, seed=1), 300)
    assert draws(Mixer(w, seed=1, draws=120), 180) == whole[120:]


def test_zero_weight_source_is_never_read():
    w = {"a": 1.0, "b": 0.0}
    assert set(draws(Mixer(w, seed=0), 1000)) == {"a"}
