"""The `mm1` command line: thin wrappers over the library."""
from __future__ import annotations

import argparse
import json
import sys

from mm1 import failure
from mm1.config import ConfigError, load_config
from mm1.errors import CheckpointError

EXIT_USAGE = 2  # a user's mistake (bad config, missing file, unknown name), reported in one line


def recipe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="recipe YAML, e.g. recipes/tiny.yaml")
    p.add_argument("overrides", nargs="*", metavar="key.path=value",
                   help="dotted overrides applied to the recipe, e.g. optim.lr=3e-4 model.connector.kind=avg_pool")


def cmd_pretrain(args) -> int:
    from mm1.data.loader import SkipRateExceeded
    from mm1.train.pretrain import pretrain
    from mm1.train.trainer import NumericalFault, StoppedBySignal

    try:
        pretrain(load_config(args.recipe, args.overrides), resume=args.resume)
    except StoppedBySignal as stop:  # a scheduler must not take an interrupted run for a finished one
        return 128 + stop.signum
    except (SkipRateExceeded, NumericalFault) as err:  # the run stopped itself: its message says why
        failure.record(err)
        print(f"mm1 pretrain: stopped: {err}", file=sys.stderr)
        return 1
    return 0


def cmd_info(args) -> int:
    from mm1.info import format_info, info

    if args.gpu_memory is not None and not args.gpu_memory > 0:
        raise ConfigError(f"--gpu-memory: {args.gpu_memory} GiB; expected a number > 0")
    result = info(load_config(args.recipe, args.overrides), gpus=args.gpus, gpu_memory=args.gpu_memory)
    print(json.dumps(result) if args.json else format_info(result))
    return 0


def synth_config(seed: int, scale: float, overrides: list[str]):
    """The corpus settings of `mm1 data synth`: the defaults, `data.synth.KEY=VALUE` overrides, then `scale`."""
    from mm1.config.schema import Config
    from mm1.config.tree import apply_override, build
    from mm1.config.validate import check_fields

    cfg = build(Config, {"data": {"synth": {"seed": seed}}})
    for item in overrides:
        if not item.split("=", 1)[0].strip().startswith("data.synth."):
            raise ConfigError(f"{item}: only data.synth keys set the corpus, e.g. data.synth.gallery_docs=0.3")
        apply_override(cfg, item)
    check_fields(cfg.data.synth, "data.synth")
    synth = cfg.data.synth
    if scale != 1.0:
        for key in ("caption_samples", "interleaved_samples", "text_samples", "eval_samples"):
            setattr(synth, key, max(1, int(getattr(synth, key) * scale)))
    return synth


def cmd_data_synth(args) -> int:
    from mm1.data.synth import write_corpus

    manifest = write_corpus(args.out, synth_config(args.seed, args.scale, args.overrides))
    print(json.dumps({k: v for k, v in manifest.items() if not isinstance(v, (list, dict))}))
    return 0


def cmd_export(args) -> int:
    from mm1.train.export import export

    out = export(args.run, args.out, args.format)
    if args.format == "hf":
        from mm1.hf.export import load_hint

        print(f"mm1: exported to {out} as {load_hint(out)}")
    else:
        print(f"mm1: exported to {out} (load with mm1.load({str(out)!r}))")
    return 0


def cmd_generate(args) -> int:
    import torch

    from mm1.eval.evaluate import checkpoint_dir
    from mm1.inference import check_inputs
    from mm1.train.model_folder import load_model_folder
    from mm1.train.runtime import pick_device

    check_inputs(args.prompt, args.image)  # before the model loads
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model_folder(checkpoint_dir(args.checkpoint), device=pick_device(args.device, "--device"))
    stop = args.stop if args.stop is not None else ["<|endofchunk|>"]
    print(loaded.generate(args.prompt, args.image, args.max_new_tokens, stop))
    return 0


