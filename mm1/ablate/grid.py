"""Grid file -> list of runs, each a base recipe plus dotted overrides, all checked before anything runs.

    grid = load_grid("connectors", preset="tiny")   # a name in ablations/ or a path
    runs = expand(grid)                             # one RunSpec per variant x axis levels x seed
    configs = check_runs(runs)                      # every run's Config; GridError names run and key path
"""
from __future__ import annotations

import copy
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mm1.ablate.spec import (EXPECT, FINDING_KINDS, LAUNCHERS, LR_SELECT, PLOT_KINDS, RESULT_COLUMNS, SHOTS_AXIS,
                             STOP_SIGNALS, FindingSpec, GridSpec, LaunchSpec, Value)
from mm1.config import Config, ConfigError, load_config
from mm1.config.tree import build
from mm1.config.validate import check_eval
from mm1.eval.config import DEFAULT_TASKS
from mm1.eval.tasks import load_specs, select_tasks
from mm1.shipped import GRIDS

GRID_DIR = GRIDS  # ablations/ of the repository, shipped with the package


class GridError(ValueError):
    """A mistake in a grid file or in one of its runs' overrides; the message names where."""


@dataclass
class RunSpec:
    name: str  # folder name under <out>/runs/
    labels: dict[str, str]  # column (axis) -> level label, in the grid's column order
    seed: int
    base: str  # absolute recipe path
    overrides: list[str] = field(default_factory=list)  # "dotted.key=value", applied in order


def grid_path(ref: str | Path) -> Path:
    """A grid name (`connectors` -> ablations/connectors.yaml) or a path to a YAML file."""
    path = Path(ref)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise GridError(f"grid file {str(path)!r} not found")
        return path
    named = GRID_DIR / f"{ref}.yaml"
    if not named.is_file():
        known = ", ".join(sorted(p.stem for p in GRID_DIR.glob("*.yaml")))
        raise GridError(f"unknown grid {str(ref)!r}; known grids: {known} (or pass a path to a YAML file)")
    return named


SHALLOW_MERGED = ("set", "eval", "plot", "lr_fit", "launch")


def apply_preset(grid: dict, preset: dict) -> dict:
    """A preset's keys replace the grid's, except: `set`, `eval`, `plot`, `lr_fit` and `launch` merge key by key, and
    `axes` merges per axis (an axis's own keys replace; `axes.NAME: null` drops the axis)."""
    out = copy.deepcopy(grid)
    for key, value in copy.deepcopy(preset).items():
        old = out.get(key)
        if key in SHALLOW_MERGED and isinstance(value, dict) and isinstance(old, dict):
            out[key] = {**old, **value}
        elif key == "axes" and isinstance(value, dict) and isinstance(old, dict):
            for name, spec in value.items():
                if spec is None:
                    old.pop(name, None)
                else:
                    both = isinstance(spec, dict) and isinstance(old.get(name), dict)
                    old[name] = {**old[name], **spec} if both else spec
        else:
            out[key] = value
    return out


def parse_changes(changes: list[str]) -> dict:
    """Command-line `KEY=VALUE` changes of a grid's top-level keys (`seeds=[3,4,5]`, `steps=500`); values are YAML."""
    out = {}
    for change in changes:
        key, sep, text = change.partition("=")
        if not sep or not key or "." in key:
            raise GridError(f"{change!r}: expected KEY=VALUE with a top-level grid key, e.g. seeds=[3,4,5]")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise GridError(f"{change}: the value is not valid YAML: {err}") from None
    return out


def with_launch(data: dict, launch: dict) -> dict:
    """The grid's `launch` with the command line's launcher flags over it (`sbatch` options merge by name)."""
    old = data.get("launch") if isinstance(data.get("launch"), dict) else {}
    new = {**old, **launch}
    if isinstance(old.get("sbatch"), dict) and isinstance(launch.get("sbatch"), dict):
        new["sbatch"] = {**old["sbatch"], **launch["sbatch"]}
    return {**data, "launch": new}


