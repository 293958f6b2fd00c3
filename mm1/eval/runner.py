"""Evaluate a loaded model on tasks x shots x trials.

    data = [load_task_data(resolve(spec, ...), cfg) for spec in specs]   # before the model loads
    runs = evaluate(model, tokenizer, data, cfg, image_size)             # list[RunResult]

Per-sample problems (a missing or unreadable image, the query's or a
demonstration's) are recorded on that sample's record, counted by reason and
scored as an empty prediction (0); the run goes on. The scored query set is a
seeded subset of `limit` queries, the same for every shot count and trial;
trials draw different random demonstrations. Zero-shot with `query_only`
prompts and RICES are deterministic, so they run one trial.
"""
from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch
from tqdm import tqdm

from mm1.eval.generate import Prompt, generate
from mm1.eval.loaders import EvalSample, load_split
from mm1.eval.metrics import QUESTION_METRICS, cider_per_image
from mm1.eval.postprocess import build_postprocessor
from mm1.eval.prompts import RandomDemos, RicesDemos, SampleError, build_prompt, encode_prompt, load_pixels
from mm1.eval.config import DEMO_MODES, EvalConfig
from mm1.eval.rices import DEFAULT_CACHE, cached_image_features
from mm1.eval.tasks import SplitSpec, TaskSpec

PIXEL_CACHE_BYTES = 512 << 20  # preprocessed images kept in memory per task (demos recur across queries)


@dataclass
class TaskData:
    spec: TaskSpec  # with resolved paths
    queries: list[EvalSample]  # the scored subset
    pool: list[EvalSample]  # demonstrations whose image file exists
    skipped: dict[str, int]  # entries the loaders skipped and demos without an image, by reason


@dataclass
class SampleRecord:
    task: str
    shots: int
    trial: int
    id: str
    image_id: str
    question: Optional[str]
    answers: list[str]
    demo_ids: list[str]
    raw: Optional[str] = None  # the generation before post-processing
    prediction: str = ""  # what is scored ("" for an error)
    score: Optional[float] = None  # VQA accuracy or exact match in [0, 1], or this image's CIDEr-D (pycocoevalcap scale)
    error: Optional[str] = None


@dataclass
class RunResult:
    task: str
    metric: str
    shots: int
    trial: int
    score: float  # x100
    num_samples: int
    num_errors: int
    errors: dict[str, int]
    seconds: float
    records: list[SampleRecord]


def _load(split: SplitSpec, fmt: str):
    return load_split(split.format or fmt, annotations=split.annotations, questions=split.questions,
                      images=split.images, split=split.split, **split.options)


def load_task_data(spec: TaskSpec, cfg: EvalConfig) -> TaskData:
    """Read both splits (raises on a missing or malformed file) and pick the scored queries."""
    query_split, demo_split = _load(spec.query, spec.format), _load(spec.demos, spec.format)
    queries = list(query_split)
    if not queries:
        about = f" ({spec.description})" if spec.description else ""
        raise ValueError(f"task {spec.name}{about}: the query split has no usable entries")
    _check_answers(spec, queries)
    if cfg.limit and cfg.limit < len(queries):
        keep = sorted(random.Random(f"queries/{cfg.seed}").sample(range(len(queries)), cfg.limit))
        queries = [queries[i] for i in keep]
    exists: dict[Path | None, bool] = {None: True}  # a text-only demo needs no file
    for demo in demo_split:
        if demo.image not in exists:
            exists[demo.image] = demo.image.is_file()
    pool = [d for d in demo_split if exists[d.image]]
    skipped = Counter({f"query: {k}": v for k, v in query_split.skipped.items()})
    skipped.update({f"demos: {k}": v for k, v in demo_split.skipped.items()})
    skipped["demos: missing image file"] += len(demo_split) - len(pool)
    return TaskData(spec, queries, pool, {k: v for k, v in sorted(skipped.items()) if v})


