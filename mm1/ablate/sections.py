"""summary.md's statistics sections, as markdown: the Findings table and the paired Effects tables."""
from __future__ import annotations

from mm1.ablate.effects import AxisEffect
from mm1.ablate.findings import NOT_RUN, FindingResult
from mm1.ablate.results import title_of
from mm1.ablate.stats import Estimate

FINDINGS_TEXT = (
    "Each claim of the grid file measured on these runs: the effect is level `to` minus level `from`, paired over "
    "runs that agree on every other axis and the seed (axis shots: two k-shot columns of the same run), with its "
    "95% interval. Verdict: reproduced when the interval lies entirely on the claimed side of 0, contradicted "
    "when it lies entirely on the other side, else inconclusive; not run when some of its runs have no results. "
    "A spread is max minus min over the axis's levels of the level means; it is reproduced when, for every "
    "finding it names, (that effect in its claimed direction) minus the spread has an interval above 0, and "
    "contradicted when one lies below 0. Also in findings.json.")
PER_SEED_TEXT = (
    "Each finding on one seed's runs alone, as a sweep of that seed alone reports it (the same draws over the "
    "queries, no seed to resample): the effect or the spread [95% interval] and its verdict. A pooled verdict "
    "that some seed does not share rests on the other seeds.")
EFFECTS_TEXT = (
    "Each level minus the axis's first level, paired over the runs that agree on every other axis and the seed: "
    "mean over the pairs [95% interval]. The interval resamples the pairs' seeds and the queries jointly, the "
    "same query resample on both sides of each pair. Bold: the interval excludes 0.")


def signed(value: float, digits: int = 1) -> str:
    return f"{value:+.{digits}f}"


def estimate_text(est: Estimate | None, sign: bool = True, digits: int = 1) -> str:
    """"+3.1 [+1.2, +5.0]"; no interval where nothing varies; "-" for none."""
    if est is None:
        return "-"
    f = signed if sign else (lambda v, d=digits: f"{v:.{d}f}")
    text = f(est.value, digits)
    return text + (f" [{f(est.low, digits)}, {f(est.high, digits)}]" if est.low is not None else "")


def _measured(plan: dict, r: FindingResult) -> str:
    s = r.spec
    where = "".join(f", {c} in {'/'.join(map(str, v))}" for c, v in s["where"].items())
    shots = f", {'/'.join(map(str, r.shots))}-shot" if r.shots else ""
    what = (f"{title_of(plan, s['axis'])} {s['from_']} → {s['to']}" if s["kind"] == "effect"
            else f"spread over {title_of(plan, s['axis'])}")
    return f"{what}, {s['task'] or 'task average'}{shots}{where}"


def _finding_effect(r: FindingResult) -> str:
    if r.estimate is None:
        return "-"
    if r.spec["kind"] == "effect":
        return estimate_text(r.estimate)
    versus = [f"{v['name']} − spread: {signed(v['difference'])}"
              + (f" [{signed(v['low'])}, {signed(v['high'])}]" if v["low"] is not None else "") for v in r.versus]
    return "; ".join([f"spread {estimate_text(r.estimate, sign=False)}"] + versus)


def _verdict(r: FindingResult) -> str:
    if r.verdict != NOT_RUN:
        return r.verdict + (f" ({r.note})" if r.note else "")
    runs = ", ".join(f"`{n}`" for n in r.missing[:4]) + (", ..." if len(r.missing) > 4 else "")
    return f"not run: {r.note}" + (f" ({runs})" if runs else "")


def findings_markdown(plan: dict, results: list[FindingResult]) -> list[str]:
    if not results:
        return []
    lines = ["## Findings", "", FINDINGS_TEXT, "", "| finding | paper | measured | effect [95% interval] | pairs | "
             "verdict |", "|---|---|---|---|---|---|"]
    for r in results:
        pairs = r.estimate.units if r.estimate else 0
        lines.append(f"| {r.spec['name']} | {r.spec['paper']} | {_measured(plan, r)} | {_finding_effect(r)} | "
                     f"{pairs} | {_verdict(r)} |")
    return lines + [""]


def _seed_cell(r: FindingResult) -> str:
    if r.verdict == NOT_RUN:
        return NOT_RUN
    if r.spec["kind"] == "effect":
        return f"{estimate_text(r.estimate)} {r.verdict}"
    return f"spread {estimate_text(r.estimate, sign=False)} {r.verdict}"


def per_seed_markdown(results: list[FindingResult]) -> list[str]:
    """Findings x seeds, when the findings were also judged seed by seed."""
    seeds = list(results[0].per_seed) if results else []
    if not seeds:
        return []
    lines = ["## Findings per seed", "", PER_SEED_TEXT, "",
             "| finding | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    lines += [f"| {r.spec['name']} | " + " | ".join(_seed_cell(r.per_seed[s]) for s in seeds) + " |"
              for r in results]
    return lines + [""]


def _effect_cell(est: Estimate | None) -> str:
    text = estimate_text(est)
    return f"**{text}**" if est is not None and est.excludes_zero() else text


def effects_markdown(plan: dict, effects: list[AxisEffect], shots: list[int], tasks: list[str]) -> list[str]:
    """One table per axis: rows = comparison x (average, each task), columns = k-shot."""
    if not effects:
        return []
    lines = ["## Effects", "", EFFECTS_TEXT, ""]
    columns = [f"{k}-shot" for k in shots] if shots else ["final loss"]
    rows = [(None, "average")] + [(t, t) for t in tasks] if shots else [(None, "final loss")]
    for axis in dict.fromkeys(e.axis for e in effects):
        lines += [f"| {title_of(plan, axis)} | task | pairs | " + " | ".join(columns) + " |",
                  "|---|---|---|" + "---|" * len(columns)]
        for e in (e for e in effects if e.axis == axis):
            for task, name in rows:
                cells = [_effect_cell(e.estimates.get(f"{task} {c}" if task else c)) for c in columns]
                lines.append(f"| {e.start} → {e.end} | {name} | {e.pairs} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines
