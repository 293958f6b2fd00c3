"""Run a grid's runs, each in `<out>/runs/<name>/`, resumably, through the grid's launcher.

    plan = Plan(grid, runs, configs, preset)   # from mm1.ablate.grid
    outcome = run_sweep(plan, out, jobs=2)     # grid.launch.launcher: local, torchrun or slurm

Re-running the same sweep skips finished runs (train.done and eval.done), resumes
unfinished ones from their latest checkpoint (`--resume auto`) and retries failed
ones. A failed run is recorded (error.json, and a row in results.csv) while the
others go on. A run folder written for a different config is an error, named,
before anything runs. SIGINT / SIGTERM stop a local sweep cleanly: every running
pretrain writes a checkpoint and exits; the next sweep continues from there.
Slurm jobs outlive the sweep that submitted them; the next sweep watches them.
With `reuse` folders (`mm1 ablate --reuse DIR`), a run that one of them has
already trained with the same resolved config is copied in instead of trained
again, with its evaluation when the eval settings are the same too (the
16-token, 64 px runs of the tokens grid are the resolution grid's).
"""
from __future__ import annotations

import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from mm1.ablate.execute import EVAL_DONE, TRAIN_DONE, is_finished
from mm1.ablate.jobs import SweepLocked, sweep_lock
from mm1.ablate.grid import RunSpec
from mm1.ablate.spec import GridSpec
from mm1.config import Config, ConfigError, dump_yaml, to_dict
from mm1.config.tree import build
from mm1.layout import ModelDir, RunDir

PLAN = "plan.json"


class SweepError(RuntimeError):
    """The sweep cannot start (a run folder from another config, another sweep in the same folder)."""


@dataclass
class Plan:
    grid: GridSpec
    runs: list[RunSpec]
    configs: list[Config]
    preset: Optional[str] = None


@dataclass
class SweepOutcome:
    skipped: list[str]  # finished before this sweep
    finished: list[str]
    failed: dict[str, dict]  # name -> error record
    stopped: bool = False  # some runs were stopped before they finished (they resume next time)
    submitted: list[str] = field(default_factory=list)  # slurm: runs whose jobs were left queued or running

    def record(self, name: str, error: Optional[dict], log) -> None:
        if error is None:
            self.finished.append(name)
            log(f"mm1 ablate: done  {name}")
        else:
            self.failed[name] = error
            log(f"mm1 ablate: FAILED {name} ({error['stage']}): {error['error']}")


def run_folder(out: Path, run: RunSpec) -> Path:
    return out / "runs" / run.name


def _first_difference(old, new, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    return f"{path}: {old!r} there, {new!r} now"


def as_current_schema(recipe: dict) -> dict:
    """A resolved recipe as the current schema reads it: a key added since it was written takes its default,
    which keeps the behaviour of before (e.g. data.synth.gallery_docs 0), so a run folder written before that
    key existed still holds the same run. A recipe the schema cannot read is compared as it is."""
    try:
        return to_dict(build(Config, recipe))
    except ConfigError:
        return recipe


def run_record(run: RunSpec, grid: GridSpec) -> dict:
    return {**dataclasses.asdict(run), "eval": dataclasses.asdict(grid.eval) if grid.eval else None}


def prepare_folder(out: Path, run: RunSpec, cfg: Config, grid: GridSpec) -> Path:
    """Write recipe.yaml and run.json, or check that an existing folder holds the same run."""
    import yaml

    folder = run_folder(out, run)
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, dir=str(folder)))
    recipe, record = dump_yaml(cfg), run_record(run, grid)
    if (folder / "recipe.yaml").is_file():
        old_cfg = as_current_schema(yaml.safe_load((folder / "recipe.yaml").read_text()))
        old_rec = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
        new_cfg = as_current_schema(yaml.safe_load(recipe))
        if old_cfg != new_cfg or old_rec.get("eval") != record["eval"]:
            diff = _first_difference({"config": old_cfg, "eval": old_rec.get("eval")},
                                     {"config": new_cfg, "eval": record["eval"]})
            raise SweepError(f"{folder} holds a different run ({diff}); use another --out or delete that folder")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "recipe.yaml").write_text(recipe)
    (folder / "run.json").write_text(json.dumps(record, indent=2) + "\n")
    return folder


REUSED = "reused.json"  # in a run folder copied from another sweep's: {"from": that run folder, "eval": copied?}
NOT_COPIED = ("recipe.yaml", "run.json", "job.json", "error.json", "slurm", "checkpoints")  # the run's own, or
# not needed once it finished (the intermediate checkpoints)
EVAL_PARTS = ("eval", "eval.log", EVAL_DONE)  # copied only when the eval settings are the same too


def _run_identity(folder: Path) -> tuple[dict, Optional[dict]] | None:
    """(resolved config without output.dir, eval settings) of a run folder; None when it has none."""
    import yaml

    if not (folder / "recipe.yaml").is_file() or not (folder / "run.json").is_file():
        return None
    cfg = as_current_schema(yaml.safe_load((folder / "recipe.yaml").read_text()))
    cfg.get("output", {}).pop("dir", None)
    return cfg, json.loads((folder / "run.json").read_text()).get("eval")