def _check_answers(spec: TaskSpec, queries: list[EvalSample]) -> None:
    """vqa_accuracy leaves each human answer out in turn: with one answer it scores every prediction 0."""
    single = sum(len(q.answers) < 2 for q in queries)
    if spec.metric == "vqa_accuracy" and single:
        raise ValueError(f"task {spec.name}: {single} of {len(queries)} questions have a single answer, which "
                         f"vqa_accuracy always scores 0 (it matches each human answer against the others); "
                         f"use metric: exact_match in the task spec")


def zero_shot_of(spec: TaskSpec, cfg: EvalConfig) -> str:
    """The zero-shot convention in force: the command's, else the task's own."""
    return cfg.zero_shot or spec.prompt.zero_shot


def trials_for(spec: TaskSpec, shots: int, cfg: EvalConfig) -> int:
    if cfg.demos == "rices" or (shots == 0 and zero_shot_of(spec, cfg) == "query_only"):
        return 1
    return cfg.trials


def make_selector(model, data: TaskData, cfg: EvalConfig, image_size: int):
    """The demo selector of a task, or None when no shot count needs demonstrations."""
    if not any(s > 0 for s in cfg.shots) and zero_shot_of(data.spec, cfg) == "query_only":
        return None
    if cfg.demos == "random":
        return RandomDemos(data.pool, cfg.seed) if data.pool else None
    if cfg.demos != "rices":
        raise ValueError(f"unknown demo selection {cfg.demos!r}; known: {', '.join(DEMO_MODES)}")
    if any(q.image is None for q in data.queries):
        raise ValueError(f"task {data.spec.name} has no images: rices demos need them; use demos=random")
    cache = Path(cfg.cache_dir) if cfg.cache_dir else DEFAULT_CACHE
    pool_feats = cached_image_features(model, [d.image for d in data.pool], image_size, cache)
    pool = [d for d, ok in zip(data.pool, pool_feats.ok) if ok]
    query_feats = cached_image_features(model, [q.image for q in data.queries], image_size, cache)
    by_id = {q.id: f for q, f, ok in zip(data.queries, query_feats.features, query_feats.ok) if ok}
    return RicesDemos(pool, pool_feats.features[torch.tensor(pool_feats.ok, dtype=torch.bool)], by_id)


