"""Findings: the grid's claims, checked in grid files and measured on constructed run folders."""
from __future__ import annotations

import json

import pytest

from mm1.ablate.grid import GridError, expand, load_grid
from mm1.ablate.report import build_report
from mm1.cli import main
from tests.ablate.sweeps import run_noise, write_fixture_sweep, write_grid

AXES = {"connector": {"key": "model.connector.kind", "values": ["avg_pool", "c_abstractor"]},
        "tokens": {"key": "model.connector.num_tokens", "values": [4, 16], "short": "tok"},
        "resolution": {"key": "model.vision.image_size", "values": [32, 64], "short": "px", "label": "resolution (px)"}}
EVAL = {"tasks": "synthetic", "shots": [0, 4], "limit": 40, "trials": 1}
RESOLUTION = {"name": "higher resolution helps", "paper": "MM1 Table 1: 336 px beats 224 px", "axis": "resolution",
              "from": "32", "to": "64", "task": "synth_vqa", "shots": 0, "expect": "increase"}
FINDINGS = [
    RESOLUTION,
    {"name": "resolution hurts", "paper": "a claim the runs contradict", "axis": "resolution", "from": 32,
     "to": 64, "expect": "decrease"},
    {"name": "c_abstractor helps", "paper": "a claim the runs cannot tell", "axis": "connector",
     "from": "avg_pool", "to": "c_abstractor", "shots": [0, 4], "expect": "increase"},
    {"name": "demonstrations help", "paper": "MM1 Table 4: more shots, higher scores", "axis": "shots",
     "from": 0, "to": 4, "expect": "increase"},
    {"name": "more tokens help at 64 px", "paper": "MM1 Fig. 4", "axis": "tokens", "from": "4", "to": "16",
     "where": {"resolution": ["64"]}, "expect": "increase"},
    {"name": "connector matters less than resolution", "paper": "MM1 Fig. 4", "kind": "spread",
     "axis": "connector", "task": "synth_vqa", "shots": 0, "smaller_than": ["higher resolution helps"]},
    {"name": "resolution matters less than the connector", "paper": "its opposite", "kind": "spread",
     "axis": "resolution", "smaller_than": ["c_abstractor helps"]},
]


def score(labels: dict, seed: int, task: str, shots: int) -> float:
    """Resolution +8, tokens +5, the connector nothing, k-shot +1 per shot, the seed +0.5."""
    return 20 + 8 * (labels["resolution"] == "64") + 5 * (labels["tokens"] == "16") + shots + 0.5 * seed


def _sweep(tmp_path, findings=FINDINGS, broken=()):
    grid = load_grid(write_grid(tmp_path / "g.yaml", axes=AXES, eval=EVAL, seeds=[0, 1], findings=findings))
    out = tmp_path / "out"
    out.mkdir()
    write_fixture_sweep(out, grid, expand(grid), score=score, noise=run_noise(15.0), queries=40)
    for name in broken:  # a run whose eval never finished
        (out / "runs" / name / "eval.done").unlink()
    return out


def _by_name(out) -> dict[str, dict]:
    return {f["name"]: f for f in json.loads((out / "findings.json").read_text())}


