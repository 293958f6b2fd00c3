"""Weighted mixing of any number of sources: which source the next document comes from, deterministic
given the seed and the mixer's state. `data.mixture_unit` says what the weights are shares of:

    documents  draw n picks its source at random by weight, from a generator seeded by (seed, n);
               the state is n (MM1's wording: the weights are shares of the documents)
    tokens     the next document comes from the source furthest below its share of the tokens drawn so
               far; the state is n and the tokens drawn per source

The tokens of a document are the ones it puts into the training sequences (text and image placeholder
tokens of its kept pieces): the loader tells the mixer with `drawn` once the document is built.
"""
from __future__ import annotations

import random
from typing import Optional


def normalise(weights: dict[str, float]) -> dict[str, float]:
    total = sum(weights.values())
    return {name: w / total for name, w in weights.items() if w > 0}


class DocumentMixer:
    """Weights in documents: draw n is a weighted random pick seeded by (seed, n)."""

    def __init__(self, weights: dict[str, float], seed: int, state: Optional[dict] = None):
        probs = normalise(weights)
        self.names = list(probs)
        self.cum = [sum(probs[n] for n in self.names[: i + 1]) for i in range(len(self.names))]
        self.seed, self.draws = seed, (state or {}).get("draws", 0)

    def next_source(self) -> str:
        rng = random.Random(f"{self.seed}/{self.draws}")
        self.draws += 1
        return rng.choices(self.names, cum_weights=self.cum)[0]

    def drawn(self, source: str, tokens: int) -> None:
        """The picks do not depend on what was drawn."""

    def state(self) -> dict:
        return {"draws": self.draws}


class TokenMixer:
    """Weights in tokens: the source whose tokens are furthest below its target share of all tokens drawn
    (share x total - its tokens) gives the next document; a tie (the first draw, equal shortfalls) is
    broken by a weighted random pick seeded by (seed, n). The pick is never above its target, so no source
    is ever more than one document over it, and the realised shares approach the weights as tokens add up."""

    def __init__(self, weights: dict[str, float], seed: int, state: Optional[dict] = None):
        state = state or {}
        self.probs = normalise(weights)
        self.seed, self.draws = seed, state.get("draws", 0)
        self.tokens = {name: state.get("tokens", {}).get(name, 0) for name in self.probs}

    def next_source(self) -> str:
        total = sum(self.tokens.values())
        shortfall = {name: p * total - self.tokens[name] for name, p in self.probs.items()}
        furthest = max(shortfall.values())
        tied = [name for name, s in shortfall.items() if s == furthest]
        rng = random.Random(f"{self.seed}/{self.draws}")
        self.draws += 1
        return rng.choices(tied, weights=[self.probs[name] for name in tied])[0]

    def drawn(self, source: str, tokens: int) -> None:
        self.tokens[source] += tokens

    def state(self) -> dict:
        return {"draws": self.draws, "tokens": dict(self.tokens)}


MIXERS = {"documents": DocumentMixer, "tokens": TokenMixer}  # data.mixture_unit -> mixer


def build_mixer(unit: str, weights: dict[str, float], seed: int, state: Optional[dict] = None):
    """The mixer of `unit` (one of MIXERS), resumed at `state`: a mapping that holds the keys of a mixer's
    `state()` (the loader keeps them in its slot position, beside its own keys)."""
    return MIXERS[unit](weights, seed, state)
