"""Weighted mixing of any number of sources: which source the next document comes from, deterministic
given the seed and the number of draws so far (the whole state of a mixture is that number)."""
from __future__ import annotations

import random


def normalise(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items() if w > 0}


class Mixer:
    """Draw n picks its source from a generator seeded by (seed, n): the state is just n."""

    def __init__(self, weights: dict[str, float], seed: int, draws: int = 0):
        probs = normalise(weights)
        self.names = list(probs)
        self.cum = [sum(probs[n] for n in self.names[: i + 1]) for i in range(len(self.names))]
        self.seed, self.draws = seed, draws

    def next_source(self) -> str:
        rng = random.Random(f"{self.seed}/{self.draws}")
        self.draws += 1
        return rng.choices(self.names, cum_weights=self.cum)[0]