def test_verdicts_reproduced_contradicted_inconclusive(tmp_path):
    out = _sweep(tmp_path)
    report = build_report(out)
    found = _by_name(out)
    assert [r.spec["name"] for r in report.findings] == [f["name"] for f in FINDINGS] == list(found)
    res = found["higher resolution helps"]
    assert res["verdict"] == "reproduced" and 0 < res["low"] < 8 < res["high"]
    assert res["pairs"] == 8 and res["seeds"] == 2 and res["queries"] == {"synth_vqa": 40}
    assert (res["axis"], res["from"], res["to"], res["task"], res["shots"]) == ("resolution", "32", "64",
                                                                                "synth_vqa", [0])
    hurts = found["resolution hurts"]
    assert hurts["verdict"] == "contradicted" and hurts["low"] > 0 and hurts["shots"] == [0, 4]
    assert (hurts["from"], hurts["to"]) == ("32", "64")  # written 32, 64: levels are run labels
    assert hurts["queries"] == {"synth_caption": 40, "synth_textvqa": 40, "synth_vqa": 40}
    connector = found["c_abstractor helps"]
    assert connector["verdict"] == "inconclusive" and connector["low"] < 0 < connector["high"]
    shots = found["demonstrations help"]
    assert shots["verdict"] == "reproduced" and shots["low"] < 4 < shots["high"] and shots["pairs"] == 16
    assert shots["shots"] is None and (shots["from"], shots["to"]) == (0, 4)  # the axis is the shot count
    tokens = found["more tokens help at 64 px"]
    assert tokens["verdict"] == "reproduced" and tokens["pairs"] == 4  # 2 connectors x 2 seeds at 64 px


def test_spread_findings(tmp_path):
    out = _sweep(tmp_path)
    build_report(out)
    found = _by_name(out)
    less = found["connector matters less than resolution"]
    assert less["verdict"] == "reproduced" and less["pairs"] == 8  # tokens x resolution x seeds
    assert 0 <= less["low"] <= less["effect"] <= less["high"] < 8  # max - min of 2 level means: >= 0
    (versus,) = less["versus"]
    assert versus["name"] == "higher resolution helps" and versus["low"] > 0
    assert versus["difference"] == pytest.approx(found["higher resolution helps"]["effect"] - less["effect"])
    more = found["resolution matters less than the connector"]
    assert more["verdict"] == "contradicted" and more["versus"][0]["high"] < 0
    assert more["effect"] == pytest.approx(8, abs=1.5)


def test_missing_runs_make_a_finding_not_run_and_are_named(tmp_path):
    at_64 = {"name": "connector matters less at 64 px", "paper": "", "kind": "spread", "axis": "connector",
             "where": {"resolution": ["64"]}, "smaller_than": ["higher resolution helps"]}
    out = _sweep(tmp_path, findings=FINDINGS + [at_64], broken=["avg_pool_tok4_px32_s0"])
    summary = build_report(out).summary
    found = _by_name(out)
    for name in ("higher resolution helps", "resolution hurts", "c_abstractor helps", "demonstrations help",
                 "connector matters less than resolution"):
        assert found[name]["verdict"] == "not run" and found[name]["missing"] == ["avg_pool_tok4_px32_s0"]
        assert found[name]["effect"] is None and found[name]["pairs"] == 0
    assert found["more tokens help at 64 px"]["verdict"] == "reproduced"  # needs only the 64 px runs
    assert found[at_64["name"]]["verdict"] == "not run" and found[at_64["name"]]["missing"] == []
    assert found[at_64["name"]]["note"] == "needs higher resolution helps (not run)"
    assert "| higher resolution helps | MM1 Table 1: 336 px beats 224 px | resolution (px) 32 → 64, synth_vqa, " \
           "0-shot | - | 0 | not run: 1 of 16 runs have no results (`avg_pool_tok4_px32_s0`) |" in summary


