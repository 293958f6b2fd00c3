"""Task specs (one YAML per task in the repository's `eval/` folder), suites and path resolution.

    specs = load_specs()                              # name -> TaskSpec, from eval/*.yaml
    tasks = select_tasks("synthetic,vqav2", specs)    # suites expand; unknown names list the known ones
    resolved = [resolve(t, data_root=..., data_dir=...) for t in tasks]   # absolute paths, files checked

A spec's file paths are relative to one of two folders, named by its `root`:
  data_root  the embedded corpus (the checkpoint's `data.root`, or `mm1 eval --data-root`);
             the synthetic tasks use it.
  data_dir   the folder holding the public benchmarks (`mm1 eval --data-dir`, or the
             MM1_EVAL_DATA environment variable), laid out as the specs say, e.g.
             coco/dataset_coco.json, coco/train2014/, coco/val2014/, vqav2/..., okvqa/...,
             textvqa/TextVQA_0.5.1_{train,val}.json + textvqa/train_images/, vizwiz/{train,val}.json
             + vizwiz/{train,val}/, gqa/{train,testdev}_balanced_questions.json + gqa/images/,
             nocaps/nocaps_val_4500_captions.json + nocaps/val/, textcaps/TextCaps_0.1_{train,val}.json.
Absolute paths in a spec are used as they are. Resolution checks that every
annotation and questions file exists, so a wrong path fails before any model loads.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import yaml

from mm1.config.tree import ConfigError, build
from mm1.eval.config import ZERO_SHOT
from mm1.eval.loaders import LOADERS
from mm1.eval.metrics import METRICS
from mm1.eval.postprocess import PostprocessSpec
from mm1.shipped import TASKS

TASK_DIR = TASKS  # eval/ of the repository, shipped with the package
DATA_DIR_ENV = "MM1_EVAL_DATA"
ROOTS = ("data_root", "data_dir")
SUITES: dict[str, list[str]] = {
    "mm1_pretrain": ["coco", "nocaps", "textcaps", "vqav2", "textvqa", "vizwiz", "gqa", "okvqa"],
    "synthetic": ["synth_caption", "synth_vqa", "synth_textvqa", "synth_detail", "synth_dialect", "synth_text"],
}


@dataclass
class SplitSpec:
    annotations: str  # annotation file (the loader's annotations=)
    images: str  # image folder (the loader's images=)
    questions: Optional[str] = None  # questions file (VQAv2 / OK-VQA format only)
    split: Optional[str] = None  # the loader's split= (e.g. "val", Karpathy "test")
    format: Optional[str] = None  # loader format when it differs from the task's (NoCaps demos come from COCO)
    options: dict[str, Union[bool, int, str]] = field(default_factory=dict)  # loader keywords, e.g. image_pattern


@dataclass
class PromptSpec:
    demo: str  # one demonstration; fields {question}, {answer} (first human answer), {caption} (first reference)
    query: str  # the query; same fields minus the answer
    separator: str = "\n"  # written after each demonstration
    zero_shot: str = "query_only"  # query_only: the bare query | text_demos: OpenFlamingo's text-only demos
    zero_shot_demos: int = 2  # demonstrations (images removed) used by text_demos


@dataclass
class GenerationSpec:
    max_new_tokens: int  # VQA 5, TextVQA 10, captions 20 in OpenFlamingo's protocol
    stop: list[str] = field(default_factory=lambda: ["<|endofchunk|>"])  # EOS always stops too


@dataclass
class TaskSpec:
    name: str  # must equal the YAML file's stem
    format: str  # query split's loader format (mm1.eval.loaders.LOADERS)
    metric: str  # vqa_accuracy (10 human answers) | exact_match (one answer: GQA) | cider (captions)
    query: SplitSpec  # the split that is scored
    demos: SplitSpec  # the split demonstrations are drawn from (the train split)
    prompt: PromptSpec
    generation: GenerationSpec
    postprocess: PostprocessSpec = field(default_factory=PostprocessSpec)
    root: str = "data_dir"  # what relative paths are relative to: data_root | data_dir
    description: str = ""


def _check_spec(spec: TaskSpec, where: str) -> None:
    checks = [
        (spec.metric in METRICS, "metric", spec.metric, METRICS),
        (spec.root in ROOTS, "root", spec.root, ROOTS),
        (spec.prompt.zero_shot in ZERO_SHOT, "prompt.zero_shot", spec.prompt.zero_shot, ZERO_SHOT),
    ]
    for fmt_key, fmt in (("format", spec.format), ("demos.format", spec.demos.format or spec.format)):
        checks.append((fmt in LOADERS, fmt_key, fmt, sorted(LOADERS)))
    for ok, key, value, allowed in checks:
        if not ok:
            raise ConfigError(f"{where}: {key}: {value!r} is not one of {', '.join(allowed)}")
    if "{answer}" not in spec.prompt.demo and "{caption}" not in spec.prompt.demo:
        raise ConfigError(f"{where}: prompt.demo has neither an {{answer}} nor a {{caption}} field")


def load_spec(path: Path) -> TaskSpec:
    """One task YAML -> TaskSpec; errors name the file and the key path."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    try:
        spec = build(TaskSpec, data)
    except (ConfigError, TypeError) as err:
        raise ConfigError(f"{path}: {err}") from None
    if spec.name != Path(path).stem:
        raise ConfigError(f"{path}: name {spec.name!r} differs from the file name {Path(path).stem!r}")
    _check_spec(spec, str(path))
    return spec


