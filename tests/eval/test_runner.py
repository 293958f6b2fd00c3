"""The evaluation loop end to end on the small synthetic corpus: outputs, bad input, CLI, training hook."""
from __future__ import annotations

import csv
import dataclasses
import json
import runpy
import shutil
from collections import Counter

import pytest
import yaml

from mm1.cli import main
from mm1.config import dump_yaml, load_config
from mm1.config import ConfigError
from mm1.data.synth.styles import style_of
from mm1.eval.config import EvalConfig
from mm1.eval.evaluate import prepare
from mm1.train.evaluation import check_training_eval, evaluate_during_training, prepare_training_eval
from mm1.eval.report import write_outputs
from mm1.eval.runner import evaluate
from mm1.eval.tasks import SUITES
from mm1.train.model_folder import save_model_folder
from tests.conftest import ROOT, TINY, build_tiny


@pytest.fixture(scope="module")
def tiny():
    cfg, tokenizer, model = build_tiny()
    return cfg, tokenizer, model.eval()


def settings(**kw) -> EvalConfig:
    base = dict(shots=[0, 2], trials=2, limit=6, batch_size=4)
    return EvalConfig(**{**base, **kw})


def prepare_tasks(tasks: str, cfg: EvalConfig, data_root: str, data_dir=None):
    return prepare(dataclasses.replace(cfg, tasks=tasks, data_dir=data_dir), data_root)


def copy_eval_sets(synth_root, tmp_path):
    root = tmp_path / "corpus"
    shutil.copytree(synth_root / "eval", root / "eval")
    return root