def test_each_seed_alone_is_judged_as_a_sweep_of_that_seed_would_judge_it(tmp_path):
    (tmp_path / "pooled").mkdir()
    pooled = _sweep(tmp_path / "pooled")
    summary = build_report(pooled).summary
    found = _by_name(pooled)
    for seed in (0, 1):
        grid = load_grid(write_grid(tmp_path / f"g{seed}.yaml", axes=AXES, eval=EVAL, seeds=[seed],
                                    findings=FINDINGS))
        alone = tmp_path / f"seed{seed}"
        alone.mkdir()
        write_fixture_sweep(alone, grid, expand(grid), score=score, noise=run_noise(15.0), queries=40)
        build_report(alone)
        for name, own in _by_name(alone).items():
            assert own["per_seed"] == []  # one seed: nothing to split
            (entry,) = [e for e in found[name]["per_seed"] if e["seed"] == seed]
            assert entry == {"seed": seed, **{k: own[k] for k in entry if k != "seed"}}
            assert entry["seeds"] == (1 if own["effect"] is not None else 0)
    assert found["higher resolution helps"]["per_seed"][0]["verdict"] == "reproduced"
    assert [e["pairs"] for e in found["higher resolution helps"]["per_seed"]] == [4, 4]
    table = summary[summary.index("## Findings per seed"):summary.index("## Results")]
    assert "| finding | seed 0 | seed 1 |" in table
    res = found["higher resolution helps"]["per_seed"][1]
    assert f"| higher resolution helps | {found['higher resolution helps']['per_seed'][0]['effect']:+.1f} [" in table
    assert f"[{res['low']:+.1f}, {res['high']:+.1f}] reproduced |" in table
    assert "| connector matters less than resolution | spread " in table


def test_a_seed_without_results_is_not_run_in_its_column(tmp_path):
    out = _sweep(tmp_path, broken=[f"{c}_tok{t}_px{r}_s1" for c in ("avg_pool", "c_abstractor") for t in (4, 16)
                                   for r in (32, 64)])
    summary = build_report(out).summary
    res = _by_name(out)["higher resolution helps"]
    assert res["verdict"] == "not run"  # pooled: runs missing
    assert [(e["seed"], e["verdict"]) for e in res["per_seed"]] == [(0, "reproduced"), (1, "not run")]
    assert res["per_seed"][1]["missing"] and "reproduced | not run |" in summary


