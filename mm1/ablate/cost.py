"""`mm1 ablate --dry-run`: every run with its overrides and an estimated training cost.

The cost comes from `mm1.info` (the model built on the meta device, no memory used):
  sequences       = steps x the global batch: train.global_batch_size when set (the recipe's whole
                    batch over every process), else batch_size x grad_accum (one process)
  token positions = sequences x seq_len
  decoder FLOPs   = token positions x flops_per_token (forward + backward)
  image FLOPs     = at most max_images_per_seq images per sequence x flops_per_image (an upper bound:
                    packed sequences often hold fewer images)
Placement, from the grid's `launch`: a run holds 1 GPU (local), gpus_per_run (torchrun) or
nodes x gpus_per_run (slurm). Its wall time at a stated MFU on a GPU model of the datasheet table
(mm1.train.mfu.GPU_PEAKS):
  hours           = (decoder FLOPs + image FLOPs) / (GPUs x peak x MFU) / 3600
  GPU-hours       = hours x GPUs, summed over the runs (an upper bound through the image term)
"""
from __future__ import annotations

from mm1.ablate.grid import GridError, RunSpec
from mm1.ablate.spec import LaunchSpec
from mm1.config import Config, dump_yaml
from mm1.info import info
from mm1.train.mfu import GPU_PEAKS, gpu_peak_flops


def global_batch(cfg: Config) -> int:
    """Sequences per optimizer step over every process (one process when the recipe does not say)."""
    t = cfg.train
    return t.global_batch_size if t.global_batch_size is not None else t.batch_size * t.grad_accum


def run_cost(cfg: Config, cache: dict) -> dict:
    key = dump_yaml(cfg.model) + str(cfg.data.seq_len)  # seeds share a model: size it once
    if key not in cache:
        cache[key] = info(cfg)
    i = cache[key]
    t = cfg.train
    sequences = t.steps * global_batch(cfg)
    tokens = sequences * cfg.data.seq_len
    return {
        "params": i["params"]["total"],
        "decoder_active": i["params"]["decoder_active"],
        "decoder_non_embedding": i["params"]["decoder_non_embedding"],
        "steps": t.steps,
        "tokens": tokens,
        "flops_decoder": tokens * i["flops_per_token"],
        "flops_images_max": sequences * cfg.data.max_images_per_seq * i["flops_per_image"],
    }


def _si(n: float) -> str:
    for unit, scale in (("Z", 1e21), ("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.3g}"


def gpus_per_run(launch: LaunchSpec) -> int:
    if launch.launcher == "local":
        return 1
    if launch.launcher == "slurm":
        return launch.nodes * launch.gpus_per_run if launch.request_gpus else 0
    return launch.gpus_per_run


def _hours(hours: float) -> str:
    if hours < 1 / 60:
        return f"{hours * 3600:.2g} s"
    return f"{hours * 60:.2g} min" if hours < 1 else f"{hours:.3g} h"


def _placement(launch: LaunchSpec, flops: float, peak: float, mfu: float) -> tuple[str, float]:
    """(the line of one run's GPUs and wall time, its GPU-hours)."""
    gpus = gpus_per_run(launch)
    if not gpus:
        return f"    {launch.nodes} node(s) x {launch.gpus_per_run} CPU process(es), no GPU", 0.0
    hours = flops / (gpus * peak * mfu) / 3600
    where = f"{launch.nodes} node(s) x {launch.gpus_per_run}" if launch.launcher == "slurm" else f"{gpus}"
    return f"    {where} GPU(s), ~{_hours(hours)} wall time, {hours * gpus:.3g} GPU-hours", hours * gpus


def format_plan(runs: list[RunSpec], configs: list[Config], shared: int, launch: LaunchSpec = LaunchSpec(),
                mfu: float = 0.4, gpu: str = "H100") -> str:
    """One block per run: name, its own overrides (the first `shared` are common and listed once), cost,
    GPUs held and wall time at `mfu` of a `gpu`'s peak; then the sweep's totals."""
    peak = gpu_peak_flops(gpu)
    if peak is None:
        raise GridError(f"--gpu: {gpu!r} is not in the peak table; known: {', '.join(m for m, _, _ in GPU_PEAKS)}")
    if not 0 < mfu <= 1:
        raise GridError(f"--mfu: {mfu} must be in (0, 1]")
    cache: dict = {}
    gpu_hours = 0.0
    lines = []
    if runs and shared:
        lines += ["overrides shared by every run:", *(f"  {o}" for o in runs[0].overrides[:shared]), ""]
    totals = {"flops_decoder": 0, "flops_images_max": 0, "tokens": 0}
    for run, cfg in zip(runs, configs):
        c = run_cost(cfg, cache)
        for key in totals:
            totals[key] += c[key]
        lines.append(f"{run.name}  [{', '.join(f'{k}={v}' for k, v in run.labels.items())}, seed={run.seed}]")
        lines += [f"    {o}" for o in run.overrides[shared:]]
        lines.append(f"    params {_si(c['params'])} (decoder active {_si(c['decoder_active'])}, decoder non-embedding "
                     f"{_si(c['decoder_non_embedding'])}), "
                     f"{c['steps']} steps x {_si(c['tokens'] / c['steps'])} token positions = {_si(c['tokens'])}, "
                     f"~{_si(c['flops_decoder'])}FLOP decoder + <= {_si(c['flops_images_max'])}FLOP images")
        line, hours = _placement(launch, c["flops_decoder"] + c["flops_images_max"], peak, mfu)
        lines.append(line)
        gpu_hours += hours
    lines.append(f"\n{len(runs)} runs, {_si(totals['tokens'])} token positions, ~{_si(totals['flops_decoder'])}FLOP "
                 f"decoder + <= {_si(totals['flops_images_max'])}FLOP images in all (training only; "
                 "evaluation not counted)")
    lines.append(f"launcher {launch.launcher}: {gpu_hours:.4g} GPU-hours in all at {mfu:.0%} MFU of the {gpu}'s "
                 f"dense bf16 peak ({peak / 1e12:.0f} TFLOP/s; image FLOPs at their upper bound)")
    return "\n".join(lines) + "\n"
