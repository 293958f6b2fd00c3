"""Weighted mixing of sources: realised proportions and determinism."""
from __future__ import annotations

import itertools
from collections import Counter

import pytest

from mm1.data.mixture import mix


def streams(names):
    return {name: itertools.count() for name in names}


@pytest.mark.parametrize("weights", [
    {"caption": 0.45, "interleaved": 0.45, "text": 0.10},
    {"caption": 5, "interleaved": 5, "text": 1},
    {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4},
])
def test_realised_proportions_within_two_points(weights):
    total = sum(weights.values())
    counts = Counter(name for name, _ in itertools.islice(mix(streams(weights), weights, seed=3), 10_000))
    for name, w in weights.items():
        assert abs(counts[name] / 10_000 - w / total) < 0.02, (name, counts)


def test_mixture_is_deterministic_given_the_seed():
    w = {"a": 1.0, "b": 2.0}
    first = [n for n, _ in itertools.islice(mix(streams(w), w, seed=7), 200)]
    again = [n for n, _ in itertools.islice(mix(streams(w), w, seed=7), 200)]
    other = [n for n, _ in itertools.islice(mix(streams(w), w, seed=8), 200)]
    assert first == again and first != other


def test_zero_weight_source_is_never_read():
    w = {"a": 1.0, "b": 0.0}
    assert {n for n, _ in itertools.islice(mix(streams(w), w, seed=0), 1000)} == {"a"}
