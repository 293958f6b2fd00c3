"""Weighted mixing of any number of sample streams, deterministic given the seed."""
from __future__ import annotations

import random
from typing import Iterator, TypeVar

T = TypeVar("T")


def normalise(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items() if w > 0}


def mix(streams: dict[str, Iterator[T]], weights: dict[str, float], seed: int) -> Iterator[tuple[str, T]]:
    """Yield (source name, item), drawing the source of each item with probability proportional to its weight."""
    probs = normalise(weights)
    names = list(probs)
    cum = [sum(probs[n] for n in names[: i + 1]) for i in range(len(names))]
    rng = random.Random(seed)
    while True:
        name = rng.choices(names, cum_weights=cum)[0]
        yield name, next(streams[name])