@pytest.mark.slow
def test_outputs_schema(tiny, synth_root, tmp_path):
    cfg, tok, model = tiny
    s = settings()
    tasks = prepare_tasks("synthetic", s, str(synth_root), None)
    runs = evaluate(model, tok, tasks, s, cfg.model.vision.image_size)
    table = write_outputs(tmp_path, runs, tasks, s, "some/checkpoint", {"decoder": {"hidden_size": 256}})
    names = SUITES["synthetic"]
    assert [(r.task, r.shots, r.trial) for r in runs] == [(n, k, t) for n in names for k, t in ((0, 0), (2, 0), (2, 1))]

    doc = json.loads((tmp_path / "results.json").read_text())
    assert {"checkpoint", "mm1_version", "created", "config_hash", "settings", "tasks", "runs", "summary"} <= set(doc)
    assert doc["checkpoint"] == "some/checkpoint" and len(doc["config_hash"]) == 16
    assert doc["settings"]["shots"] == [0, 2] and doc["settings"]["limit"] == 6
    for name in names:
        spec = doc["tasks"][name]["spec"]
        assert spec["name"] == name and spec["query"]["annotations"].startswith(str(synth_root))
        assert doc["tasks"][name]["num_queries"] == 6
        assert doc["summary"][name]["2"]["trials"] == 2 and doc["summary"][name]["0"]["trials"] == 1
    for run in doc["runs"]:
        assert run["num_samples"] == 6 and run["num_errors"] == 0 and run["samples_per_s"] > 0
        assert (0 <= run["score"] <= 100) if run["metric"] == "vqa_accuracy" else run["score"] >= 0

    lines = [json.loads(line) for line in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == len(names) * 3 * 6
    for rec in lines:
        assert len(rec["demo_ids"]) == rec["shots"] and rec["error"] is None and rec["raw"] is not None
        assert isinstance(rec["score"], float) and rec["answers"]
    queries = {(r["task"], r["id"]) for r in lines if r["shots"] == 0}
    assert queries == {(r["task"], r["id"]) for r in lines if r["shots"] == 2 and r["trial"] == 1}

    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [(r["task"], r["shots"]) for r in rows] == [(n, k) for n in names for k in ("0", "2")]
    assert (tmp_path / "table.md").read_text() == table
    assert table.count("\n| synth_") == len(names) and "| average |" in table and "±" in table


def test_missing_and_unreadable_images_are_counted_and_the_run_goes_on(tiny, synth_root, tmp_path):
    cfg, tok, model = tiny
    root = copy_eval_sets(synth_root, tmp_path)
    s = settings(shots=[0, 1], trials=1)
    (data,) = prepare_tasks("synth_vqa", s, str(root), None)
    data.queries[1].image.unlink()
    data.pool[0].image.unlink()  # a demo without its image leaves the pool when the task is read
    (data,) = prepare_tasks("synth_vqa", s, str(root), None)
    assert data.skipped == {"demos: missing image file": 1}
    for demo in data.pool:
        demo.image.write_bytes(b"not a png")  # every remaining demo image is unreadable
    zero, one = evaluate(model, tok, [data], s, cfg.model.vision.image_size)
    missing = sum(r.error == "missing image file" for r in zero.records)
    assert missing >= 1 and zero.errors == {"missing image file": missing} and zero.num_errors == missing
    assert one.errors == {"missing image file": missing, "demo: unreadable image file": 6 - missing}
    for run in (zero, one):
        assert run.num_samples == 6
        failed = [r for r in run.records if r.error is not None]
        assert all(r.prediction == "" and r.score == 0.0 and r.raw is None for r in failed)
        assert all(r.raw is not None for r in run.records if r.error is None)
    table = write_outputs(tmp_path / "out", [zero, one], [data], s, "ckpt", {})
    assert "synth_vqa 1-shot: 6 of 6 samples failed (scored 0)" in table


def test_zero_shot_text_demos_convention(tiny, synth_root):
    cfg, tok, model = tiny
    s = settings(shots=[0], trials=2, limit=3)
    (data,) = prepare_tasks("synth_vqa", s, str(synth_root), None)
    data.spec.prompt.zero_shot = "text_demos"  # OpenFlamingo's: two text-only demonstrations
    runs = evaluate(model, tok, [data], s, cfg.model.vision.image_size)
    assert [r.trial for r in runs] == [0, 1]  # random text demos: one run per trial
    for rec in runs[0].records:
        assert len(rec.demo_ids) == 2 and rec.error is None
    from mm1.eval.runner import Prompter

    prompter = Prompter(model, tok, data.spec, None, cfg.model.vision.image_size)
    with pytest.raises(ValueError, match="no demonstrations available"):
        prompter.plan(data.queries[0], 0, 0)


def test_zero_shot_setting_overrides_every_task(tiny, synth_root):
    cfg, tok, model = tiny
    (data,) = prepare_tasks("synth_vqa", settings(), str(synth_root), None)
    assert data.spec.prompt.zero_shot == "query_only"
    runs = evaluate(model, tok, [data], settings(shots=[0], limit=3, zero_shot="text_demos"),
                    cfg.model.vision.image_size)
    assert [r.trial for r in runs] == [0, 1] and all(len(rec.demo_ids) == 2 for rec in runs[0].records)
    (bare,) = evaluate(model, tok, [data], settings(shots=[0], limit=3), cfg.model.vision.image_size)
    assert all(rec.demo_ids == [] for rec in bare.records)


def _fake_checkpoint(tmp_path, cfg, data_root):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    doc = yaml.safe_load(dump_yaml(cfg))
    doc["data"]["root"] = str(data_root)
    (ckpt / "config.yaml").write_text(yaml.safe_dump(doc))
    return ckpt


def test_missing_annotation_file_fails_before_the_model_loads(tiny, synth_root, tmp_path, capsys):
    cfg, _, _ = tiny
    root = copy_eval_sets(synth_root, tmp_path)
    (root / "eval" / "vqa" / "val_annotations.json").unlink()
    ckpt = _fake_checkpoint(tmp_path, cfg, root)  # no weights: loading the model would fail differently
    assert main(["eval", str(ckpt), "--tasks", "synth_vqa"]) == 2
    err = capsys.readouterr().err
    assert "query.annotations file not found" in err and "val_annotations.json" in err


def test_cli_end_to_end_and_unknown_task(tiny, synth_root, tmp_path, capsys):
    cfg, tok, model = tiny
    cfg = load_config(TINY, [f"data.root={synth_root}"])
    ckpt = save_model_folder(tmp_path / "run" / "checkpoint", model, cfg, tok)
    assert main(["eval", str(tmp_path / "run"), "--tasks", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'nope'" in err and "synth_vqa" in err and "mm1_pretrain" in err
    args = ["eval", str(ckpt), "--tasks", "synth_caption", "--shots", "0,1", "--limit", "3", "--trials", "1",
            "--batch-size", "2", "--demos", "rices", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| synth_caption | cider |" in out
    for name in ("predictions.jsonl", "results.json", "table.md", "table.csv"):
        assert (tmp_path / "run" / "eval" / name).is_file()
    assert list((tmp_path / "cache").glob("*.pt"))  # RICES features were cached


def test_evaluate_during_training(tiny, synth_root, tmp_path):
    _, tok, model = tiny
    cfg = load_config(TINY, [f"data.root={synth_root}", "eval.tasks=synth_vqa,synth_textvqa", "eval.shots=[0,1]",
                             "eval.limit=4", "eval.batch_size=4"])
    model.train()
    try:
        scores = evaluate_during_training(model, tok, cfg, 7, tmp_path, prepare_training_eval(cfg))
        assert model.training
    finally:
        model.eval()
    assert set(scores) == {f"eval/{t}/{k}shot" for t in ("synth_vqa", "synth_textvqa", "average") for k in (0, 1)}
    assert all(0 <= v <= 100 for v in scores.values())
    assert (tmp_path / "eval" / "step_7" / "results.json").is_file()
    check_training_eval(cfg)
    with pytest.raises(ConfigError, match="eval.tasks: 'vqa3' is not allowed .*unknown task 'vqa3'"):
        check_training_eval(load_config(TINY, [f"data.root={synth_root}", "eval.tasks=vqa3"]))


def test_one_eval_config_for_recipes_grids_and_the_command():
    import argparse

    from mm1.ablate.grid import load_grid
    from mm1.config.flags import add_flags, from_flags, cli_fields

    assert isinstance(load_config(TINY).eval, EvalConfig)
    assert isinstance(load_grid("connectors", preset="tiny").eval, EvalConfig)
    parser = argparse.ArgumentParser()
    add_flags(parser, EvalConfig)
    assert from_flags(EvalConfig, parser.parse_args([])) == EvalConfig()  # same defaults
    flags = {a.dest for a in parser._actions if a.dest != "help"}
    assert flags == {f.name for f in cli_fields(EvalConfig)} and "every" not in flags  # training only
    args = parser.parse_args(["--shots", "0,8", "--batch-size", "4", "--zero-shot", "text_demos", "--data-dir", "null"])
    assert from_flags(EvalConfig, args) == EvalConfig(shots=[0, 8], batch_size=4, zero_shot="text_demos")
    with pytest.raises(SystemExit):
        parser.parse_args(["--shots", "zero"])


def _scored_records(tiny, root, task: str, shots: str, tmp_path) -> tuple:
    """A tiny model saved with data.root=root, scored by `mm1 eval` on 4 queries of one task at `shots`:
    (its run folder, the prediction records)."""
    cfg, tok, model = tiny
    run = save_model_folder(tmp_path / "run" / "checkpoint", model, load_config(TINY, [f"data.root={root}"]), tok)
    assert main(["eval", str(run), "--tasks", task, "--shots", shots, "--limit", "4", "--trials", "1",
                 "--out", str(tmp_path / "out")]) == 0
    return run, [json.loads(line) for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]


def test_corner_task_scores_a_corpus_with_corner_scenes_and_names_the_problem_without(tiny, synth_root, corner_root,
                                                                                        tmp_path, capsys):
    """synth_corner exists only in a corpus written with data.synth.corner_scenes > 0 (the tokens grid's corner
    preset); on the default corpus it stops with a clear error before anything is scored."""
    run, records = _scored_records(tiny, corner_root, "synth_corner", "0,2", tmp_path)
    assert len(records) == 8 and all(" corner?" in r["question"] for r in records)
    assert all(r["error"] is None for r in records) and all(len(r["demo_ids"]) == r["shots"] for r in records)
    capsys.readouterr()
    tool = runpy.run_path(str(ROOT / "tools" / "answer_kinds.py"), run_name="answer_kinds")
    assert tool["main"]([str(tmp_path / "out"), "--shots", "0"]) == 0  # the scenes of the checkpoint's data.root
    cells = capsys.readouterr().out.splitlines()[-1].strip("| ").split(" | ")
    zero = [r for r in records if r["shots"] == 0]
    right = sum(r["prediction"] == Counter(r["answers"]).most_common(1)[0][0] for r in zero)
    assert cells[0] == "out" and int(cells[1]) == len(zero) and float(cells[2]) == 100 * right / len(zero)
    assert sum(map(float, cells[2:-1])) == pytest.approx(100, abs=0.3)
    assert tool["main"]([str(tmp_path / "out"), "--shots", "8"]) == 2  # scored at 0 and 2 shots only
    assert "no synth_corner predictions" in capsys.readouterr().err
    assert main(["eval", str(run), "--tasks", "synth_corner", "--data-root", str(synth_root), "--limit", "4",
                 "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert "task synth_corner" in err and "data.synth.corner_scenes > 0" in err and "no usable entries" in err


def test_stripes_task_scores_a_corpus_with_striped_scenes_and_names_the_problem_without(tiny, synth_root,
                                                                                       corner_root, tmp_path, capsys):
    """synth_stripes exists only in a corpus written with data.synth.striped_scenes > 0 (the connectors grid's
    frozen-stripes preset); elsewhere a clear error, exit 2, naming the setting and the missing file."""
    run, records = _scored_records(tiny, corner_root, "synth_stripes", "0,1", tmp_path)
    assert len(records) == 8 and all(r["error"] is None for r in records)
    assert all(r["question"].split()[:2] in (["what", "colour"], ["which", "colour"]) for r in records)
    capsys.readouterr()
    tool = runpy.run_path(str(ROOT / "tools" / "answer_kinds.py"), run_name="answer_kinds")
    assert tool["main"]([str(tmp_path / "out"), "--task", "synth_stripes", "--shots", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| run | queries | named shape | another striped shape |")
    cells = lines[-1].strip("| ").split(" | ")
    one = [r for r in records if r["shots"] == 1]
    right = sum(r["prediction"] == Counter(r["answers"]).most_common(1)[0][0] for r in one)
    assert cells[:2] == ["out", str(len(one))] and float(cells[2]) == 100 * right / len(one)
    assert sum(map(float, cells[2:])) == pytest.approx(100, abs=0.3)
    assert main(["eval", str(run), "--tasks", "synth_stripes", "--data-root", str(synth_root), "--limit", "4",
                 "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert "task synth_stripes" in err and "data.synth.striped_scenes > 0" in err
    assert "eval/stripes/val_annotations.json" in err


def test_caption_style_task_scores_a_corpus_with_galleries_and_names_the_problem_without(tiny, synth_root,
                                                                                       gallery_root, tmp_path, capsys):
    """synth_caption_style exists only in a corpus written with data.synth.gallery_docs > 0 (the data_mixture
    grid's gallery preset): its demonstrations and references are tallies; elsewhere a clear error, exit 2."""
    run, records = _scored_records(tiny, gallery_root, "synth_caption_style", "0,2", tmp_path)
    assert len(records) == 8 and all(r["error"] is None for r in records)
    assert all(style_of(a) == "tally" for r in records for a in r["answers"])
    assert all(len(r["demo_ids"]) == r["shots"] for r in records)
    capsys.readouterr()
    tool = runpy.run_path(str(ROOT / "tools" / "caption_styles.py"), run_name="caption_styles")
    assert tool["main"]([str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| run | shots | captions | plain | tally | inventory | places |" and len(lines) == 4
    for line, shots in zip(lines[2:], (0, 2)):
        cells = line.strip("| ").split(" | ")
        styles = Counter(style_of(r["prediction"]) for r in records if r["shots"] == shots)
        assert cells[:3] == ["out", str(shots), "4"] and float(cells[3 + 1]) == 100 * styles["tally"] / 4
        assert sum(map(float, cells[3:])) == pytest.approx(100)
    assert tool["main"]([str(tmp_path / "out"), "--task", "synth_corner"]) == 2
    assert "no synth_corner predictions" in capsys.readouterr().err
    assert main(["eval", str(run), "--tasks", "synth_caption_style", "--data-root", str(synth_root), "--limit", "4",
                 "--out", str(tmp_path / "out2")]) == 2
    err = capsys.readouterr().err
    assert "task synth_caption_style" in err and "data.synth.gallery_docs > 0" in err
    assert "eval/caption_style/captions.json" in err