def _trained_runs(sources: list[Path]) -> list[tuple[Path, tuple]]:
    """(folder, identity) of every trained run in the `sources` sweep folders, read once per sweep."""
    found = []
    for source in sources:
        for other in sorted((Path(source) / "runs").glob("*")):
            identity = _run_identity(other)
            if identity is not None and (other / TRAIN_DONE).is_file():
                found.append((other, identity))
    return found


def has_model(folder: Path) -> bool:
    """Whether a run folder holds its final model (a sweep shared without weights keeps only its records)."""
    final = ModelDir(RunDir(folder).final)
    return final.weights.is_file() or final.sharded


def find_trained_run(trained: list[tuple[Path, tuple]], folder: Path) -> tuple[Optional[Path], bool]:
    """(a run of `trained` with the same config as `folder`, whether its evaluation can be copied too: the
    same eval settings, finished); a fully reusable run is preferred. A run without its model is reusable only
    with its evaluation (nothing could evaluate it here)."""
    want = _run_identity(folder)
    found = [(other, have[1] == want[1] and (other / EVAL_DONE).is_file()) for other, have in trained
             if have[0] == want[0] and other.resolve() != folder.resolve()]
    found = [(other, with_eval) for other, with_eval in found if with_eval or has_model(other)]
    found.sort(key=lambda f: not f[1])
    return found[0] if found else (None, False)


def copy_trained_run(source: Path, folder: Path, with_eval: bool) -> None:
    """Copy a trained run's outputs into `folder` (keeping its recipe.yaml and run.json; its evaluation only
    `with_eval`), done markers last, so that an interrupted copy is an unfinished run. The source is only read."""
    skip = NOT_COPIED + (() if with_eval else EVAL_PARTS)
    markers = [m for m in (TRAIN_DONE, EVAL_DONE) if m not in skip]
    for item in sorted(source.iterdir()):
        if item.name in skip or item.name in markers or item.name.endswith(".failure.json"):
            continue
        if item.is_dir():
            shutil.copytree(item, folder / item.name, dirs_exist_ok=True)
        else:
            shutil.copy2(item, folder / item.name)
    (folder / REUSED).write_text(json.dumps({"from": str(source.resolve()), "eval": with_eval}) + "\n")
    for name in markers:
        if (source / name).is_file():
            shutil.copy2(source / name, folder / name)


def reuse_trained(sources: list[Path], folders: list[Path], log) -> None:
    """Copy into every untrained run folder the same run trained in one of `sources`."""
    trained = _trained_runs(sources) if sources else []
    for folder in folders:
        if (folder / TRAIN_DONE).is_file():
            continue
        other, with_eval = find_trained_run(trained, folder)
        if other is not None:
            copy_trained_run(other, folder, with_eval)
            what = "trained and evaluated" if with_eval else "trained; any evaluation is done here"
            log(f"mm1 ablate: reused {folder.name}: the same run, {what}, in {other}")


def write_plan(out: Path, plan: Plan) -> None:
    grid = {k: v for k, v in dataclasses.asdict(plan.grid).items() if k != "presets"}
    doc = {"grid": grid, "preset": plan.preset, "runs": [dataclasses.asdict(r) for r in plan.runs]}
    (out / PLAN).write_text(json.dumps(doc, indent=2) + "\n")


def run_sweep(plan: Plan, out: Path, jobs: Optional[int] = None, log: Callable[[str], None] = print,
              wait: bool = True, reuse: list[Path] = ()) -> SweepOutcome:
    """Every unfinished run of `plan` in `out`, started by the grid's launcher (plan.grid.launch):
    `jobs` at a time for local and torchrun; for slurm, one job each (`wait`: until they end). A run that
    a sweep folder in `reuse` has trained is copied from there instead."""
    from mm1.ablate.launchers import LaunchError, check_launch_args, launch_runs

    try:
        check_launch_args(plan.grid, jobs, wait)
    except LaunchError as err:
        raise SweepError(str(err)) from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    launcher = plan.grid.launch.launcher
    try:
        with sweep_lock(out, launcher):
            folders = [prepare_folder(out, r, c, plan.grid) for r, c in zip(plan.runs, plan.configs)]
            write_plan(out, plan)
            reuse_trained(list(reuse), folders, log)
            done = [is_finished(f, plan.grid) for f in folders]
            todo = [(r, f) for r, f, d in zip(plan.runs, folders, done) if not d]
            outcome = SweepOutcome(skipped=[r.name for r, d in zip(plan.runs, done) if d], finished=[], failed={})
            log(f"mm1 ablate: {len(plan.runs)} runs, {len(outcome.skipped)} already finished, {len(todo)} to run, "
                f"launcher {launcher}; folder {out}")
            launch_runs(plan.grid, todo, jobs, outcome, log, wait)
    except (SweepLocked, LaunchError) as err:
        raise SweepError(str(err)) from None
    return outcome
