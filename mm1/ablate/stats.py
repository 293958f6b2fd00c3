"""Bootstrap intervals over seeds and queries, drawn once per report so that every statistic shares them.

    resample = draw(seeds=[0, 1], queries={"synth_vqa": ids})   # RESAMPLES joint draws, RNG seed BOOTSTRAP_SEED
    est = estimate(Sample(unit_seeds, [("synth_vqa", values)]), resample)   # est.value, est.low, est.high

A statistic is the mean over units (runs, or paired differences of runs) of the mean over blocks (task x
shots) of the mean over the task's queries. One draw resamples the seeds with replacement (a unit counts as
often as its seed is drawn) and, within that, each task's queries with replacement, the same queries for
every unit: all runs of a grid are scored on the same query set with the same demonstrations, so a paired
difference sees the same resample on both sides. A task scored without per-query records has one pseudo
query (its task score), which every draw keeps: its interval comes from the seeds only. The interval is the
percentile interval of the draws. (CIDEr is resampled as the mean of per-image CIDEr with the document
frequencies of the whole query set, as eval/predictions.jsonl records it.)
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
BOOTSTRAP_SEED = 0
LEVEL = 0.95


@dataclass(frozen=True)
class Resample:
    """`B` joint draws: how often each seed, and each query of each task, is drawn."""
    seeds: tuple[int, ...]
    seed_counts: np.ndarray  # (B, seeds)
    query_counts: dict[str, np.ndarray]  # task -> (B, queries), columns in the order the task's values use

    @property
    def size(self) -> int:
        return self.seed_counts.shape[0]

    def queries(self, task: str, n: int) -> np.ndarray:
        """(B, n) query counts of `task`; a block of one value (no per-query records) keeps it in every draw."""
        if n == 1:
            return np.ones((self.size, 1))
        counts = self.query_counts[task]
        assert counts.shape[1] == n, f"{task}: {n} queries, the resample has {counts.shape[1]}"
        return counts


def draw(seeds: list[int], queries: dict[str, int], resamples: int = RESAMPLES,
         rng_seed: int = BOOTSTRAP_SEED) -> Resample:
    """Seeds, then each task's queries (tasks in sorted order), from one fixed-seed generator."""
    rng = np.random.default_rng(rng_seed)
    seeds = tuple(sorted(seeds))
    seed_counts = rng.multinomial(len(seeds), [1 / len(seeds)] * len(seeds), size=resamples)
    counts = {task: rng.multinomial(n, [1 / n] * n, size=resamples) for task, n in sorted(queries.items())}
    return Resample(seeds, seed_counts, counts)


@dataclass
class Sample:
    """Per-unit values of one statistic: blocks of (task, (units, queries) array), every block the same units."""
    seeds: list[int]  # the seed of each unit
    blocks: list[tuple[str, np.ndarray]]

    def __post_init__(self):
        assert self.blocks and all(v.shape[0] == len(self.seeds) for _, v in self.blocks)


@dataclass(frozen=True)
class Estimate:
    value: float  # the statistic on the data as they are
    low: float | None  # the 95% interval; None when nothing varies (one seed and no per-query records)
    high: float | None
    units: int  # runs or pairs
    seeds: int
    queries: dict[str, int | None]  # task -> queries resampled; None = no per-query records (seeds only)

    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


def point(sample: Sample) -> float:
    per_unit = np.mean([values.mean(axis=1) for _, values in sample.blocks], axis=0)
    return float(per_unit.mean())


def replicates(sample: Sample, resample: Resample) -> np.ndarray:
    """(B,) the statistic under each draw; NaN where a draw holds none of the sample's seeds."""
    per_unit = np.zeros((resample.size, len(sample.seeds)))
    for task, values in sample.blocks:
        w = resample.queries(task, values.shape[1])  # (B, Q)
        per_unit += (w @ values.T) / w.sum(axis=1, keepdims=True)
    per_unit /= len(sample.blocks)
    column = {s: i for i, s in enumerate(resample.seeds)}
    weights = resample.seed_counts[:, [column[s] for s in sample.seeds]]  # (B, units)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights * per_unit).sum(axis=1) / weights.sum(axis=1)


def interval(draws: np.ndarray) -> tuple[float | None, float | None]:
    """The percentile interval at LEVEL; (None, None) when no draw is defined."""
    draws = draws[~np.isnan(draws)]
    if not draws.size:
        return None, None
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(draws, [tail, 100 - tail])
    return float(low), float(high)


def varies(sample: Sample) -> bool:
    """Whether resampling can move the statistic: several seeds, or per-query records."""
    return len(set(sample.seeds)) > 1 or any(v.shape[1] > 1 for _, v in sample.blocks)


def describe(sample: Sample, value: float, draws: np.ndarray) -> Estimate:
    low, high = interval(draws) if varies(sample) else (None, None)
    queries = {task: (v.shape[1] if v.shape[1] > 1 else None) for task, v in sample.blocks}
    return Estimate(value, low, high, len(sample.seeds), len(set(sample.seeds)), queries)


def estimate(sample: Sample, resample: Resample) -> Estimate:
    return describe(sample, point(sample), replicates(sample, resample))