def cmd_plot(args) -> int:
    from mm1.train.plot import plot_runs

    print(f"mm1: plotted {len(args.runs)} run(s) to {plot_runs(args.runs, args.out, args.x)}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="mm1", description="MM1-style multimodal LLM pre-training and ablations.")
    sub = root.add_subparsers(dest="command", required=True)

    p = sub.add_parser("pretrain", help="train a model from a recipe",
                       description="Train from a recipe YAML; writes config, metrics.jsonl and checkpoint/ to output.dir.")
    recipe_args(p)
    p.add_argument("--resume", metavar="auto|PATH", default=None,
                   help="continue from the latest complete checkpoint of the run folder (auto) or a checkpoint path")
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("info", help="parameter counts and image-token budget of a recipe (no memory used)",
                       description="Build the recipe's model on the meta device and print its size.")
    recipe_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--gpus", type=int, default=None,
                   help="GPUs for the memory-per-GPU estimate (default: the recipe's parallel.gpus, else 8)")
    p.add_argument("--gpu-memory", type=float, metavar="GIB",
                   help="also print the smallest GPU count whose model states fit in GIB per GPU")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("data", help="data tools", description="Data tools.")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    s = data_sub.add_parser("synth", help="write the embedded synthetic corpus and eval sets",
                            description="Write the procedurally generated corpus (webdataset shards) and eval sets.")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--scale", type=float, default=1.0, help="multiply every sample count by this")
    s.add_argument("overrides", nargs="*", metavar="data.synth.KEY=VALUE",
                   help="corpus settings as in a recipe, e.g. data.synth.gallery_docs=0.3 (the data_mixture tiny "
                        "preset's corpus) or data.synth.corner_scenes=0.3")
    s.set_defaults(func=cmd_data_synth, usage_errors=(FileExistsError,))
    from mm1.data.convert.cli import register as register_converters

    register_converters(data_sub)

    p = sub.add_parser("export", help="write a self-contained model folder from a run",
                       description="Copy a run's final (or latest) model into a folder that mm1.load and mm1 eval "
                                   "read (--format mm1), or that transformers' Auto classes load (--format hf).")
    p.add_argument("run", help="run folder (output.dir) or checkpoint folder")
    p.add_argument("--out", required=True, help="destination folder (must be empty or absent)")
    p.add_argument("--format", default="mm1", choices=("mm1", "hf"),
                   help="mm1 (default): mm1's own folder; hf: a Hugging Face folder (the mlp connector as "
                        "LlavaForConditionalGeneration, the others with their model code, trust_remote_code)")
    p.set_defaults(func=cmd_export, usage_errors=(FileNotFoundError, FileExistsError, ValueError))

    p = sub.add_parser("generate", help="greedy text from a checkpoint, a prompt and images",
                       description='Continue a prompt: text with one "<image>" per --image, in order, and '
                                   '"<|endofchunk|>" after the text of each demonstration (few-shot). '
                                   'Prints the generated text.')
    p.add_argument("checkpoint", help="checkpoint folder (or its run folder)")
    p.add_argument("--prompt", required=True, help='e.g. "<image>a photo of"; without "<image>", the images go first')
    p.add_argument("--image", action="append", default=[], help="an image file; repeat for several, in prompt order")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--stop", action="append", help='a stop string; repeat for several (default "<|endofchunk|>")')
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.set_defaults(func=cmd_generate, usage_errors=(FileNotFoundError, ValueError))

    p = sub.add_parser("plot", help="draw runs' loss (and eval) curves to a PNG",
                       description="Draw the training loss of one or more runs, and their evaluations during "
                                   "training (eval/average/<k>shot), from metrics.jsonl to a PNG.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (output.dir)")
    p.add_argument("--out", default="curves.png", help="PNG to write (default: curves.png; replaces only a PNG)")
    p.add_argument("--x", choices=("step", "tokens", "time"), default="step",
                   help="x axis: optimizer step, tokens seen or training wall time")
    p.set_defaults(func=cmd_plot, usage_errors=(FileNotFoundError, FileExistsError, ValueError))

    from mm1.eval.command import register as register_eval

    register_eval(sub)
    from mm1.ablate.command import register as register_ablate
    from mm1.bench.command import register as register_bench

    register_ablate(sub)
    register_bench(sub)
    return root


def main(argv: list[str] | None = None) -> int:
    root = parser()
    args, extra = root.parse_known_args(argv)
    # overrides may come after options (`mm1 info R --json a.b=1`): argparse leaves them over
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides += extra
    elif extra:
        root.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except ConfigError as err:
        failure.record(err)
        print(f"mm1: config error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except CheckpointError as err:  # refused, incomplete, or holding another run: any command that reads one
        failure.record(err)
        print(f"mm1: checkpoint error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except getattr(args, "usage_errors", ()) as err:  # the mistakes a command reports without a traceback
        failure.record(err)
        print(f"mm1 {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except BaseException as err:
        failure.record(err)
        raise


if __name__ == "__main__":
    sys.exit(main())
