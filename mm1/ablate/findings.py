"""The grid's `findings:` checked against the runs: each claim's effect, its 95% interval and a verdict.

    results = evaluate_findings(plan, scores)      # one FindingResult per finding, in the grid's order
    write_findings(results, out / "findings.json")

kind effect: level `to` minus level `from` of the axis, paired over the other axes and the seeds (axis
`shots`: the two k-shot columns of each run), on the task (or the average over the grid's tasks) and the
shots (their average; all of the grid's when not given), with the bootstrap of mm1.ablate.stats. Verdict:
reproduced when the interval lies entirely on the expected side of 0, contradicted when entirely on the
other side, inconclusive otherwise, and also when nothing varies (one seed and no per-query records).

kind spread: max minus min over the axis's levels of the level means, over groups of runs that agree on
every other axis and the seed. For each finding it names (`smaller_than`), the difference (that effect in
its expected direction) minus the spread is bootstrapped jointly (the same draws on both sides): reproduced
when every such interval lies above 0, contradicted when any lies below 0, else inconclusive. (Noise
alone gives levels a spread above 0, so the spread of noisy runs is biased upwards: the check is strict.)

A finding with a planned run that has no results (failed, unfinished), or whose runs form no pair, is
`not run`; `missing` names the runs.

With several seeds, each finding is also judged on each seed's runs alone (`per_seed`), exactly as a sweep of
that one seed would judge it: the same bootstrap draws over the queries, no seed to resample.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mm1.ablate.effects import Metric, difference, levels_of, pair_runs, run_sample
from mm1.ablate.queries import Scores
from mm1.ablate.spec import SHOTS_AXIS
from mm1.ablate.stats import Estimate, describe, interval, point, replicates

REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_RUN = "reproduced", "contradicted", "inconclusive", "not run"


@dataclass
class FindingResult:
    spec: dict  # the finding as plan.json holds it
    verdict: str
    estimate: Estimate | None = None  # effect (to - from), or the spread
    shots: list[int] | None = None  # the k-shot columns averaged (None for axis shots)
    missing: list[str] = field(default_factory=list)  # planned runs without results
    versus: list[dict] = field(default_factory=list)  # spread: {name, difference, low, high} per smaller_than
    note: str = ""
    draws: np.ndarray | None = None  # bootstrap draws, in the expected direction for an effect
    per_seed: dict[int, FindingResult] = field(default_factory=dict)  # seed -> the finding on its runs alone

    def measured(self) -> dict:
        e = self.estimate
        numbers = {"effect": e.value, "low": e.low, "high": e.high, "pairs": e.units, "seeds": e.seeds,
                   "queries": e.queries} if e else {"effect": None, "low": None, "high": None, "pairs": 0,
                                                    "seeds": 0, "queries": {}}
        return {**numbers, "verdict": self.verdict, "versus": self.versus, "missing": self.missing,
                "note": self.note}

    def record(self) -> dict:
        """The findings.json entry: levels as run labels (text), shot counts as numbers."""
        s = self.spec
        level = int if s["axis"] == SHOTS_AXIS else str
        return {"name": s["name"], "paper": s["paper"], "kind": s["kind"], "axis": s["axis"],
                "from": None if s["from_"] is None else level(s["from_"]),
                "to": None if s["to"] is None else level(s["to"]), "task": s["task"], "shots": self.shots,
                "expect": s["expect"], "smaller_than": s["smaller_than"],
                "where": {c: [str(v) for v in vs] for c, vs in s["where"].items()}, **self.measured(),
                "per_seed": [{"seed": seed, **r.measured()} for seed, r in self.per_seed.items()]}


def _planned(plan: dict, spec: dict) -> list[str]:
    """The runs the finding compares: those in its `where`, at its two levels for an effect on an axis."""
    where = {column: {str(v) for v in levels} for column, levels in spec["where"].items()}
    names = []
    for run in plan["runs"]:
        labels = run["labels"]
        if any(labels[c] not in wanted for c, wanted in where.items()):
            continue
        if spec["kind"] == "effect" and spec["axis"] != SHOTS_AXIS and labels[spec["axis"]] not in (
                str(spec["from_"]), str(spec["to"])):
            continue
        names.append(run["name"])
    return names


def _shots(plan: dict, spec: dict) -> list[int] | None:
    if spec["axis"] == SHOTS_AXIS:
        return None
    given = spec["shots"]
    return list(plan["grid"]["eval"]["shots"]) if given is None else given if isinstance(given, list) else [given]


def _metric(scores: Scores, spec: dict, shots: list[int]) -> Metric:
    return Metric((spec["task"],) if spec["task"] else tuple(scores.tasks), tuple(shots))


def verdict(est: Estimate, sign: int = 1) -> str:
    if est.low is None:
        return INCONCLUSIVE
    low, high = sorted((sign * est.low, sign * est.high))
    return REPRODUCED if low > 0 else CONTRADICTED if high < 0 else INCONCLUSIVE


def _not_run(spec: dict, plan: dict, scores: Scores) -> FindingResult | None:
    names = _planned(plan, spec)
    missing = [n for n in names if n not in scores.runs.index]
    if missing or not names:
        return FindingResult(spec, NOT_RUN, shots=_shots(plan, spec), missing=missing,
                             note=f"{len(missing)} of {len(names)} runs have no results")
    return None


def _effect(plan: dict, scores: Scores, spec: dict) -> FindingResult:
    shots = _shots(plan, spec)
    runs = scores.runs.loc[_planned(plan, spec)]
    if spec["axis"] == SHOTS_AXIS:
        pairs = pd.DataFrame({"run_a": runs.index, "run_b": runs.index, "seed": runs["seed"].to_numpy()})
        sample = difference(scores, pairs, _metric(scores, spec, [int(spec["from_"])]),
                            _metric(scores, spec, [int(spec["to"])]))
    else:
        pairs = pair_runs(runs, spec["axis"], str(spec["from_"]), str(spec["to"]))
        sample = difference(scores, pairs, _metric(scores, spec, shots))
    if sample is None:
        return FindingResult(spec, NOT_RUN, shots=shots, note="its runs form no pair with scores")
    sign = 1 if spec["expect"] == "increase" else -1
    draws = replicates(sample, scores.resample)
    est = describe(sample, point(sample), draws)
    note = "" if est.low is not None else "no interval: one seed and no per-query records"
    return FindingResult(spec, verdict(est, sign), est, shots, note=note, draws=sign * draws)


def _level_groups(plan: dict, runs: pd.DataFrame, axis: str) -> pd.DataFrame:
    """One row per group of runs agreeing on every other column and the seed; one column (a run) per level."""
    others = [c for c in runs.columns if c != axis]
    wide = runs.reset_index().set_index(others + [axis])["run"].unstack(axis)
    return wide[[level for level in levels_of(plan, axis) if level in wide.columns]].dropna()


def _spread(plan: dict, scores: Scores, spec: dict, done: dict[str, FindingResult]) -> FindingResult:
    shots = _shots(plan, spec)
    named = [done[n] for n in spec["smaller_than"]]
    if any(r.verdict == NOT_RUN for r in named):
        late = [r.spec["name"] for r in named if r.verdict == NOT_RUN]
        return FindingResult(spec, NOT_RUN, shots=shots, note=f"needs {', '.join(late)} (not run)")
    groups = _level_groups(plan, scores.runs.loc[_planned(plan, spec)], spec["axis"])
    metric = _metric(scores, spec, shots)
    samples = [run_sample(scores, list(groups[level]), metric) for level in groups.columns]
    if len(samples) < 2 or any(s is None for s in samples):
        return FindingResult(spec, NOT_RUN, shots=shots, note="fewer than two levels with scores")
    points = [point(s) for s in samples]
    draws = np.stack([replicates(s, scores.resample) for s in samples])
    spread_draws = draws.max(axis=0) - draws.min(axis=0)
    est = describe(samples[0], max(points) - min(points), spread_draws)
    versus = [_versus(r, est, spread_draws) for r in named]
    if any(v["low"] is None for v in versus):
        result = INCONCLUSIVE
    elif all(v["low"] > 0 for v in versus):
        result = REPRODUCED
    else:
        result = CONTRADICTED if any(v["high"] < 0 for v in versus) else INCONCLUSIVE
    return FindingResult(spec, result, est, shots, versus=versus)


def _versus(effect: FindingResult, spread: Estimate, spread_draws: np.ndarray) -> dict:
    """(the effect in its expected direction) minus the spread, bootstrapped jointly."""
    sign = 1 if effect.spec["expect"] == "increase" else -1
    low, high = interval(effect.draws - spread_draws) if effect.estimate.low is not None else (None, None)
    return {"name": effect.spec["name"], "difference": sign * effect.estimate.value - spread.value,
            "low": low, "high": high}


def evaluate_findings(plan: dict, scores: Scores) -> list[FindingResult]:
    """Every finding on all the runs, and with several seeds on each seed's runs alone (`per_seed`)."""
    results = _judge(plan, scores)
    seeds = sorted(plan["grid"]["seeds"])
    for seed in seeds if len(seeds) > 1 else ():
        runs = [r for r in plan["runs"] if r["seed"] == seed]
        one = {**plan, "grid": {**plan["grid"], "seeds": [seed]}, "runs": runs}
        for pooled, alone in zip(results, _judge(one, scores.of_seed(seed))):
            pooled.per_seed[seed] = alone
    return results


def _judge(plan: dict, scores: Scores) -> list[FindingResult]:
    specs = plan["grid"].get("findings") or []
    done: dict[str, FindingResult] = {}
    for spec in sorted(specs, key=lambda s: s["kind"] == "spread"):  # effects first: spreads use them
        missing = _not_run(spec, plan, scores)
        done[spec["name"]] = missing or (_effect(plan, scores, spec) if spec["kind"] == "effect"
                                         else _spread(plan, scores, spec, done))
    return [done[s["name"]] for s in specs]


def write_findings(results: list[FindingResult], path: Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps([r.record() for r in results], indent=2) + "\n")
    return path
