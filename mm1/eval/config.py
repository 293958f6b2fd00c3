"""The one set of evaluation settings: a recipe's `eval:`, a grid's `eval:` and `mm1 eval`'s flags.

Every field documents itself (`help`); `mm1 eval` derives its flags from these fields (`--batch-size`
for `batch_size`, ...), except those marked `cli: False`, which only mean something during training.
This module imports nothing heavy, so the config tree can use it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from mm1.eval.metrics import PROTOCOLS

DEFAULT_TASKS = "synthetic"  # what is scored when `tasks` is not set (mm1 eval, grids)
DEMO_MODES = ("random", "rices")
ZERO_SHOT = ("query_only", "text_demos")


def _doc(help: str, **more) -> dict:
    return {"help": help, **more}


@dataclass
class EvalConfig:
    tasks: Optional[str] = field(default=None, metadata=_doc(
        "comma-separated tasks and suites (synthetic, mm1_pretrain; see mm1 eval --list-tasks); in a recipe, "
        "scored during pre-training, and null (the default) scores nothing"))
    every: int = field(default=0, metadata=_doc(
        "optimizer steps between evaluations during pre-training; 0 = only after the last step", cli=False))
    shots: list[int] = field(default_factory=lambda: [0, 4, 8], metadata=_doc("shot counts, e.g. 0,4,8"))
    trials: int = field(default=3, metadata=_doc("random demonstration draws per task and shot count > 0"))
    demos: str = field(default="random", metadata=_doc("demonstration selection", choices=DEMO_MODES))
    limit: int = field(default=100, metadata=_doc("scored queries per task, a seeded subset; 0 = the whole split"))
    batch_size: int = field(default=32, metadata=_doc("prompts decoded together"))
    seed: int = field(default=0, metadata=_doc("seed of the query subset and of the random demonstrations"))
    data_dir: Optional[str] = field(default=None, metadata=_doc(
        "folder of the public benchmarks (the mm1_pretrain suite); null = $MM1_EVAL_DATA"))
    zero_shot: Optional[str] = field(default=None, metadata=_doc(
        "0-shot prompts of every task: query_only (the bare query) or text_demos (OpenFlamingo's: two "
        "demonstrations with their images removed, then the query); null = each task's own", choices=ZERO_SHOT))
    vqa_protocol: str = field(default="official", metadata=_doc(
        "which VQA evaluation script vqa_accuracy reproduces: official (GT-Vision-Lab vqaEval.py as it is now), "
        "openflamingo (OpenFlamingo's copy) or official_2016 (before the 2021 fix)", choices=PROTOCOLS))
    cache_dir: Optional[str] = field(default=None, metadata=_doc(
        "RICES image-feature cache; null = <run>/eval/rices_cache during training, ~/.cache/mm1/rices otherwise"))
