"""`mm1 ablate --dry-run`: every run with its overrides and an estimated training cost.

The cost comes from `mm1.info` (the model built on the meta device, no memory used):
  sequences       = steps x the global batch: train.global_batch_size when set (the recipe's whole
                    batch over every process), else batch_size x grad_accum (one process)
  token positions = sequences x seq_len
  decoder FLOPs   = token positions x flops_per_token (forward + backward)
  image FLOPs     = at most max_images_per_seq images per sequence x flops_per_image (an upper bound:
                    packed sequences often hold fewer images)
"""
from __future__ import annotations

from mm1.ablate.grid import RunSpec
from mm1.config import Config, dump_yaml
from mm1.info import info


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


def format_plan(runs: list[RunSpec], configs: list[Config], shared: int) -> str:
    """One block per run: name, its own overrides (the first `shared` are common and listed once), cost."""
    cache: dict = {}
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
    lines.append(f"\n{len(runs)} runs, {_si(totals['tokens'])} token positions, ~{_si(totals['flops_decoder'])}FLOP "
                 f"decoder + <= {_si(totals['flops_images_max'])}FLOP images in all (training only; "
                 "evaluation not counted)")
    return "\n".join(lines) + "\n"