def load_specs(task_dir: Path | str = TASK_DIR) -> dict[str, TaskSpec]:
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        raise FileNotFoundError(f"task folder not found: {task_dir}")
    return {p.stem: load_spec(p) for p in sorted(task_dir.glob("*.yaml"))}


def select_tasks(names: str, specs: dict[str, TaskSpec]) -> list[TaskSpec]:
    """Comma-separated task and suite names -> specs, in order, without repeats."""
    wanted: list[str] = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        for task in SUITES.get(name, [name]):
            if task not in specs:
                raise ValueError(
                    f"unknown task {task!r}; known tasks: {', '.join(sorted(specs))}; "
                    f"suites: {', '.join(f'{s} ({len(t)} tasks)' for s, t in SUITES.items())}"
                )
            if task not in wanted:
                wanted.append(task)
    if not wanted:
        raise ValueError("no task given; pass task or suite names, e.g. --tasks synthetic")
    return [specs[t] for t in wanted]


def _root_for(spec: TaskSpec, data_root: Optional[str], data_dir: Optional[str]) -> Path:
    if spec.root == "data_root":
        if not data_root:
            raise ValueError(f"task {spec.name}: its files are under the corpus root: pass --data-root DIR")
        if not Path(data_root).is_dir():
            raise FileNotFoundError(
                f"task {spec.name}: corpus root {data_root} not found (the checkpoint's data.root, "
                f"relative to the current folder; pass --data-root DIR)"
            )
        return Path(data_root)
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV)
    if not data_dir:
        raise ValueError(
            f"task {spec.name}: its files are under the benchmark data folder: "
            f"pass --data-dir DIR or set {DATA_DIR_ENV}"
        )
    return Path(data_dir)


def _resolve_split(split: SplitSpec, base: Path, task: str, role: str, about: str = "") -> SplitSpec:
    split = copy.deepcopy(split)
    for key in ("annotations", "questions", "images"):
        value = getattr(split, key)
        if value is None:
            continue
        path = Path(os.path.expanduser(value))
        path = (path if path.is_absolute() else base / path).resolve()
        if key != "images" and not path.is_file():
            where = f" ({about})" if about else ""
            raise FileNotFoundError(f"task {task}: {role}.{key} file not found: {path}{where}")
        setattr(split, key, str(path))
    return split


def resolve(spec: TaskSpec, data_root: Optional[str] = None, data_dir: Optional[str] = None) -> TaskSpec:
    """A copy of `spec` with absolute paths; raises if an annotation or questions file is missing (naming the
    task and its description, which says where a file comes from when only some corpora have it)."""
    base = _root_for(spec, data_root, data_dir)
    out = copy.deepcopy(spec)
    out.query = _resolve_split(spec.query, base, spec.name, "query", spec.description)
    out.demos = _resolve_split(spec.demos, base, spec.name, "demos", spec.description)
    return out