def load_grid(ref: str | Path, preset: str | None = None, changes: list[str] = (),
              launch: dict | None = None) -> GridSpec:
    """The grid file, then its preset, then command-line `changes` (applied as a preset is), then the
    command line's launcher flags (`launch`: LaunchSpec keys)."""
    path = grid_path(ref)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise GridError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise GridError(f"{path}: expected a mapping at the top level")
    where = str(path)
    if preset is not None:
        presets = data.get("presets") or {}
        if preset not in presets:
            raise GridError(f"{path}: presets.{preset}: no such preset; known: {', '.join(presets) or 'none'}")
        data, where = apply_preset(data, presets[preset]), f"{path} (preset {preset})"
    if changes:
        data, where = apply_preset(data, parse_changes(list(changes))), f"{where} with {' '.join(changes)}"
    if launch:
        data = with_launch(data, launch)
    try:
        grid = build(GridSpec, data)
    except ConfigError as err:
        raise GridError(f"{where}: {err}") from None
    base = Path(grid.base).expanduser()
    grid.base = str((base if base.is_absolute() else path.parent / base).resolve())
    check_grid(grid, where)
    return grid


def check_grid(grid: GridSpec, where: str) -> None:
    """Structural checks that need no recipe; each names the grid key path."""
    if not Path(grid.base).is_file():
        raise GridError(f"{where}: base: recipe {grid.base} not found")
    for name, axis in grid.axes.items():
        if (axis.key is None) == (not axis.levels):
            raise GridError(f"{where}: axes.{name}: give either key + values or levels")
        if axis.key is not None and not axis.values:
            raise GridError(f"{where}: axes.{name}.values: at least one value is needed")
    columns = [set(v.labels) for v in grid.variants]
    if columns and any(c != columns[0] for c in columns):
        raise GridError(f"{where}: variants: every variant needs the same labels; got {[sorted(c) for c in columns]}")
    clash = set(columns[0] if columns else ()) & set(grid.axes)
    if clash:
        raise GridError(f"{where}: variants: labels {sorted(clash)} are also axes")
    reserved = [c for c in column_names(grid) if c in RESULT_COLUMNS]
    if reserved:
        raise GridError(f"{where}: {reserved[0]!r} names a column of results.csv; call the axis or label otherwise")
    if not grid.seeds:
        raise GridError(f"{where}: seeds: at least one seed is needed")
    tasks = _check_eval(grid, where)
    check_launch(grid.launch, f"{where}: launch")
    _check_views(grid, where, column_names(grid))
    for i, finding in enumerate(grid.findings):
        _check_finding(grid, finding, f"{where}: findings[{i}]", tasks, grid.findings, i)


def _check_eval(grid: GridSpec, where: str) -> list[str]:
    """The eval settings every run will be scored with, checked now rather than after training; -> the tasks."""
    if grid.eval is None:
        return []
    try:
        check_eval(grid.eval)
        return [spec.name for spec in select_tasks(grid.eval.tasks or DEFAULT_TASKS, load_specs())]
    except (ValueError, FileNotFoundError, ConfigError) as err:
        raise GridError(f"{where}: {err}" if isinstance(err, ConfigError) else f"{where}: eval.tasks: {err}") from None


def check_launch(launch: LaunchSpec, at: str) -> None:
    """The launcher settings, checked before anything is submitted; `at` names the key path."""
    if launch.launcher not in LAUNCHERS:
        raise GridError(f"{at}.launcher: {launch.launcher!r} is not one of {', '.join(LAUNCHERS)}")
    for key in ("gpus_per_run", "nodes", "time", "cpus_per_task"):
        value = getattr(launch, key)
        if value is not None and value < 1:
            raise GridError(f"{at}.{key}: {value} must be >= 1")
    if launch.signal_delay_s < 0:
        raise GridError(f"{at}.signal_delay_s: {launch.signal_delay_s} must be >= 0")
    if launch.signal not in STOP_SIGNALS:
        raise GridError(f"{at}.signal: {launch.signal!r} is not one of {', '.join(STOP_SIGNALS)} "
                        "(the signals mm1 pretrain checkpoints on)")
    if launch.nodes > 1 and launch.launcher != "slurm":
        raise GridError(f"{at}.nodes: {launch.nodes} nodes need the slurm launcher (launcher is {launch.launcher})")
    for key, value in launch.sbatch.items():
        if isinstance(value, (list, dict)) or value is None or value is False:
            raise GridError(f"{at}.sbatch.{key}: {value!r}; an sbatch option takes a number, a string or true")