def test_summary_starts_with_the_findings_table(tmp_path):
    out = _sweep(tmp_path)
    summary = build_report(out).summary
    assert summary.index("## Findings") < summary.index("## Results") < summary.index("## Effects")
    row = next(line for line in summary.splitlines() if line.startswith("| higher resolution helps |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    res = _by_name(out)["higher resolution helps"]
    assert cells == ["higher resolution helps", "MM1 Table 1: 336 px beats 224 px",
                     "resolution (px) 32 → 64, synth_vqa, 0-shot",
                     f"{res['effect']:+.1f} [{res['low']:+.1f}, {res['high']:+.1f}]", "8", "reproduced"]
    assert "| more tokens help at 64 px | MM1 Fig. 4 | tokens 4 → 16, task average, 0/4-shot, resolution in 64 |" \
           in summary
    assert "Results on the built-in synthetic benchmark check that the pipeline detects effects" in summary


def test_report_command_rebuilds_findings(tmp_path, capsys):
    out = _sweep(tmp_path)
    assert main(["ablate", "--report", str(out)]) == 0
    first = (out / "findings.json").read_text()
    (out / "findings.json").unlink()
    assert main(["ablate", "--report", str(out)]) == 0
    assert (out / "findings.json").read_text() == first  # rebuilt, and the same: the bootstrap is seeded
    assert "findings.json" in capsys.readouterr().out
    keys = {"name", "paper", "axis", "from", "to", "task", "shots", "effect", "low", "high", "pairs", "seeds",
            "queries", "verdict"}
    assert all(keys <= set(f) for f in json.loads(first))


def test_no_findings_no_file(tmp_path):
    out = _sweep(tmp_path, findings=[])
    summary = build_report(out).summary
    assert not (out / "findings.json").exists() and "## Findings" not in summary


# --- grid-file checks -----------------------------------------------------------------------------------------


def _load(tmp_path, finding, *more, **fields):
    return load_grid(write_grid(tmp_path / "g.yaml", axes=AXES, eval=EVAL, findings=[*more, finding], **fields))


@pytest.mark.parametrize("change, error", [
    ({"axis": "resolutoin"}, r"findings\[0\]\.axis: 'resolutoin' is not an axis of the grid; allowed: connector"),
    ({"from": "48"}, r"findings\[0\]\.from: '48' is not a level of resolution; levels: 32, 64"),
    ({"to": None}, r"findings\[0\]\.to: missing"),
    ({"to": "32"}, r"findings\[0\]\.to: the same level as `from`"),
    ({"expect": "better"}, r"findings\[0\]\.expect: 'better' is not one of increase, decrease"),
    ({"shots": 2}, r"findings\[0\]\.shots: 2 is not one of the grid's shot counts 0, 4"),
    ({"task": "synth_vqq"}, r"findings\[0\]\.task: 'synth_vqq' is not a task of eval\.tasks"),
    ({"where": {"tokens": ["5"]}}, r"findings\[0\]\.where\.tokens: '5' is not a level of tokens"),
    ({"where": {"resolution": ["64"]}}, r"findings\[0\]\.where\.resolution: not one of the other axes"),
    ({"kind": "ratio"}, r"findings\[0\]\.kind: 'ratio' is not one of effect, spread"),
    ({"name": ""}, r"findings\[0\]\.name: a name is needed"),
    ({"colour": "red"}, r"findings\[0\]\.colour: unknown key"),
    ({"smaller_than": ["x"]}, r"findings\[0\]\.smaller_than: only a finding of kind spread takes it"),
])
def test_finding_mistakes_name_the_key_path(tmp_path, change, error):
    with pytest.raises(GridError, match=error):
        _load(tmp_path, {**RESOLUTION, **change})


def test_shots_and_spread_mistakes_name_the_key_path(tmp_path):
    shots = {"name": "s", "axis": "shots", "from": 0, "to": 4, "expect": "increase"}
    with pytest.raises(GridError, match=r"findings\[0\]\.shots: not allowed when the axis is shots"):
        _load(tmp_path, {**shots, "shots": 0})
    with pytest.raises(GridError, match=r"findings\[0\]\.from: '8' is not a level of shots; levels: 0, 4"):
        _load(tmp_path, {**shots, "from": 8})
    spread = {"name": "sp", "kind": "spread", "axis": "connector", "smaller_than": ["higher resolution helps"]}
    with pytest.raises(GridError, match=r"findings\[1\]\.smaller_than\[0\]: 'nope' names no effect finding; "
                                        r"effect findings: higher resolution helps"):
        _load(tmp_path, {**spread, "smaller_than": ["nope"]}, RESOLUTION)
    with pytest.raises(GridError, match=r"findings\[1\]\.from: a finding of kind spread takes no from"):
        _load(tmp_path, {**spread, "from": "avg_pool"}, RESOLUTION)
    with pytest.raises(GridError, match=r"findings\[0\]\.smaller_than: a spread finding names"):
        _load(tmp_path, {**spread, "smaller_than": []})
    with pytest.raises(GridError, match=r"findings\[1\]\.name: 'higher resolution helps' names another finding"):
        _load(tmp_path, RESOLUTION, RESOLUTION)
    with pytest.raises(GridError, match=r"findings\[0\]: the grid has no eval"):
        load_grid(write_grid(tmp_path / "g.yaml", axes=AXES, eval=None, findings=[RESOLUTION]))


def test_a_preset_replaces_the_findings(tmp_path):
    tiny = {"axes": {"resolution": {"values": [16, 24]}},
            "findings": [{**RESOLUTION, "from": 16, "to": 24}]}
    path = write_grid(tmp_path / "g.yaml", axes=AXES, eval=EVAL, findings=[RESOLUTION], presets={"tiny": tiny})
    full, small = load_grid(path), load_grid(path, "tiny")
    assert [(f.from_, f.to) for f in full.findings] == [("32", "64")]
    assert [(f.from_, f.to) for f in small.findings] == [(16, 24)]
    with pytest.raises(GridError, match=r"\(preset tiny\): findings\[0\]\.from: '32' is not a level"):
        load_grid(write_grid(tmp_path / "h.yaml", axes=AXES, eval=EVAL, findings=[RESOLUTION],
                             presets={"tiny": {"axes": tiny["axes"]}}), "tiny")
