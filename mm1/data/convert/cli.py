"""`mm1 data coco | obelics | text`: the converters on the command line (tools/*_to_shards.py call the same).

    mm1 data coco captions_train2017.json train2017/ -o my_data/caption [--first-caption]
    mm1 data obelics rows/*.parquet -o my_data/interleaved [--image-root DIR]
    mm1 data text corpus/*.jsonl -o my_data/text [--field text]
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mm1.data.convert.coco import convert_coco
from mm1.data.convert.obelics import convert_obelics
from mm1.data.convert.text import convert_text
from mm1.data.convert.writer import Report, ShardOptions

EXIT_USAGE = 2  # as mm1.cli: a user's mistake, reported in one line


def add_output_args(parser: argparse.ArgumentParser, prefix: str, per_shard: int, shuffle_buffer: int) -> None:
    parser.add_argument("-o", "--out", required=True, help="folder the shards are written to")
    parser.add_argument("--prefix", default=prefix,
                        help="shard names are PREFIX-000000.tar, ... (default: %(default)s)")
    parser.add_argument("--per-shard", type=int, default=per_shard, help="samples per shard (default: %(default)s)")
    parser.add_argument("--shuffle-buffer", type=int, default=shuffle_buffer,
                        help="source items held to shuffle the sample order; 0 keeps the source order "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffle (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace PREFIX-*.tar shards already in the folder")
    parser.add_argument("--max-dropped-images", type=float, default=0.2, metavar="SHARE",
                        help="a larger share of the input's images left out (missing, URLs, undecodable, ...) "
                             "is an error and removes the shards written (default: %(default)s)")


def output_options(args: argparse.Namespace) -> ShardOptions:
    return ShardOptions(out_dir=args.out, prefix=args.prefix, samples_per_shard=args.per_shard,
                        shuffle_buffer=args.shuffle_buffer, seed=args.seed, overwrite=args.overwrite,
                        max_dropped_images=args.max_dropped_images)


def run(prog: str, convert: Callable[[], Report]) -> int:
    """Run a conversion; print its report, or the user's mistake (missing file, bad format, lost images)
    without a traceback."""
    try:
        report = convert()
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(report.summary())
    return 0


def _coco(args) -> int:
    return run("mm1 data coco", lambda: convert_coco(args.captions, args.images, output_options(args),
                                                     per_image=args.first_caption))


def _obelics(args) -> int:
    return run("mm1 data obelics", lambda: convert_obelics(args.inputs, output_options(args),
                                                           image_root=args.image_root))


def _text(args) -> int:
    return run("mm1 data text", lambda: convert_text(args.inputs, output_options(args), field=args.field))


def register(data_sub) -> None:
    """The three converter commands under `mm1 data`."""
    p = data_sub.add_parser("coco", help="COCO-captions JSON + image folder -> caption shards",
                            description="COCO-captions JSON + image folder -> caption shards (img2dataset layout).")
    p.add_argument("captions", help="COCO captions JSON with 'images' and 'annotations'")
    p.add_argument("images", help="folder holding the images' file_name")
    p.add_argument("--first-caption", action="store_true",
                   help="one sample per image with its first caption (default: one sample per caption)")
    add_output_args(p, prefix="caption", per_shard=10_000, shuffle_buffer=10_000_000)
    p.set_defaults(func=_coco)
    p = data_sub.add_parser("obelics", help="OBELICS-style rows (parquet or JSON lines) -> interleaved shards",
                            description="OBELICS-style rows (parquet or JSON lines) -> interleaved shards.")
    p.add_argument("inputs", nargs="+", help="parquet (.parquet) or JSON-lines (.jsonl, .json, .ndjson) files")
    p.add_argument("--image-root", default=None,
                   help="folder relative image paths are taken from (default: each input file's folder)")
    add_output_args(p, prefix="interleaved", per_shard=1_000, shuffle_buffer=1_000)
    p.set_defaults(func=_obelics)
    p = data_sub.add_parser("text", help='{"text": ...} JSON lines -> text shards',
                            description='Text JSON lines ({"text": ...}) -> text shards.')
    p.add_argument("inputs", nargs="+", help="JSON-lines files, one object per line")
    p.add_argument("--field", default="text", help="the object key holding the document (default: %(default)s)")
    add_output_args(p, prefix="text", per_shard=10_000, shuffle_buffer=100_000)
    p.set_defaults(func=_text)


def tool_main(command: str, argv: list[str] | None = None) -> int:
    """A tools/ script: `mm1 data COMMAND` under the script's name."""
    root = argparse.ArgumentParser(prog="mm1 data")
    register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args([command, *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)