def column_levels(grid: GridSpec) -> dict[str, list[str]]:
    """Column -> its level labels as the runs carry them (variant labels, then the axes)."""
    variant_columns = list(grid.variants[0].labels) if grid.variants else []
    levels = {c: list(dict.fromkeys(str(v.labels[c]) for v in grid.variants)) for c in variant_columns}
    for name, axis in grid.axes.items():
        levels[name] = [str(v) for v in axis.values] if axis.key is not None else list(axis.levels)
    return levels


def _check_finding(grid: GridSpec, f: FindingSpec, at: str, tasks: list[str], findings: list[FindingSpec],
                   i: int) -> None:
    """Entry i of `findings:` (`at` names it), given the grid's tasks and all its findings."""
    if not f.name:
        raise GridError(f"{at}.name: a name is needed")
    if f.name in [b.name for b in findings[:i]]:
        raise GridError(f"{at}.name: {f.name!r} names another finding too")
    if f.kind not in FINDING_KINDS:
        raise GridError(f"{at}.kind: {f.kind!r} is not one of {', '.join(FINDING_KINDS)}")
    if grid.eval is None:
        raise GridError(f"{at}: the grid has no eval, and a finding compares eval scores")
    levels = {**column_levels(grid), SHOTS_AXIS: [str(s) for s in grid.eval.shots]}
    if f.axis not in levels or (f.kind == "spread" and f.axis == SHOTS_AXIS):
        allowed = [a for a in levels if f.kind == "effect" or a != SHOTS_AXIS]
        raise GridError(f"{at}.axis: {f.axis!r} is not an axis of the grid; allowed: {', '.join(allowed)}")
    if f.kind == "effect":
        _check_effect(f, at, levels[f.axis])
    else:
        _check_spread(f, at, findings)
    if f.task is not None and f.task not in tasks:
        raise GridError(f"{at}.task: {f.task!r} is not a task of eval.tasks; tasks: {', '.join(tasks)}")
    _check_finding_shots(f, at, grid.eval.shots)
    for column, wanted in f.where.items():
        if column not in levels or column in (f.axis, SHOTS_AXIS):
            raise GridError(f"{at}.where.{column}: not one of the other axes ({', '.join(levels)}, less the "
                            f"finding's own and shots)")
        bad = [str(v) for v in wanted if str(v) not in levels[column]] or ([] if wanted else ["(none)"])
        if bad:
            raise GridError(f"{at}.where.{column}: {bad[0]!r} is not a level of {column}; levels: "
                            f"{', '.join(levels[column])}")


def _check_effect(f: FindingSpec, at: str, levels: list[str]) -> None:
    for key, level in (("from", f.from_), ("to", f.to)):
        if level is None or str(level) not in levels:
            got = "missing" if level is None else f"{str(level)!r} is not a level of {f.axis}"
            raise GridError(f"{at}.{key}: {got}; levels: {', '.join(levels)}")
    if str(f.from_) == str(f.to):
        raise GridError(f"{at}.to: the same level as `from` ({f.to!r})")
    if f.expect not in EXPECT:
        raise GridError(f"{at}.expect: {f.expect!r} is not one of {', '.join(EXPECT)}")
    if f.smaller_than:
        raise GridError(f"{at}.smaller_than: only a finding of kind spread takes it")


def _check_spread(f: FindingSpec, at: str, findings: list[FindingSpec]) -> None:
    for key, value in (("from", f.from_), ("to", f.to), ("expect", f.expect)):
        if value is not None:
            raise GridError(f"{at}.{key}: a finding of kind spread takes no {key} (it spans every level)")
    if not f.smaller_than:
        raise GridError(f"{at}.smaller_than: a spread finding names the effect findings it should be below")
    effects = [b.name for b in findings if b.kind == "effect"]
    for j, name in enumerate(f.smaller_than):
        if name not in effects:
            raise GridError(f"{at}.smaller_than[{j}]: {name!r} names no effect finding; "
                            f"effect findings: {', '.join(effects) or 'none'}")


def _check_finding_shots(f: FindingSpec, at: str, shots: list[int]) -> None:
    if f.shots is None:
        return
    if f.axis == SHOTS_AXIS:
        raise GridError(f"{at}.shots: not allowed when the axis is shots (from and to are the shot counts)")
    wanted = f.shots if isinstance(f.shots, list) else [f.shots]
    bad = [s for s in wanted if s not in shots] or ([] if wanted else ["(none)"])
    if bad:
        raise GridError(f"{at}.shots: {bad[0]} is not one of the grid's shot counts {', '.join(map(str, shots))}")


