"""Every shipped question-answering task, through its real spec, loader and scorer: the consensus answer
scores 100, a wrong answer 0, and a metric that cannot score the task's answers is refused."""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from mm1.eval.config import EvalConfig
from mm1.eval.runner import SampleRecord, load_task_data, score_records
from mm1.eval.tasks import load_specs, resolve
from tests.conftest import FIXTURES

EVAL_FIXTURES = FIXTURES / "eval"
SPECS = load_specs()
QA_TASKS = sorted(name for name, spec in SPECS.items() if spec.metric != "cider")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """The benchmark folder as the specs lay it out: the fixtures hold the query files; each demo file
    is a copy of its task's query file."""
    root = tmp_path_factory.mktemp("benchmarks")
    shutil.copytree(EVAL_FIXTURES, root, dirs_exist_ok=True)
    for spec in (SPECS[name] for name in QA_TASKS if SPECS[name].root == "data_dir"):
        for key in ("annotations", "questions"):
            query, demos = getattr(spec.query, key), getattr(spec.demos, key)
            if demos and not (root / demos).exists():
                (root / demos).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(root / query, root / demos)
    return root


def load(name: str, synth_root: Path, data_dir: Path):
    spec = resolve(SPECS[name], data_root=str(synth_root), data_dir=str(data_dir))
    return load_task_data(spec, EvalConfig(limit=0))


def records(queries, predictions) -> list[SampleRecord]:
    return [SampleRecord("task", 0, 0, q.id, q.image_id, q.question, list(q.answers), [], prediction=p)
            for q, p in zip(queries, predictions)]


def test_every_question_task_is_covered():
    assert {"vqav2", "okvqa", "textvqa", "vizwiz", "gqa", "synth_vqa", "synth_textvqa"} <= set(QA_TASKS)
    assert SPECS["gqa"].metric == "exact_match"


@pytest.mark.parametrize("name", QA_TASKS)
def test_consensus_answer_scores_100_and_a_wrong_one_0(name, synth_root, corner_root, data_dir):
    data = load(name, corner_root if name in ("synth_corner", "synth_stripes") else synth_root, data_dir)
    metric = data.spec.metric
    # VQA accuracy gives 100 to an answer that at least 4 of the 10 humans gave (each of the ten
    # leave-one-out sets then still holds 3 matches); the fixtures' questions all have one.
    queries = [q for q in data.queries if metric != "vqa_accuracy" or Counter(q.answers).most_common(1)[0][1] >= 4]
    assert len(queries) >= 2, f"{name}: too few questions with a consensus answer to test"
    consensus = [Counter(q.answers).most_common(1)[0][0] for q in queries]
    assert score_records(metric, records(queries, consensus)) == 100.0
    assert score_records(metric, records(queries, ["zzqx"] * len(queries))) == 0.0


def test_gqa_matches_the_normalised_answer(synth_root, data_dir):
    data = load("gqa", synth_root, data_dir)
    assert all(len(q.answers) == 1 for q in data.queries)
    dressed = [f" The {q.answers[0].upper()}.\n" for q in data.queries]  # article, case, period, newline
    assert score_records("exact_match", records(data.queries, dressed)) == 100.0


def test_vqa_accuracy_refuses_single_answer_questions(synth_root, data_dir):
    spec = resolve(SPECS["gqa"], data_dir=str(data_dir))
    spec.metric = "vqa_accuracy"  # the formula would score every correct GQA answer 0
    with pytest.raises(ValueError, match="gqa: 3 of 3 questions have a single answer.*exact_match"):
        load_task_data(spec, EvalConfig(limit=0))


def test_vqa_protocol_setting_reaches_the_score():
    rec = records([type("Q", (), {"id": "1", "image_id": "1", "question": "q", "answers": ["yes"] * 10})()], ["Yes"])
    assert score_records("vqa_accuracy", rec) == 0.0  # official: identical answers, no normalisation
    assert score_records("vqa_accuracy", rec, vqa_protocol="openflamingo") == 100.0
