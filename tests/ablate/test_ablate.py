"""`mm1 ablate`: grid expansion, sweeps (failure, kill and resume), tables, plots and the lr law."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from mm1.ablate.grid import GridError, check_runs, expand, load_grid
from mm1.ablate.lrfit import fit_log_linear, fit_lr_law
from mm1.ablate.report import build_report
from mm1.cli import main
from mm1.config import load_config
from mm1.data.synth.write import VERSION as SYNTH_VERSION
from mm1.train.provenance import data_provenance, git_commit, git_dirty
from tests.ablate.sweeps import TASKS, write_fixture_sweep, write_grid
from tests.conftest import ROOT, TINY

GRIDS = sorted((ROOT / "ablations").glob("*.yaml"))

# --- grid expansion ------------------------------------------------------------------------------------------


def test_product_of_axes_and_seeds(tmp_path):
    grid = load_grid(write_grid(tmp_path / "g.yaml", axes={
        "connector": {"key": "model.connector.kind", "values": ["avg_pool", "attention_pool"]},
        "tokens": {"key": "model.connector.num_tokens", "values": [1, 4, 16], "short": "tok"},
    }, seeds=[0, 1]))
    runs = expand(grid)
    assert len(runs) == 2 * 3 * 2 and len({r.name for r in runs}) == 12
    assert runs[0].name == "avg_pool_tok1_s0" and runs[1].name == "avg_pool_tok1_s1"
    assert runs[-1].labels == {"connector": "attention_pool", "tokens": "16"} and runs[-1].seed == 1
    configs = check_runs(runs)
    for run, cfg in zip(runs, configs):
        assert cfg.model.connector.kind == run.labels["connector"]
        assert cfg.model.connector.num_tokens == int(run.labels["tokens"])
        assert cfg.train.seed == cfg.data.seed == run.seed and cfg.train.steps == 2
        assert cfg.model.decoder.hidden_size == 32  # the shared `set` applies to every run


def test_explicit_variants_crossed_with_an_axis(tmp_path):
    grid = load_grid(write_grid(tmp_path / "g.yaml", variants=[
        {"labels": {"encoder": "small", "data": "a"}, "set": {"model.vision.width": 32}},
        {"labels": {"encoder": "wide", "data": "b"}, "set": {"model.vision.width": 64, "data.mixture.text": 0.5}},
    ], axes={"resolution": {"key": "model.vision.image_size", "values": [32, 64]}}))
    runs = expand(grid)
    assert [r.name for r in runs] == ["small_a_32_s0", "small_a_64_s0", "wide_b_32_s0", "wide_b_64_s0"]
    assert list(runs[2].labels) == ["encoder", "data", "resolution"]
    cfgs = check_runs(runs)
    assert [c.model.vision.width for c in cfgs] == [32, 32, 64, 64]
    assert [c.model.vision.image_size for c in cfgs] == [32, 64, 32, 64]
    assert cfgs[3].data.mixture["text"] == 0.5 and cfgs[0].data.mixture["text"] == 0.1


def test_multi_key_levels_and_preset_merge(tmp_path):
    grid_file = tmp_path / "g.yaml"
    grid = load_grid(write_grid(grid_file, axes={"mixture": {"levels": {
        "5:5:1": {"data.mixture.caption": 5, "data.mixture.interleaved": 5, "data.mixture.text": 1},
        "1:0:0": {"data.mixture.caption": 1, "data.mixture.interleaved": 0, "data.mixture.text": 0}}}},
        presets={"short": {"steps": 1, "set": {"train.batch_size": 3}, "eval": None,
                           "axes": {"mixture": {"levels": {"2:2:1": {"data.mixture.text": 0.2}}}}}}), preset="short")
    assert grid.eval is None  # a preset's null is a value: train only
    runs = expand(grid)
    assert [r.labels["mixture"] for r in runs] == ["2:2:1"]  # an axis's own keys are replaced, not merged
    cfg = check_runs(runs)[0]
    assert cfg.data.mixture == {"caption": 0.45, "interleaved": 0.45, "text": 0.2}
    assert cfg.train.steps == 1 and cfg.train.batch_size == 3
    assert cfg.model.decoder.hidden_size == 32  # the rest of `set` is kept
    cfgs = check_runs(expand(load_grid(grid_file)))
    assert cfgs[0].data.mixture == {"caption": 5.0, "interleaved": 5.0, "text": 1.0}
    assert cfgs[1].data.mixture["interleaved"] == 0.0


PRESETS = [(path, preset) for path in GRIDS for preset in [None, *yaml.safe_load(path.read_text()).get("presets", {})]]


@pytest.mark.parametrize("path, preset", PRESETS, ids=lambda v: getattr(v, "stem", v))
def test_every_shipped_grid_expands_and_every_run_config_loads(path, preset):
    grid = load_grid(path, preset)
    runs = expand(grid)
    assert len(runs) >= 2 and len(check_runs(runs)) == len(runs)
    if preset is not None:  # every preset is a tiny one
        assert grid.base == str(TINY)


def test_the_4shot_preset_trains_the_same_runs_as_frozen_stripes_and_judges_them_at_4_shots():
    """frozen-stripes-4shot re-scores frozen-stripes' models (`--reuse` copies them, nothing retrains): the same
    resolved config for every run and seed, the same findings, and every finding at 4 shots, which it scores."""
    same_seeds = ["seeds=[3,4,5]"]
    plain, four = (load_grid("connectors", p, same_seeds) for p in ("frozen-stripes", "frozen-stripes-4shot"))
    pairs = list(zip(expand(plain), expand(four), strict=True))
    assert [a.name for a, _ in pairs] == [b.name for _, b in pairs] and len(pairs) == 36
    for a, b in zip(check_runs([a for a, _ in pairs]), check_runs([b for _, b in pairs])):
        assert a == b
    assert [f.name for f in plain.findings] == [f.name for f in four.findings]
    assert {f.shots for f in four.findings} == {4} and 4 in four.eval.shots and four.eval.tasks == plain.eval.tasks


def test_shipped_grids_cover_the_paper():
    assert {"connectors", "resolution", "tokens", "encoder", "data_mixture", "moe", "lr"} <= {p.stem for p in GRIDS}
    runs = expand(load_grid("connectors"))
    connectors = ("avg_pool", "attention_pool", "c_abstractor")
    assert {tuple(r.labels.values()) for r in runs} == {
        (c, t, r) for c in connectors for t in ("64", "144") for r in ("224", "336")}
    assert "5:5:1" in {r.labels["mixture"] for r in expand(load_grid("data_mixture"))}
    tiny = load_grid("data_mixture", "tiny")
    named = {f.from_ for f in tiny.findings if f.axis == "mixture"} | {f.to for f in tiny.findings if f.axis == "mixture"}
    assert named <= {r.labels["mixture"] for r in expand(tiny)}


def test_invalid_override_key_is_named_before_anything_runs(tmp_path, capsys):
    path = write_grid(tmp_path / "g.yaml", axes={
        "tokens": {"key": "model.connector.num_tokens", "values": [4, 16]},
        "width": {"key": "model.connector.hiddn", "values": [32]}})
    with pytest.raises(GridError, match=r"run 4_32_s0: model\.connector\.hiddn: unknown key"):
        check_runs(expand(load_grid(path)))
    out = tmp_path / "out"
    assert main(["ablate", "--grid", str(path), "--out", str(out)]) == 2
    assert "model.connector.hiddn" in capsys.readouterr().err
    assert not out.exists()  # nothing ran, no folder written


def test_a_flag_the_chosen_mode_would_ignore_is_refused_before_anything_runs(tmp_path, capsys):
    sweep, copy = tmp_path / "sweep", tmp_path / "copy"
    sweep.mkdir()
    assert main(["ablate", "--report", str(sweep), "--jobs", "2", "--preset", "tiny"]) == 2
    assert "--preset, --jobs: only with --grid, not with --report" in capsys.readouterr().err
    assert main(["ablate", "--share", str(sweep), "--to", str(copy), "seeds=[3]"]) == 2
    assert "KEY=VALUE: only with --grid, not with --share" in capsys.readouterr().err
    assert main(["ablate", "--grid", "connectors", "--preset", "tiny", "--to", str(copy), "--dry-run"]) == 2
    assert f"--to {copy}: only with --share" in capsys.readouterr().err
    assert not copy.exists() and not any(sweep.iterdir())  # nothing written


def test_a_bad_value_in_the_last_run_stops_the_sweep_before_the_first(tmp_path, capsys):
    path = write_grid(tmp_path / "g.yaml", axes={"tokens": {"key": "model.connector.num_tokens", "values": [4, 15]}})
    out = tmp_path / "out"
    assert main(["ablate", "--grid", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "run 15_s0" in err and "model.connector.num_tokens: 15 is not a perfect square" in err
    assert not out.exists()


def test_grid_file_mistakes_name_the_grid_key(tmp_path):
    with pytest.raises(GridError, match=r"axes\.tokens\.vals: unknown key"):
        load_grid(write_grid(tmp_path / "a.yaml", axes={"tokens": {"key": "x", "vals": [1]}}))
    with pytest.raises(GridError, match=r"presets\.tiny: no such preset"):
        load_grid(write_grid(tmp_path / "b.yaml"), preset="tiny")
    axes = {"connector": {"key": "model.connector.kind", "values": ["mlp"]}}
    with pytest.raises(GridError, match=r"plot\.hue: 'conector' is not an axis"):
        load_grid(write_grid(tmp_path / "c.yaml", axes=axes, plot={"kind": "bars", "hue": "conector"}))
    with pytest.raises(GridError, match=r"eval\.tasks: unknown task 'synth_vqq'"):
        load_grid(write_grid(tmp_path / "d.yaml", eval={"tasks": "synth_vqq"}))
    with pytest.raises(GridError, match="unknown grid 'nope'"):
        load_grid("nope")


@pytest.mark.slow
def test_dry_run_lists_runs_overrides_and_cost(capsys):
    assert main(["ablate", "--grid", "connectors", "--preset", "tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("model.connector.kind=") == 36 and "attention_pool_tok16_px64_s2" in out  # 12 x 3 seeds
    assert "params 4.3" in out and "token positions" in out and "36 runs" in out


def test_cost_uses_the_global_batch_and_counts_images_as_mm1_info_does():
    from mm1.ablate.cost import run_cost
    from mm1.info import info

    cfg = load_config(ROOT / "recipes" / "ablation_base.yaml")
    assert cfg.train.global_batch_size == 512 and cfg.train.batch_size * cfg.train.grad_accum < 512
    i, cost = info(cfg), run_cost(cfg, {})
    sequences = cfg.train.steps * 512  # the recipe's global batch, not one process's micro-batches
    assert cost["tokens"] == sequences * cfg.data.seq_len
    assert cost["flops_decoder"] == cost["tokens"] * i["flops_per_token"]
    assert cost["flops_images_max"] == sequences * cfg.data.max_images_per_seq * i["flops_per_image"]
    tiny = load_config(TINY, ["train.grad_accum=3"])
    assert run_cost(tiny, {})["tokens"] == tiny.train.steps * tiny.train.batch_size * 3 * tiny.data.seq_len


# --- sweeps (real subprocess runs of a micro model) ----------------------------------------------------------


@pytest.mark.slow
def test_failing_run_is_recorded_while_the_sweep_completes(tmp_path, synth_root, capsys):
    path = write_grid(tmp_path / "g.yaml", synth_root, variants=[
        {"labels": {"variant": "ok"}, "set": {}},
        {"labels": {"variant": "broken"}, "set": {"data.sources.text.shards": ["no_such_folder/*.tar"]}}],
        eval={"tasks": "synth_vqa", "shots": [0], "limit": 2, "batch_size": 2},
        plot={"kind": "bars", "panels": "shots", "groups": ["variant"]})
    out = tmp_path / "out"
    assert main(["ablate", "--grid", str(path), "--out", str(out), "--jobs", "2"]) == 1
    assert "1 run(s) failed: broken_s0" in capsys.readouterr().err
    error = json.loads((out / "runs" / "broken_s0" / "error.json").read_text())
    assert error["stage"] == "train" and error["returncode"] != 0 and "no_such_folder" in error["error"]
    assert (out / "runs" / "ok_s0" / "eval.done").is_file()
    assert not list((out / "runs" / "ok_s0").glob("*.failure.json"))  # a stage that succeeded recorded nothing
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {(r["run"], r["status"]) for r in rows} == {("ok_s0", "finished"), ("broken_s0", "failed")}
    assert "no_such_folder" in next(r for r in rows if r["run"] == "broken_s0")["error"]
    summary = (out / "summary.md").read_text()
    assert "`broken_s0`: failed" in summary
    commit = (git_commit() or "unknown")[:12]  # each run's provenance.json names the code and the data it ran on
    commit += " with local changes" * bool(git_dirty())
    assert f"Trained by mm1 at commit {commit}, on {synth_root}." in summary


def test_a_run_trained_by_another_sweep_is_copied_not_trained_again(tmp_path, synth_root, capsys):
    scored = {"tasks": "synth_vqa", "shots": [0], "limit": 2, "batch_size": 2}
    first = write_grid(tmp_path / "a.yaml", synth_root, eval=scored, variants=[{"labels": {"variant": "base"}, "set": {}}])
    assert main(["ablate", "--grid", str(first), "--out", str(tmp_path / "a")]) == 0
    second = write_grid(tmp_path / "b.yaml", synth_root, eval={**scored, "shots": [0, 1]}, variants=[
        {"labels": {"variant": "same"}, "set": {}}, {"labels": {"variant": "longer"}, "set": {"train.steps": 3}}])
    capsys.readouterr()
    assert main(["ablate", "--grid", str(second), "--out", str(tmp_path / "b"), "--reuse", str(tmp_path / "a")]) == 0
    assert "reused same_s0: the same run, trained; any evaluation is done here" in capsys.readouterr().out
    base, same, longer = (tmp_path / "a" / "runs" / "base_s0", tmp_path / "b" / "runs" / "same_s0",
                          tmp_path / "b" / "runs" / "longer_s0")
    weights = "checkpoint/model.safetensors"
    assert (same / weights).read_bytes() == (base / weights).read_bytes()
    assert (same / "train.log").read_text() == (base / "train.log").read_text()  # not trained again
    assert json.loads((same / "reused.json").read_text()) == {"from": str(base.resolve()), "eval": False}
    assert "output:\n  dir: " + str(same) in (same / "recipe.yaml").read_text()  # its own recipe and run.json
    shots = {r["shots"] for r in json.loads((same / "eval" / "results.json").read_text())["runs"]}
    assert shots == {0, 1}  # other eval settings: evaluated here, with this grid's
    assert not (longer / "reused.json").exists() and (longer / "train.done").is_file()  # another config: trained
    assert not (same / "checkpoints").exists()  # a finished run needs no intermediate checkpoints
    assert (base / "checkpoints").is_dir() and (base / "eval.done").is_file()  # the source is left as it was
    summary = (tmp_path / "b" / "summary.md").read_text()
    assert f"`same_s0` was trained in {base}" in summary


@pytest.mark.slow
def test_a_shared_sweep_without_models_reports_and_is_reused_only_with_its_evaluation(tmp_path, synth_root, capsys):
    """--share copies what the tables need, not the models; --reuse of that copy gathers its runs into another
    sweep of the same runs and eval settings (seeds trained elsewhere), and never evaluates a run it has no
    model for: another eval setting trains that run here."""
    scored = {"tasks": "synth_vqa", "shots": [0], "limit": 2, "batch_size": 2}
    grid = write_grid(tmp_path / "a.yaml", synth_root, eval=scored, variants=[{"labels": {"variant": "base"}, "set": {}}])
    sweep, shared = tmp_path / "a", tmp_path / "shared"
    assert main(["ablate", "--grid", str(grid), "--out", str(sweep)]) == 0
    capsys.readouterr()
    assert main(["ablate", "--share", str(sweep), "--to", str(shared)]) == 0
    assert "copied the records of 1 runs" in capsys.readouterr().out
    run = shared / "runs" / "base_s0"
    assert not (run / "checkpoint").exists() and not (run / "checkpoints").exists() and not (run / "job.json").exists()
    assert (sweep / "runs" / "base_s0" / "checkpoint" / "model.safetensors").is_file()  # the source keeps its model
    for name in ("recipe.yaml", "metrics.jsonl", "eval/predictions.jsonl", "eval/results.json", "eval.done"):
        assert (run / name).read_bytes() == (sweep / "runs" / "base_s0" / name).read_bytes()
    assert main(["ablate", "--report", str(shared)]) == 0
    assert (shared / "results.csv").read_text() == (sweep / "results.csv").read_text()

    assert main(["ablate", "--share", str(sweep), "--to", str(shared)]) == 2  # never into a folder with files
    assert "exists and is not empty" in capsys.readouterr().err
    assert main(["ablate", "--share", str(sweep)]) == 2 and "--share needs --to" in capsys.readouterr().err

    assert main(["ablate", "--grid", str(grid), "--out", str(tmp_path / "gathered"), "--reuse", str(shared)]) == 0
    assert "reused base_s0: the same run, trained and evaluated" in capsys.readouterr().out
    assert (tmp_path / "gathered" / "results.csv").read_text() == (sweep / "results.csv").read_text()
    other = write_grid(tmp_path / "b.yaml", synth_root, eval={**scored, "shots": [0, 1]},
                       variants=[{"labels": {"variant": "base"}, "set": {}}])
    assert main(["ablate", "--grid", str(other), "--out", str(tmp_path / "b"), "--reuse", str(shared)]) == 0
    assert "reused" not in capsys.readouterr().out  # no model to evaluate with other settings: trained here
    assert not (tmp_path / "b" / "runs" / "base_s0" / "reused.json").exists()
    assert (tmp_path / "b" / "runs" / "base_s0" / "checkpoint" / "model.safetensors").is_file()


def test_a_run_folder_written_before_a_config_key_existed_still_holds_the_same_run(tmp_path):
    """A key added to the schema later (data.synth.gallery_docs) takes its default, which keeps the old
    behaviour: a sweep folder whose recipe.yaml lacks it resumes, and --reuse finds its runs; another value of
    that key is another run."""
    from mm1.ablate.sweep import SweepError, _trained_runs, find_trained_run, prepare_folder

    grid = load_grid(write_grid(tmp_path / "g.yaml", variants=[{"labels": {"variant": "base"}, "set": {
        "data.synth": {"seed": 0}}}]))
    runs = expand(grid)
    (cfg,) = check_runs(runs)
    folder = prepare_folder(tmp_path / "old", runs[0], cfg, grid)
    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    assert recipe["data"]["synth"].pop("gallery_docs") == 0.0
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))  # as written before the key
    (folder / "train.done").write_text("")
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / "model.safetensors").write_bytes(b"")  # a trained run holds its model (--reuse looks)
    assert prepare_folder(tmp_path / "old", runs[0], cfg, grid) == folder  # resumes: the same run
    other = prepare_folder(tmp_path / "new", runs[0], cfg, grid)
    assert find_trained_run(_trained_runs([tmp_path / "old"]), other)[0] == folder
    galleries = check_runs(expand(load_grid(write_grid(tmp_path / "h.yaml", variants=[
        {"labels": {"variant": "base"}, "set": {"data.synth": {"seed": 0, "gallery_docs": 0.3}}}]))))[0]
    with pytest.raises(SweepError, match=r"data\.synth\.gallery_docs: 0\.0 there, 0\.3 now"):
        prepare_folder(tmp_path / "old", runs[0], galleries, grid)
    assert find_trained_run(_trained_runs([tmp_path / "old"]),
                            prepare_folder(tmp_path / "gal", runs[0], galleries, grid))[0] is None


def _wait_for(predicate, proc, timeout: float) -> None:
    end = time.time() + timeout
    while not predicate():
        assert proc.poll() is None, f"the sweep ended early (rc {proc.returncode})"
        assert time.time() < end, "timed out"
        time.sleep(0.2)


@pytest.mark.slow
def test_killed_sweep_resumes_without_rerunning_finished_runs(tmp_path, synth_root):
    path = write_grid(tmp_path / "g.yaml", synth_root, eval=None, variants=[
        {"labels": {"variant": "quick"}, "set": {}},
        {"labels": {"variant": "slow"}, "set": {"train.steps": 40, "train.checkpoint_every": 10}}])
    out = tmp_path / "out"
    quick, slow = out / "runs" / "quick_s0", out / "runs" / "slow_s0"
    with open(tmp_path / "sweep.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "mm1", "ablate", "--grid", str(path), "--out", str(out)],
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_for(lambda: (slow / "checkpoints" / "latest").is_file(), proc, timeout=240)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its pretrain, as a crash would
            proc.wait()
    assert (quick / "train.done").is_file() and not (slow / "train.done").is_file()
    stamps = {p: p.stat().st_mtime_ns for p in (quick / "train.done", quick / "checkpoint" / "model.safetensors",
                                                  quick / "metrics.jsonl")}
    assert main(["ablate", "--grid", str(path), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # the finished run was not re-run
    assert (quick / "train.log").read_text().count("\n=== ") == 1
    assert "resumed from" in (slow / "train.log").read_text() and (slow / "train.done").is_file()
    steps = [json.loads(x)["step"] for x in (slow / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 40 and set(steps) == set(range(1, 41))  # resumed where the checkpoint left off


# --- tables and plots from fixture results -------------------------------------------------------------------

def test_table_csv_and_plot_from_fixture_results(tmp_path):
    grid = load_grid("connectors", "tiny")
    grid.seeds, grid.eval.shots = [0, 1], [0, 4, 8]
    for finding in grid.findings:  # the fixture's own tasks: judge the preset's claims on their average
        finding.task, finding.shots = None, None
    runs = expand(grid)
    write_fixture_sweep(tmp_path, grid, runs)
    assert main(["ablate", "--report", str(tmp_path)]) == 0
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert list(rows[0])[:6] == ["run", "connector", "tokens", "resolution", "seed", "status"]
    assert {"task", "shots", "score", "final_loss"} <= set(rows[0])
    assert len(rows) == 24 * 3 * 3  # runs x tasks x shots
    summary = (tmp_path / "summary.md").read_text()
    table = summary.split("| connector |")[1].split("\n\n")[0]
    assert table.count("\n| ") == 12  # one row per connector x tokens x resolution
    # best 0-shot: c_abstractor, 16 tokens, 64 px: 10 + 8 + 5 + 0.6 + mean(0, 0.5) + mean task-name term
    best = 23.6 + 0.25 + 0.1 * sum(map(len, TASKS)) / 3
    cell = re.search(rf"\| c_abstractor \| 16 \| 64 \| \*\*{best:.1f} ± 0\.4 \[([\d.]+), ([\d.]+)\]\*\* \|", summary)
    assert cell and float(cell[1]) < best < float(cell[2])  # mean ± std over seeds [95% interval]
    # every run sees the same query noise: a paired effect is exact, its interval zero-wide
    assert "| 32 → 64 | average | 12 | **+8.0 [+8.0, +8.0]** |" in summary.split("## Effects")[1]
    # the grid's findings detect the effects built into the fixture: resolution +8, tokens +5, connector 0.6
    found = {f["name"]: f for f in json.loads((tmp_path / "findings.json").read_text())}
    assert [f["verdict"] for f in found.values()] == ["reproduced"] * 3
    assert found["the connector type matters least"]["effect"] == pytest.approx(0.6)
    png = tmp_path / "connectors.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    assert imread(png).shape[1] > 1000  # three panels side by side


def test_summary_names_the_commit_and_the_benchmark_version_of_the_runs(tmp_path):
    grid = load_grid("connectors", "tiny")
    grid.seeds = [0]
    runs = expand(grid)
    write_fixture_sweep(tmp_path, grid, runs)
    data = data_provenance(load_config(TINY))  # the tiny recipe trains on the embedded corpus
    assert data["synthetic_version"] == SYNTH_VERSION and Path(data["root"]).name.startswith(f"v{SYNTH_VERSION}-")
    for i, run in enumerate(runs):  # as pretrain writes it; one run from another commit
        made = {"git_commit": "b" * 40 if i == 0 else "a" * 40, "git_dirty": i == 0, "data": data}
        (tmp_path / "runs" / run.name / "provenance.json").write_text(json.dumps(made))
    build_report(tmp_path)
    summary = (tmp_path / "summary.md").read_text()
    corpus = Path(data["root"]).name
    assert (f"Trained by mm1 at commit {'a' * 12} (11 runs); {'b' * 12} with local changes (1 run), on the embedded synthetic "
            f"benchmark, version {SYNTH_VERSION} ({corpus}).") in summary
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    assert "git_commit" not in rows[0]  # the table keeps its columns


def test_lr_fit_recovers_a_known_law():
    a, b = -0.4214, -0.5535
    points = [(n, math.exp(a * math.log(n) + b)) for n in (9e6, 85e6, 302e6, 1.2e9)]
    fa, fb = fit_log_linear(points)
    assert fa == pytest.approx(a, abs=1e-9) and fb == pytest.approx(b, abs=1e-9)
    with pytest.raises(ValueError, match="two or more model sizes"):
        fit_log_linear(points[:1])


@pytest.mark.slow
def test_lr_sweep_report_picks_the_best_lr_per_size_and_prints_a_and_b(tmp_path, capsys):
    a, b = -0.5, -1.0
    n = {"S": 1e6, "M": 1e7, "L": 1e8}
    law = {size: math.exp(a * math.log(v) + b) for size, v in n.items()}
    grid = load_grid("lr", "tiny")
    grid.axes["size"].levels = {size: {"model.decoder.hidden_size": 64} for size in n}
    grid.axes["lr"].values = sorted({law[s] * f for s in n for f in (1 / 3, 1, 3)})
    grid.eval = None
    runs = expand(grid)
    lr_of = lambda labels: float(labels["lr"])  # noqa: E731
    # a loss bowl in log(lr) around each size's law value
    loss = lambda labels: 2 + (math.log(lr_of(labels)) - math.log(law[labels["size"]])) ** 2  # noqa: E731
    write_fixture_sweep(tmp_path, grid, runs, lr=lr_of, loss=loss)
    fit = fit_lr_law(build_report(tmp_path).rows, "size")
    assert fit.a == pytest.approx(a, abs=1e-6) and fit.b == pytest.approx(b, abs=1e-6)
    assert main(["ablate", "--report", str(tmp_path)]) == 0
    assert "a = -0.5000, b = -1.0000" in capsys.readouterr().out
    assert (tmp_path / "lr_law.png").stat().st_size > 10_000


def test_an_lr_sweep_with_one_size_says_why_there_is_no_fit(tmp_path, capsys):
    """A partial lr sweep (one size finished) gets its tables, and the summary and the terminal say why no law."""
    grid = load_grid("lr", "tiny")
    grid.axes["size"].levels = {"S": {"model.decoder.hidden_size": 64}}
    grid.axes["lr"].values = [1e-3, 3e-3]
    grid.eval = None
    write_fixture_sweep(tmp_path, grid, expand(grid), lr=lambda labels: float(labels["lr"]))
    assert main(["ablate", "--report", str(tmp_path)]) == 0
    why = "the lr law needs best learning rates at two or more model sizes, got 1"
    assert f"mm1 ablate: no lr law fit: {why}" in capsys.readouterr().out
    assert f"No fit: {why}" in (tmp_path / "summary.md").read_text()
    assert not (tmp_path / "lr_law.png").exists() and (tmp_path / "results.csv").exists()


def test_command_line_changes_a_grid_key_after_its_preset(capsys):
    """`seeds=[3,4,5]` re-runs a grid with other seeds, the rest of the preset unchanged."""
    grid = load_grid("data_mixture", "tiny", ["seeds=[3,4,5]", "steps=12"])
    assert grid.seeds == [3, 4, 5] and grid.steps == 12 and grid.eval.limit == 200
    assert [r.name for r in expand(grid)][:3] == ["1-0-0_s3", "1-0-0_s4", "1-0-0_s5"]
    assert main(["ablate", "--grid", "data_mixture", "--preset", "tiny", "seeds=[7]", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "1-0-0_s7" in out and "_s0 " not in out and "train.seed=7" in out
    for bad, message in (("sedes=[3]", "sedes: unknown key"), ("seeds", "expected KEY=VALUE"),
                         ("eval.limit=5", "top-level grid key"), ("seeds=[3", "not valid YAML")):
        assert main(["ablate", "--grid", "data_mixture", "--preset", "tiny", bad, "--dry-run"]) == 2
        assert message in capsys.readouterr().err
