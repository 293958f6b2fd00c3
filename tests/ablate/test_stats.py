"""The bootstrap of the ablation tables against known answers, and the per-query tables it reads."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from mm1.ablate.effects import Metric, cell_estimate, pair_runs, paired_estimate
from mm1.ablate.grid import expand, load_grid
from mm1.ablate.queries import PSEUDO, load_scores
from mm1.ablate.report import build_report
from mm1.ablate.results import collect
from mm1.ablate.stats import LEVEL, RESAMPLES, Sample, draw, estimate, replicates
from tests.ablate.sweeps import TASKS, run_noise, write_fixture_sweep, write_grid

# --- the bootstrap on constructed samples ---------------------------------------------------------------------


def test_a_constant_paired_difference_has_a_zero_wide_interval():
    rng = np.random.default_rng(1)
    a = rng.normal(50, 10, size=(6, 40))  # 6 units (3 seeds x 2 configurations) x 40 queries
    resample = draw([0, 1, 2], {"t": 40})
    est = estimate(Sample([0, 0, 1, 1, 2, 2], [("t", (a + 5) - a)]), resample)
    assert est.value == pytest.approx(5) and est.low == pytest.approx(5) and est.high == pytest.approx(5)
    assert est.units == 6 and est.seeds == 3 and est.queries == {"t": 40}
    # each side alone varies; their difference draw by draw is exactly 5: the same queries on both sides
    left, right = (replicates(Sample([0, 0, 1, 1, 2, 2], [("t", x)]), resample) for x in (a, a + 5))
    assert np.ptp(left) > 1 and np.allclose(right - left, 5)


def test_every_unit_sees_the_same_query_resample():
    # two seeds with identical query scores: the cell varies as one run does (not sqrt(2) less, as it would
    # if each run drew its own queries)
    x = np.random.default_rng(2).normal(50, 10, size=(1, 50))
    resample = draw([0, 1], {"t": 50})
    both = estimate(Sample([0, 1], [("t", np.vstack([x, x]))]), resample)
    one = estimate(Sample([0], [("t", x)]), resample)
    assert both.high - both.low == pytest.approx(one.high - one.low, rel=0.05)


def _noisy_effect(n: int, seed: int, sd: float = 10.0):
    rng = np.random.default_rng(seed)
    return estimate(Sample([0], [("t", 5 + rng.normal(0, sd, size=(1, n)))]), draw([0], {"t": n}))


def test_independent_noise_covers_the_true_effect_and_shrinks_with_sqrt_n():
    small, large = _noisy_effect(100, seed=3), _noisy_effect(400, seed=4)
    for est, n in ((small, 100), (large, 400)):
        assert est.low < 5 < est.high
        normal = 2 * 1.96 * 10 / np.sqrt(n)  # the width the normal approximation gives
        assert (est.high - est.low) == pytest.approx(normal, rel=0.2)
    assert (small.high - small.low) / (large.high - large.low) == pytest.approx(2, rel=0.25)


def test_coverage_is_near_the_nominal_level():
    covered = sum(e.low < 5 < e.high for e in (_noisy_effect(60, seed=s) for s in range(100, 160)))
    assert LEVEL - 0.12 <= covered / 60 <= 1.0


def test_seeds_are_resampled_as_units():
    # no per-query records (one pseudo query each): the interval comes from the spread of the seeds
    values = np.array([[10.0], [12.0], [14.0], [16.0]])
    est = estimate(Sample([0, 1, 2, 3], [("t", values)]), draw([0, 1, 2, 3], {}))
    assert est.value == pytest.approx(13) and 10 <= est.low < 13 < est.high <= 16 and est.queries == {"t": None}
    one = estimate(Sample([0], [("t", values[:1])]), draw([0], {}))
    assert one.value == 10 and one.low is None and one.high is None  # nothing varies: no interval


def test_the_bootstrap_is_deterministic():
    sample = Sample([0, 1], [("t", np.random.default_rng(0).normal(size=(2, 30)))])
    first, again = estimate(sample, draw([0, 1], {"t": 30})), estimate(sample, draw([0, 1], {"t": 30}))
    assert (first.low, first.high) == (again.low, again.high)
    other = estimate(sample, draw([0, 1], {"t": 30}, rng_seed=1))
    assert (other.low, other.high) != (first.low, first.high)
    resample = draw([0, 1], {"t": 30})
    assert resample.size == RESAMPLES and (resample.seed_counts.sum(axis=1) == 2).all()
    assert (resample.query_counts["t"].sum(axis=1) == 30).all()


# --- per-query tables from run folders ------------------------------------------------------------------------

AXES = {"resolution": {"key": "model.vision.image_size", "values": [32, 64]},
        "tokens": {"key": "model.connector.num_tokens", "values": [4, 16]}}
EVAL = {"tasks": "synthetic", "shots": [0, 4], "limit": 8, "trials": 1}


def plus_five(labels: dict, seed: int, task: str, shots: int) -> float:
    """64 px is 5 points above 32 px, exactly, query by query (the noise is the same for every run)."""
    return 20 + 5 * (labels["resolution"] == "64") + 3 * (labels["tokens"] == "16") + seed + shots


def _sweep(tmp_path, seeds=(0, 1), **kwargs):
    grid = load_grid(write_grid(tmp_path / "g.yaml", axes=AXES, eval=EVAL, seeds=list(seeds)))
    out = tmp_path / "out"
    out.mkdir()
    write_fixture_sweep(out, grid, expand(grid), **kwargs)
    plan, rows = collect(out)
    return out, plan, rows


def test_the_query_table_matches_results_json(tmp_path):
    out, plan, rows = _sweep(tmp_path, score=plus_five, noise=run_noise(4.0))
    scores = load_scores(out, plan, rows)
    assert scores.seeds_only == [] and scores.tasks == sorted(TASKS)
    assert len(scores.frame) == 8 * 3 * 2 * 8  # runs x tasks x shots x queries
    assert {"run", "resolution", "tokens", "seed", "task", "shots", "id", "score"} <= set(scores.frame)
    means = scores.frame.groupby(["run", "task", "shots"])["score"].mean()
    for row in (r for r in rows if r.get("task")):
        assert means[(row["run"], row["task"], row["shots"])] == pytest.approx(row["score"])
    assert scores.matrix("synth_vqa", 0).shape == (8, 8)


def test_paired_effect_of_a_known_difference_through_run_folders(tmp_path):
    out, plan, rows = _sweep(tmp_path, score=plus_five)
    scores = load_scores(out, plan, rows)
    pairs = pair_runs(scores.runs, "resolution", "32", "64")
    assert len(pairs) == 4 and (pairs["tokens"].tolist(), pairs["seed"].tolist()) == (["4", "4", "16", "16"],
                                                                                      [0, 1, 0, 1])
    est = paired_estimate(scores, pairs, Metric(tuple(TASKS), (0, 4)))
    assert (est.value, est.low, est.high) == pytest.approx((5, 5, 5))
    cell = cell_estimate(scores, ["32_4_s0", "32_4_s1"], Metric(("synth_vqa",), (0,)))
    assert cell.low < cell.value < cell.high  # a cell alone does vary with the queries


def test_missing_predictions_fall_back_to_seeds_and_say_so(tmp_path):
    out, plan, rows = _sweep(tmp_path, score=plus_five, predictions=False)
    scores = load_scores(out, plan, rows)
    assert scores.seeds_only == sorted(TASKS) and set(scores.frame["id"]) == {PSEUDO}
    summary = build_report(out).summary
    assert "Per-query records (eval/predictions.jsonl) are missing or incomplete for synth_caption, " \
           "synth_textvqa, synth_vqa: those intervals resample the seeds only." in summary
    # the seeds differ by 1 point: 2 seeds still give an interval, from the seeds alone
    cell = re.search(r"\| 32 \| 4 \| (\d+\.\d) ± 0\.7 \[(\d+\.\d), (\d+\.\d)\] \|", summary)
    assert cell and (cell[1], cell[2], cell[3]) == ("20.5", "20.0", "21.0")


def test_predictions_that_disagree_with_results_json_are_not_used(tmp_path):
    out, plan, rows = _sweep(tmp_path, score=plus_five)
    path = out / "runs" / "64_16_s1" / "eval" / "predictions.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("\n".join(json.dumps(r) for r in records if r["id"] != "q3") + "\n")  # a query lost
    assert load_scores(out, plan, rows).seeds_only == sorted(TASKS)


def test_one_seed_without_records_shows_no_interval(tmp_path):
    out, *_ = _sweep(tmp_path, seeds=(0,), score=plus_five, predictions=False)
    summary = build_report(out).summary
    assert "| 32 | 4 | 20.0 | 24.0 |" in summary and "| 32 → 64 | average | 2 | **" not in summary
    assert "| 32 → 64 | average | 2 | +5.0 | +5.0 |" in summary


def test_plot_error_bars_are_the_intervals(tmp_path):
    from matplotlib.container import BarContainer
    from matplotlib.figure import Figure

    from mm1.ablate.effects import add_intervals
    from mm1.ablate.plots import _draw_bars
    from mm1.ablate.results import aggregate, columns_of

    out, plan, rows = _sweep(tmp_path, score=plus_five, noise=run_noise(4.0))
    scores = load_scores(out, plan, rows)
    cells = aggregate(rows, columns_of(plan))
    add_intervals(plan, scores, cells)
    ax = Figure().subplots()
    _draw_bars(ax, plan, scores, cells, {"shots": "4"}, ["resolution"], "tokens")
    containers = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(containers) == 2  # one colour per token count
    for bars, tokens in zip(containers, ("4", "16")):
        segments = bars.errorbar.lines[2][0].get_segments()
        assert len(segments) == 2
        for (x, low), (_, high) in segments:
            resolution = "32" if x < 0.5 else "64"
            cell = next(c for c in cells if c.labels == (resolution, tokens))
            est = cell.intervals["4-shot"]
            assert (low, high) == pytest.approx((est.low, est.high)) and est.low < est.value < est.high
