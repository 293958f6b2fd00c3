"""Weighted mixing of sources (the loader's mixers): realised proportions in the mixture's unit,
determinism, resumable state."""
from __future__ import annotations

import json
import random
from collections import Counter

import pytest

from mm1.data.mixture import DocumentMixer, TokenMixer, build_mixer

# tokens per document of each test source: "long" documents are 10x "short" ones, "mixed" ones vary widely
LENGTHS = {"short": (8, 12), "long": (80, 120), "mixed": (1, 200)}
TOKEN_WEIGHTS = [
    {"short": 0.45, "long": 0.45, "mixed": 0.10},
    {"short": 0.8, "long": 0.2},
    {"short": 1, "long": 1, "mixed": 3},
]


def draws(mixer, n: int) -> list[str]:
    return [mixer.next_source() for _ in range(n)]


def length(source: str, draw: int) -> int:
    """The tokens of the document drawn at `draw` (the same in a resumed run)."""
    return random.Random(f"{source}/{draw}").randint(*LENGTHS[source])


def token_draws(mixer, n: int) -> list[str]:
    """`n` documents through `mixer`, each telling it its length, as the loader does."""
    picks = []
    for _ in range(n):
        source, at = mixer.next_source(), mixer.draws
        mixer.drawn(source, length(source, at))
        picks.append(source)
    return picks


@pytest.mark.parametrize("weights", [
    {"caption": 0.45, "interleaved": 0.45, "text": 0.10},
    {"caption": 5, "interleaved": 5, "text": 1},
    {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4},
])
def test_document_shares_within_two_points(weights):
    total = sum(weights.values())
    counts = Counter(draws(DocumentMixer(weights, seed=3), 10_000))
    for name, w in weights.items():
        assert abs(counts[name] / 10_000 - w / total) < 0.02, (name, counts)


@pytest.mark.parametrize("weights", TOKEN_WEIGHTS)
def test_token_shares_within_two_points_with_documents_ten_times_longer(weights):
    mixer = TokenMixer(weights, seed=3)
    token_draws(mixer, 10_000)
    total, weight = sum(mixer.tokens.values()), sum(weights.values())
    for name, w in weights.items():
        assert abs(mixer.tokens[name] / total - w / weight) < 0.02, (name, mixer.tokens)


def test_documents_unit_is_far_off_in_tokens_where_the_tokens_unit_is_not():
    weights = TOKEN_WEIGHTS[0]
    by_documents = Counter()
    mixer = DocumentMixer(weights, seed=3)
    for _ in range(10_000):
        source = mixer.next_source()
        by_documents[source] += length(source, mixer.draws)
    assert by_documents["long"] / sum(by_documents.values()) > 0.7  # 45% of the documents, 10x as long


def test_mixers_are_deterministic_given_the_seed():
    w = {"short": 1.0, "long": 2.0}
    first, again, other = (draws(DocumentMixer(w, seed=s), 200) for s in (7, 7, 8))
    assert first == again and first != other
    first, again = (token_draws(TokenMixer(w, seed=7), 200) for _ in range(2))
    assert first == again


def test_a_document_mixer_resumes_from_its_draw_count():
    w = {"a": 1.0, "b": 2.0, "c": 0.5}
    whole = draws(DocumentMixer(w, seed=1), 300)
    assert draws(DocumentMixer(w, seed=1, state={"draws": 120}), 180) == whole[120:]


def test_a_token_mixer_resumes_exactly_from_its_saved_state():
    w = TOKEN_WEIGHTS[0]
    whole = token_draws(TokenMixer(w, seed=1), 3000)
    first = TokenMixer(w, seed=1)
    token_draws(first, 1234)
    saved = json.loads(json.dumps(first.state()))  # as the loader's position is stored in trainer.json
    assert saved["draws"] == 1234 and sum(saved["tokens"].values()) > 0
    assert token_draws(TokenMixer(w, seed=1, state=saved), 3000 - 1234) == whole[1234:]


@pytest.mark.parametrize("unit", ["documents", "tokens"])
def test_zero_weight_source_is_never_read(unit):
    mixer = build_mixer(unit, {"short": 1.0, "long": 0.0}, seed=0)
    assert set(token_draws(mixer, 1000)) == {"short"}