class Prompter:
    """Plans each query's prompt (demos, token ids, image files) and loads pixels, cached across queries."""

    def __init__(self, model, tokenizer, spec: TaskSpec, selector, image_size: int, zero_shot: Optional[str] = None):
        self.model, self.tok, self.spec, self.selector = model, tokenizer, spec, selector
        self.zero_shot = zero_shot or spec.prompt.zero_shot  # the convention in force (see zero_shot_of)
        self.image_size = image_size
        entries = max(16, PIXEL_CACHE_BYTES // (3 * image_size * image_size * 4))
        self._pixels = lru_cache(maxsize=entries)(lambda path: load_pixels(path, image_size))

    def plan(self, query: EvalSample, shots: int, trial: int) -> tuple[list[int], list[Path], list[str]]:
        """-> (prompt ids, image files in order, demo ids); no image is read here."""
        spec = self.spec.prompt
        text_only = shots == 0 and self.zero_shot == "text_demos"
        k = spec.zero_shot_demos if text_only else shots
        if k and self.selector is None:
            raise ValueError(f"task {self.spec.name}: no demonstrations available (no demo has an image file)")
        demos = self.selector.select(query, k, trial) if k else []
        text = build_prompt(spec, demos, query, text_only=text_only)
        ids = encode_prompt(self.tok, text.segments, len(text.images), self.model.tokens_per_image)
        return ids, text.images, text.demo_ids

    def pixels(self, paths: list[Path], query: EvalSample) -> torch.Tensor:
        """(n, 3, S, S) pixels; SampleError names a missing or unreadable query or demo image."""
        if query.image is None:  # a text-only task
            return torch.zeros(0, 3, self.image_size, self.image_size, dtype=torch.uint8)
        self._pixels(query.image)  # first: a missing query image is reported as the query's
        try:
            return torch.stack([self._pixels(p) for p in paths])
        except SampleError as err:
            raise SampleError(f"demo: {err}") from None


def _record(spec: TaskSpec, query: EvalSample, shots: int, trial: int, demo_ids=(), error=None) -> SampleRecord:
    return SampleRecord(spec.name, shots, trial, query.id, query.image_id, query.question, list(query.answers),
                        list(demo_ids), error=error)


@dataclass
class _Planned:
    query: EvalSample
    record: SampleRecord
    input_ids: list[int]
    images: list[Path]


def _decode_batch(model, tokenizer, spec: TaskSpec, prompter: Prompter, batch: list[_Planned]) -> None:
    """Load pixels, generate, post-process; fills each record (or its error) in place."""
    prompts, ready = [], []
    for item in batch:
        try:
            prompts.append(Prompt(item.input_ids, prompter.pixels(item.images, item.query)))
            ready.append(item.record)
        except SampleError as err:
            item.record.error = str(err)
    if not prompts:
        return
    post = build_postprocessor(spec.postprocess)
    gens = generate(model, tokenizer, prompts, spec.generation.max_new_tokens, tuple(spec.generation.stop))
    for rec, gen in zip(ready, gens):
        rec.raw, rec.prediction = gen.text, post(gen.text)


def score_records(metric: str, records: list[SampleRecord], vqa_protocol: str = "official") -> float:
    """The task metric over every record (errors count as empty predictions), x100."""
    if metric in QUESTION_METRICS:
        score, options = QUESTION_METRICS[metric], {"protocol": vqa_protocol} if metric == "vqa_accuracy" else {}
        for rec in records:
            rec.score = score(rec.prediction, rec.answers, **options) if rec.error is None else 0.0
        return 100.0 * sum(r.score for r in records) / max(len(records), 1)
    if metric == "cider":
        per_image = cider_per_image({r.id: r.prediction for r in records}, {r.id: r.answers for r in records})
        for rec in records:
            rec.score = per_image[rec.id]
        return 100.0 * sum(per_image.values()) / max(len(per_image), 1)
    raise ValueError(f"unknown metric {metric!r}")


def run_one(model, tokenizer, data: TaskData, prompter: Prompter, shots: int, trial: int,
            cfg: EvalConfig, progress: bool = True) -> RunResult:
    """One (task, shots, trial): prompts are decoded longest first, so a batch holds similar lengths
    (little padding); each row decodes as it would alone, so the order changes no prediction."""
    spec, start = data.spec, time.perf_counter()
    planned = []
    for query in data.queries:
        ids, images, demo_ids = prompter.plan(query, shots, trial)
        planned.append(_Planned(query, _record(spec, query, shots, trial, demo_ids), ids, images))
    records = [p.record for p in planned]  # query order
    planned.sort(key=lambda p: -len(p.input_ids))
    batches = range(0, len(planned), cfg.batch_size)
    desc = f"{spec.name} {shots}-shot" + (f" trial {trial}" if trials_for(spec, shots, cfg) > 1 else "")
    for i in tqdm(batches, desc=desc, disable=not progress, dynamic_ncols=True, leave=False):
        _decode_batch(model, tokenizer, spec, prompter, planned[i: i + cfg.batch_size])
    score = score_records(spec.metric, records, cfg.vqa_protocol)
    errors = Counter(r.error for r in records if r.error is not None)
    return RunResult(spec.name, spec.metric, shots, trial, score, len(records), sum(errors.values()),
                     dict(sorted(errors.items())), time.perf_counter() - start, records)


def evaluate(model, tokenizer, tasks: list[TaskData], cfg: EvalConfig, image_size: int,
             progress: bool = True) -> list[RunResult]:
    """Every task x shots x trial; the model is put in eval mode and restored afterwards."""
    if any(s < 0 for s in cfg.shots):
        raise ValueError(f"shots must be >= 0, got {cfg.shots}")
    was_training = model.training
    model.eval()
    try:
        results = []
        for data in tasks:
            selector = make_selector(model, data, cfg, image_size)
            prompter = Prompter(model, tokenizer, data.spec, selector, image_size, cfg.zero_shot)
            for shots in cfg.shots:
                for trial in range(trials_for(data.spec, shots, cfg)):
                    results.append(run_one(model, tokenizer, data, prompter, shots, trial, cfg, progress))
        return results
    finally:
        model.train(was_training)