def _check_views(grid: GridSpec, where: str, columns: list[str]) -> None:
    known = set(columns) | {"shots"}
    if grid.plot is not None:
        p = grid.plot
        if p.kind not in PLOT_KINDS:
            raise GridError(f"{where}: plot.kind: {p.kind!r} is not one of {', '.join(PLOT_KINDS)}")
        for key, names in (("panels", [p.panels]), ("hue", [p.hue]), ("groups", p.groups)):
            bad = [n for n in names if n is not None and n not in known]
            if bad:
                raise GridError(f"{where}: plot.{key}: {bad[0]!r} is not an axis; allowed: {', '.join(sorted(known))}")
        if p.kind == "lines" and len(p.groups) != 1:
            raise GridError(f"{where}: plot.groups: a line plot needs exactly one x axis, got {p.groups}")
    if grid.lr_fit is not None:
        if grid.lr_fit.size_axis not in columns:
            raise GridError(f"{where}: lr_fit.size_axis: {grid.lr_fit.size_axis!r} is not an axis")
        if grid.lr_fit.select not in LR_SELECT:
            raise GridError(f"{where}: lr_fit.select: {grid.lr_fit.select!r} is not one of {', '.join(LR_SELECT)}")


def column_names(grid: GridSpec) -> list[str]:
    """The columns that tell runs apart: variant labels first, then the axes (seed excluded)."""
    return (list(grid.variants[0].labels) if grid.variants else []) + list(grid.axes)


def override(key: str, value: Value) -> str:
    """`key=value` with the value written so that the config's YAML parser reads it back unchanged."""
    if isinstance(value, str) and value and yaml.safe_load(value) == value:
        return f"{key}={value}"
    return f"{key}={json.dumps(value)}"


def _levels(grid: GridSpec) -> list[list[tuple[str, str, list[str]]]]:
    """Per axis: [(label, name part, overrides)]."""
    out = []
    for axis in grid.axes.values():
        if axis.key is not None:
            out.append([(str(v), f"{axis.short}{v}", [override(axis.key, v)]) for v in axis.values])
        else:
            out.append([(label, f"{axis.short}{label}", [override(k, v) for k, v in sets.items()])
                        for label, sets in axis.levels.items()])
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "x"


def shared_overrides(grid: GridSpec) -> list[str]:
    """The overrides every run starts with: `set`, then `steps`."""
    shared = [override(k, v) for k, v in grid.set.items()]
    return shared + ([override("train.steps", grid.steps)] if grid.steps is not None else [])


def expand(grid: GridSpec) -> list[RunSpec]:
    """Variants x axis levels x seeds, in that order; names are unique folder names."""
    shared = shared_overrides(grid)
    variants = [([str(v) for v in var.labels.values()], [override(k, v) for k, v in var.set.items()])
                for var in grid.variants] or [([], [])]
    columns = column_names(grid)
    runs = []
    for (var_labels, var_set), combo in itertools.product(variants, itertools.product(*_levels(grid))):
        labels = var_labels + [label for label, _, _ in combo]
        parts = [_slug(x) for x in var_labels] + [_slug(part) for _, part, _ in combo]
        for seed in grid.seeds:
            seeds = [override(k, seed) for k in grid.seed_keys]
            runs.append(RunSpec(name="_".join(parts + [f"s{seed}"]), labels=dict(zip(columns, labels)), seed=seed,
                                base=grid.base, overrides=shared + var_set + [o for *_, os in combo for o in os]
                                + seeds))
    names = [r.name for r in runs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise GridError(f"grid {grid.name}: two runs would share the folder name {dupes[0]!r}; "
                        "give the axes distinct `short` prefixes or the variants distinct labels")
    return runs


def check_runs(runs: list[RunSpec]) -> list[Config]:
    """Load every run's config (no model, no data): the first bad override stops everything, by name."""
    configs = []
    for run in runs:
        try:
            configs.append(load_config(run.base, run.overrides))
        except ConfigError as err:
            raise GridError(f"run {run.name}: {err}") from None
    return configs
