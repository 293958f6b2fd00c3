"""Evaluation during pre-training (`eval.tasks`, `eval.every`): keys in metrics.jsonl, a bad suite stops
the run before anything is built, and 1-process, DDP and FSDP2 runs score what `mm1 eval` scores for
their final checkpoint."""
from __future__ import annotations

import json

import pytest
import torch

from mm1.cli import main
from mm1.config import ConfigError, load_config
from mm1.train.evaluation import check_training_eval, prepare_training_eval
from mm1.train.metrics import read_metrics
from mm1.train.pretrain import pretrain
from tests.conftest import TINY, torchrun

TASKS = "synth_vqa,synth_caption"
EVAL = ["--shots", "0,2", "--limit", "6", "--trials", "1", "--batch-size", "4", "--seed", "0"]


def overrides(synth_root, run, *extra) -> list[str]:
    return [f"data.root={synth_root}", "data.synth=null", f"output.dir={run}", "train.batch_size=3",
            "train.steps=4", "train.log_every=1", "model.decoder.num_layers=2", "model.vision.layers=2",
            "model.decoder.hidden_size=128", "optim.lr=2e-3", "optim.warmup_steps=1", f"eval.tasks={TASKS}",
            "eval.every=2", "eval.shots=[0,2]", "eval.limit=6", "eval.trials=1", "eval.batch_size=4", *extra]


def eval_records(run) -> dict[int, dict]:
    return {r["step"]: {k: v for k, v in r.items() if k != "step"}
            for r in read_metrics(run) if any(k.startswith("eval") for k in r)}


def standalone_scores(run, out, capsys) -> dict[str, float]:
    """`mm1 eval` of the run's final checkpoint, as {"eval/<task>/<k>shot": mean}."""
    threads = torch.get_num_threads()
    try:
        assert main(["eval", str(run), "--tasks", TASKS, *EVAL, "--threads", "1", "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    summary = json.loads((out / "results.json").read_text())["summary"]
    return {f"eval/{task}/{k}shot": e["mean"] for task, by_shots in summary.items() for k, e in by_shots.items()}


def test_bad_suite_is_a_config_error_before_anything_is_built(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["pretrain", str(TINY), *overrides(synth_root, run, "eval.tasks=synth_vqa,vqa3")]) == 2
    err = capsys.readouterr().err
    assert "eval.tasks" in err and "unknown task 'vqa3'" in err and "synth_textvqa" in err and "mm1_pretrain" in err
    assert not run.exists()  # nothing was written: no corpus, no model, no run folder


def test_missing_task_files_are_config_errors(synth_root, tmp_path, monkeypatch):
    monkeypatch.delenv("MM1_EVAL_DATA", raising=False)
    with pytest.raises(ConfigError, match="eval.tasks: task vqav2: .*--data-dir DIR or set MM1_EVAL_DATA"):
        check_training_eval(load_config(TINY, overrides(synth_root, tmp_path, "eval.tasks=vqav2")))
    with pytest.raises(ConfigError, match="eval.tasks: task vqav2: query.annotations file not found"):
        check_training_eval(load_config(TINY, overrides(synth_root, tmp_path, "eval.tasks=vqav2",
                                                        f"eval.data_dir={tmp_path}")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="eval.tasks: task synth_vqa: query.annotations file not found.*under data.root"):
        check_training_eval(load_config(TINY, overrides(empty, tmp_path, "eval.tasks=synth_vqa")))
    # a corpus generated on first use is checked once it is written, before the model is built
    cfg = load_config(TINY, [f"data.root={empty}", f"output.dir={tmp_path}", "eval.tasks=synth_vqa"])
    check_training_eval(cfg)
    with pytest.raises(ConfigError, match="eval.tasks: task synth_vqa: query.annotations file not found"):
        prepare_training_eval(cfg)


@pytest.mark.parametrize("field, value", [("eval.shots", "[]"), ("eval.shots", "[0,-1]"), ("eval.every", "-1"),
                                          ("eval.limit", "-1"), ("eval.trials", "0"), ("eval.demos", "best"), ("eval.vqa_protocol", "lenient"), ("eval.zero_shot", "two"), ("eval.batch_size", "0")])
def test_bad_eval_numbers_name_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        load_config(TINY, [f"{field}={value}"])


@pytest.mark.slow
def test_one_process_eval_keys_and_scores_equal_mm1_eval(synth_root, tmp_path, capsys):
    run = tmp_path / "run"
    pretrain(load_config(TINY, overrides(synth_root, run)))
    records = eval_records(run)
    assert sorted(records) == [2, 4]  # every 2 steps and after the last
    keys = {f"eval/{t}/{k}shot" for t in ("synth_vqa", "synth_caption", "average") for k in (0, 2)}
    assert all(set(r) == keys for r in records.values())
    assert (run / "eval" / "step_2" / "results.json").is_file()
    scores = standalone_scores(run, tmp_path / "standalone", capsys)
    assert {k: v for k, v in records[4].items() if "/average/" not in k} == pytest.approx(scores, abs=1e-9)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_process_eval_equals_mm1_eval_of_its_checkpoint(synth_root, tmp_path, capsys, strategy):
    run = tmp_path / "run"
    proc = torchrun(overrides(synth_root, run, f"parallel.strategy={strategy}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = eval_records(run)
    assert sorted(records) == [2, 4]
    losses = [r["loss"] for r in read_metrics(run) if "loss" in r]
    assert len(losses) == 4  # one metrics line per step, written by rank 0 only
    scores = standalone_scores(run, tmp_path / "standalone", capsys)
    assert {k: v for k, v in records[4].items() if "/average/" not in k} == pytest.approx(scores, abs=1e-9)
