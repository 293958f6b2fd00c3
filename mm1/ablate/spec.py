"""The typed schema of an ablation grid file (`ablations/*.yaml`).

A grid names a base recipe and the axes that vary; every run is the base recipe
plus dotted overrides. Example (MM1 Figure 4, abridged):

    name: connectors
    base: ../recipes/ablation_base.yaml   # relative to the grid file
    set: {train.checkpoint_every: 500}    # overrides shared by every run
    steps: 5000                           # train.steps of every run
    axes:                                 # cartesian product, in this order
      connector: {key: model.connector.kind, values: [avg_pool, attention_pool, c_abstractor]}
      tokens: {key: model.connector.num_tokens, values: [64, 144], short: tok}
    seeds: [0]                            # train.seed and data.seed of each run
    eval: {tasks: mm1_pretrain, shots: [0, 4, 8]}
    plot: {kind: bars, panels: shots, groups: [tokens], hue: connector}
    findings:                             # the paper's claims, each checked against the runs
      - {name: more tokens help, paper: "MM1 Fig. 4", axis: tokens, from: "64", to: "144", expect: increase}
    presets:
      tiny: {base: ../recipes/tiny.yaml, axes: {tokens: {values: [4, 16]}}}

How the runs are started is the grid's `launch` (`LaunchSpec`; the command line's `--launcher`,
`--gpus-per-run`, `--nodes`, `--partition`, ... replace its keys):

    launch: {launcher: slurm, nodes: 1, gpus_per_run: 8, time: 240, partition: gpu, sbatch: {constraint: h100}}

An axis is either `key` + `values` (one override per level) or `levels`
(label -> several overrides). `variants` is an explicit list of runs instead of
(or crossed with) the axes. A preset replaces the grid's keys, except that
`set`, `eval`, `plot` and `lr_fit` merge key by key and `axes` merges per axis
(`mm1.ablate.grid.apply_preset`); a preset's `findings` replace the grid's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from mm1.eval.config import EvalConfig

Value = Union[bool, int, float, str, list, dict, None]  # any YAML value an override may carry
PLOT_KINDS = ("bars", "lines")
# columns of results.csv besides the axes; an axis or variant label may not take one of these names
RESULT_COLUMNS = ("run", "seed", "status", "task", "metric", "shots", "score", "score_std", "trials", "final_loss",
                  "peak_lr", "params", "decoder_non_embedding", "train_seconds", "error")
LR_SELECT = ("final_loss", "eval_average")
FINDING_KINDS = ("effect", "spread")
EXPECT = ("increase", "decrease")
LAUNCHERS = ("local", "torchrun", "slurm")
STOP_SIGNALS = ("USR1", "USR2", "TERM")  # the signals `mm1 pretrain` checkpoints and exits on
SHOTS_AXIS = "shots"  # a finding's axis that compares shot counts within each run
Label = Union[str, int, float]  # a level as written in a finding; compared as text with the run labels


@dataclass
class AxisSpec:
    key: Optional[str] = None  # dotted config key set by each value
    values: list[Value] = field(default_factory=list)  # the levels, when `key` is given
    levels: dict[str, dict[str, Value]] = field(default_factory=dict)  # label -> {dotted key: value}
    short: str = ""  # prefix of the level in run names (tokens 64 + "tok" -> tok64)
    label: Optional[str] = None  # human name in tables and plots; None = the axis name
    unit: Optional[str] = None  # written after a level on plot ticks ("144 tokens", "336 px")


@dataclass
class VariantSpec:
    labels: dict[str, Value] = field(default_factory=dict)  # column -> value shown for this run
    set: dict[str, Value] = field(default_factory=dict)  # dotted key -> value


@dataclass
class PlotSpec:
    kind: str = "bars"  # bars (grouped, like MM1 Figure 4) | lines
    panels: Optional[str] = "shots"  # one subplot per level of this axis ("shots" or an axis); None = one
    groups: list[str] = field(default_factory=list)  # axes forming the x positions (lines: exactly one)
    hue: Optional[str] = None  # axis (or "shots") that colours the bars / lines
    logx: bool = False  # lines: log-scale x axis
    title: Optional[str] = None


@dataclass
class LrFitSpec:
    size_axis: str = "size"  # the axis that varies the model size
    select: str = "final_loss"  # which run of each size is best: lowest final_loss or highest eval_average


@dataclass
class FindingSpec:
    """A claim of the paper, checked against the runs (`mm1.ablate.findings`)."""
    name: str = ""  # unique within the grid
    paper: str = ""  # the claim, free text ("MM1 Table 1: 336 px beats 224 px")
    kind: str = "effect"  # effect: level `to` minus level `from` | spread: max minus min over the axis's levels
    axis: str = ""  # an axis (or variant label) of the grid, or "shots" (k-shot levels within each run)
    from_: Optional[Label] = field(default=None, metadata={"key": "from"})  # effect: the baseline level
    to: Optional[Label] = None  # effect: the level compared with it
    task: Optional[str] = None  # one task; None = the average over the grid's tasks
    shots: Union[int, list[int], None] = None  # k-shot column(s), averaged; None = all; not with axis shots
    where: dict[str, list[Label]] = field(default_factory=dict)  # axis -> the levels of the runs compared
    expect: Optional[str] = None  # effect: increase | decrease
    smaller_than: list[str] = field(default_factory=list)  # spread: names of effect findings it is below


@dataclass
class LaunchSpec:
    """How each run is started (mm1.ablate.launchers); the same bookkeeping for every launcher."""
    launcher: str = "local"  # local: one process per run, --jobs at a time | torchrun | slurm
    gpus_per_run: int = 1  # torchrun: processes per run (one GPU each; gloo CPU processes without GPUs); slurm: per node
    nodes: int = 1  # slurm: nodes per run (gpus_per_run processes on each)
    request_gpus: bool = True  # slurm: ask for gpus_per_run GPUs per node; false: CPU processes (a CPU partition)
    cpus_per_task: Optional[int] = None  # slurm: CPUs per process (torch threads); None = the partition's default
    time: int = 60  # slurm: time limit of each job, minutes; a job stopped by it is requeued and resumes
    partition: Optional[str] = None  # slurm
    account: Optional[str] = None  # slurm
    qos: Optional[str] = None  # slurm
    signal: str = "USR2"  # slurm: what Slurm sends `signal_delay_s` before the time limit (sbatch --signal)
    signal_delay_s: int = 120  # slurm: time left for the checkpoint after that signal
    sbatch: dict[str, Value] = field(default_factory=dict)  # slurm: extra sbatch options, {constraint: h100}


@dataclass
class GridSpec:
    name: str
    base: str  # recipe YAML, relative to the grid file
    description: str = ""
    set: dict[str, Value] = field(default_factory=dict)
    steps: Optional[int] = None  # train.steps of every run; None = the recipe's
    axes: dict[str, AxisSpec] = field(default_factory=dict)
    variants: list[VariantSpec] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    seed_keys: list[str] = field(default_factory=lambda: ["train.seed", "data.seed"])
    eval: Optional[EvalConfig] = field(default_factory=EvalConfig)  # how every run is scored; None = train only
    plot: Optional[PlotSpec] = None
    lr_fit: Optional[LrFitSpec] = None
    findings: list[FindingSpec] = field(default_factory=list)
    launch: LaunchSpec = field(default_factory=LaunchSpec)
    presets: dict[str, dict] = field(default_factory=dict)  # name -> partial grid merged onto this one
