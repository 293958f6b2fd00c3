"""`mm1 bench data|train RECIPE [overrides]`: benchmarks that print figures (see benchmarks/README.md)."""
from __future__ import annotations

import json
import os
import platform
import sys

from mm1.cli import recipe_args
from mm1.config import load_config

PACKING_TARGET = 0.95  # issue 3: packed share of real tokens
PIPELINE_TARGET = 0.80  # issue 3: full pipeline / raw PIL decode + resize
SPEED_TARGET = 1.0  # issue 4: mm1 at least as fast as HF Llava


def machine() -> dict:
    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as info:
            names = [line.split(":", 1)[1].strip() for line in info if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def _prepare(args):
    from mm1.train.pretrain import prepare_data

    cfg = load_config(args.recipe, args.overrides)
    prepare_data(cfg)
    return cfg


def cmd_data(args) -> int:
    from mm1.bench.data import bench_data, profile_pipeline
    from mm1.tokenizer import build_tokenizer

    cfg = _prepare(args)
    tokenizer = build_tokenizer(cfg.model.tokenizer)
    seq_lens = [int(s) for s in args.seq_lens.split(",")]
    result = bench_data(cfg, tokenizer, seq_lens, args.tokens_per_image, args.max_images, args.rows, args.samples,
                        args.rounds)
    result.update(recipe=args.recipe, overrides=args.overrides, machine=machine())
    print(json.dumps(result) if args.json else format_data(result, cfg.data.mixture, cfg.data.mixture_unit))
    if args.profile:
        print(profile_pipeline(cfg, tokenizer, args.samples, args.profile), file=sys.stderr)
    return 0


def _verdict(value: float, target: float) -> str:
    return "met" if value >= target else f"MISSED by {target - value:.3f}"


def format_data(r: dict, mixture: dict, unit: str) -> str:
    mix = " / ".join(f"{name} {weight:g}" for name, weight in mixture.items())
    lines = [f"packing efficiency (mixture {mix} by {unit}; the first {r['packing'][0]['rows']} rows the packer "
             f"closes):"]
    lines.append(f"  {'seq_len':>7} {'tok/img':>7} {'img/seq':>7} {'packed':>7} {'padded':>7} {'images/row':>14} "
                 f"{'docs':>6}")
    for p in r["packing"]:
        images = f"{p['images_per_row_mean']:.1f} (max {p['images_per_row_max']})"
        lines.append(f"  {p['seq_len']:>7} {p['tokens_per_image']:>7} {p['max_images']:>7} "
                     f"{p['packing_efficiency']:>7.3f} {p['padding_efficiency']:>7.3f} {images:>14} "
                     f"{p['documents']:>6}")
    worst = min(p["packing_efficiency"] for p in r["packing"])
    lines.append(f"  target packed >= {PACKING_TARGET}: {_verdict(worst, PACKING_TARGET)}")
    lines.append(f"loader throughput ({r['workers']} worker, in-process; {r['samples']} samples, {r['images']} "
                 f"images; median of {r['rounds']} alternating rounds):")
    lines.append(f"  full pipeline           {r['samples_per_s']:9.1f} samples/s {r['images_per_s']:9.1f} images/s")
    lines.append(f"  raw PIL decode + resize {r['raw_decode_samples_per_s']:9.1f} samples/s "
                 f"{r['raw_decode_images_per_s']:9.1f} images/s")
    ratio = r["pipeline_vs_raw"]
    lines.append(f"  pipeline / raw          {ratio:9.3f}   target >= {PIPELINE_TARGET}: "
                 f"{_verdict(ratio, PIPELINE_TARGET)}")
    return "\n".join(lines)


def cmd_train(args) -> int:
    from mm1.bench.train import bench_train

    cfg = _prepare(args)
    peak = args.peak_tflops * 1e12 if args.peak_tflops else None
    result = bench_train(cfg, args.steps, args.warmup, args.batches, not args.no_llava, not args.no_memory, peak,
                         not args.no_padded)
    result.update(recipe=args.recipe, overrides=args.overrides, machine=machine())
    print(json.dumps(result) if args.json else format_train(result))
    return 0


def cmd_variants(args) -> int:
    from mm1.bench.train import bench_variants

    cfg = _prepare(args)
    variants = {}
    for spec in args.variant:
        name, _, overrides = spec.partition(":")
        variants[name] = [o for o in overrides.split(",") if o]
    result = bench_variants(cfg, variants, args.steps, args.warmup, args.batches)
    result.update(recipe=args.recipe, overrides=args.overrides, machine=machine())
    print(json.dumps(result) if args.json else format_variants(result))
    return 0


def format_variants(r: dict) -> str:
    b, first = r["batch_shape"], next(iter(r["variants"]))
    lines = [f"device {r['device']} ({r['threads']} threads); batch {b[0]} x {b[1]}; median of {r['steps']} steps "
             f"after {r['warmup']} warm-up, variants alternating",
             f"  {'variant':<12} {'step s':>8} {'tokens/s':>9} {'vs ' + first:>10} {'first loss':>11}  overrides"]
    for name, v in r["variants"].items():
        lines.append(f"  {name:<12} {v['step_s']:8.3f} {v['tokens_per_s']:9.0f} {v['speed_vs_' + first]:9.2f}x "
                     f"{v['first_loss']:11.6f}  {' '.join(v['overrides']) or '-'}")
    return "\n".join(lines)


def cmd_gpu(args) -> int:
    from mm1.bench.gpu import format_gpu, run_gpu_check

    paths = args.paths.split(",") if args.paths else None
    result = run_gpu_check(args.root, args.tiny, args.steps, args.warmup, paths)
    result.update(command="mm1 bench gpu" + (" --tiny" if args.tiny else ""), machine=machine())
    print(json.dumps(result))
    print(format_gpu(result))
    return 0 if result["passed"] else 1


def _row(name: str, m: dict) -> str:
    memory = f"{m['peak_memory_mib']:9.0f}" if "peak_memory_mib" in m else f"{'-':>9}"
    return (f"  {name:<9} {m['step_s']:8.3f} {m['tokens_per_s']:9.0f} {m['images_per_s']:8.1f} "
            f"{m['counted_flops_per_step'] / 1e9:12.2f} {memory}")


def format_train(r: dict) -> str:
    b = r["batch_shape"]
    header = (f"device {r['device']} ({r['threads']} threads, {r['precision']}); batch {b[0]} x {b[1]}, "
              f"{r['tokens_per_step']:.0f} tokens and {r['images_per_step']:.0f} images per step; "
              f"median of {r['steps']} steps after {r['warmup']} warm-up, models alternating")
    lines = [header]
    lines.append(f"  {'model':<9} {'step s':>8} {'tokens/s':>9} {'images/s':>8} {'GFLOP/step':>12} {'peak MiB':>9}")
    lines.append(_row("mm1", r["mm1"]))
    if r.get("llava"):
        ratio, m = r["speedup_mm1_over_llava"], r["match"]
        lines.append(_row("HF Llava", r["llava"]))
        lines.append(f"  mm1 speed / Llava speed: {ratio:.2f}x (median of per-step ratios; fastest steps: "
                     f"{r['speedup_of_fastest_steps']:.2f}x); target >= {SPEED_TARGET}: "
                     f"{_verdict(ratio, SPEED_TARGET)}")
        lines.append(f"  matched: {m['image_tokens_per_image']} image tokens per image; Llava patch "
                     f"{m['llava_patch_size']} ({m['llava_vision_tokens_per_image']} vision tokens/image) vs mm1 "
                     f"patch {m['mm1_patch_size']} ({m['mm1_vision_tokens_per_image']})")
        if r.get("samples"):
            p = r["samples"]
            lines.append(f"  samples/s: mm1 packed {p['mm1_packed_samples_per_s']:.1f} (rows "
                         f"{p['batch_shapes']['mm1']}) vs Llava one padded sample per row "
                         f"{p['llava_padded_samples_per_s']:.1f} (rows {p['batch_shapes']['llava']}): "
                         f"{p['ratio']:.2f}x")
    else:
        lines.append(f"  HF Llava not run: {r['llava_skipped']}")
    m, peak = r["mm1"], r["peak_flops"]
    mfu = "n/a (unknown peak: pass --peak-tflops)" if m["mfu"] is None else f"{m['mfu']:.1%}"
    peak_text = "unknown" if peak is None else f"{peak / 1e9:.1f} GFLOP/s"
    lines.append(f"  mm1 model FLOPs: {r['model_flops_per_token']:.3g} per token ({r['decoder_flops_per_token']:.3g} "
                 f"decoder + images); {m['model_flops_per_s'] / 1e9:.2f} GFLOP/s; MFU {mfu} of {peak_text} "
                 f"({r['peak_source']})")
    lines.append("  GFLOP/step = FLOPs torch's flop counter sees in one step (padding and full attention included)")
    return "\n".join(lines)


def _recipe_args(p) -> None:
    recipe_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks that print figures (data loading, training step)",
                       description="Benchmarks that print figures; see benchmarks/README.md.")
    bench = p.add_subparsers(dest="bench_command", required=True)
    d = bench.add_parser("data", help="packing efficiency and loader throughput",
                         description="Packing efficiency at MM1's layout and the recipe's own, and the loader's "
                                     "throughput next to raw PIL decode + resize of the same images.")
    _recipe_args(d)
    d.add_argument("--samples", type=int, default=2000, help="raw samples per throughput round")
    d.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    d.add_argument("--rows", type=int, default=64, help="closed rows per packing measurement")
    d.add_argument("--seq-lens", default="4096,2048", help="comma-separated seq_len values at MM1's layout")
    d.add_argument("--tokens-per-image", type=int, default=144, help="image tokens at MM1's layout")
    d.add_argument("--max-images", type=int, default=16, help="images per sequence at MM1's layout")
    d.add_argument("--profile", type=int, default=0, metavar="N", help="also print cProfile's top N functions")
    d.set_defaults(func=cmd_data)
    t = bench.add_parser("train", help="training step speed, MFU and peak memory, mm1 vs HF Llava",
                         description="mm1's training step next to transformers' LlavaForConditionalGeneration "
                                     "of the same sizes, alternating, in one run.")
    _recipe_args(t)
    t.add_argument("--steps", type=int, default=10, help="timed steps per model")
    t.add_argument("--warmup", type=int, default=3, help="untimed steps per model first")
    t.add_argument("--batches", type=int, default=4, help="distinct real batches, cycled")
    t.add_argument("--no-llava", action="store_true", help="time mm1 alone")
    t.add_argument("--no-memory", action="store_true", help="skip the peak-memory runs (fresh processes)")
    t.add_argument("--no-padded", action="store_true",
                   help="skip samples/s of mm1 packed vs Llava with one padded sample per row")
    t.add_argument("--peak-tflops", type=float, default=None, help="device peak, for a GPU missing from the table")
    t.set_defaults(func=cmd_train)
    v = bench.add_parser("variants", help="training step speed of variants of one recipe, alternating",
                         description="mm1's training step under each --variant (dotted overrides), alternating "
                                     "on the same batches; speeds relative to the first variant.")
    _recipe_args(v)
    v.add_argument("--variant", action="append", required=True, metavar="NAME:key=value[,key=value]",
                   help="a named set of overrides (empty for the recipe as is); repeat; the first is the baseline")
    v.add_argument("--steps", type=int, default=10, help="timed steps per variant")
    v.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    v.add_argument("--batches", type=int, default=4, help="distinct real batches, cycled")
    v.set_defaults(func=cmd_variants)
    g = bench.add_parser("gpu", help="the prepared one-GPU check: fast paths' correctness, throughput, memory",
                         description="Correctness of the fast paths (precision, attention paths, MoE experts), "
                                     "then tokens/s, MFU and peak memory of ablation_base per attention path and "
                                     "of mm1_3b; one JSON line and a table. See benchmarks/README.md.")
    g.add_argument("--root", default=None, help="where the embedded corpus is (written on first use; default: "
                                                "the tiny recipe's, in the user cache)")
    g.add_argument("--tiny", action="store_true", help="the tiny recipe in place of the big ones, no compile (CPU)")
    g.add_argument("--steps", type=int, default=3, help="timed steps per ablation_base run")
    g.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation)")
    g.add_argument("--paths", default=None, help="comma-separated attention paths of the ablation_base runs "
                                                 "(default: dense and every path that trains on the device)")
    g.set_defaults(func=cmd_gpu)
