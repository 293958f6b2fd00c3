"""The flags and the error handling the converter scripts in tools/ share."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mm1.cli import EXIT_USAGE
from mm1.data.convert.writer import Report, ShardOptions


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


def output_options(args: argparse.Namespace) -> ShardOptions:
    return ShardOptions(out_dir=args.out, prefix=args.prefix, samples_per_shard=args.per_shard,
                        shuffle_buffer=args.shuffle_buffer, seed=args.seed, overwrite=args.overwrite)


def run(prog: str, convert: Callable[[], Report]) -> int:
    """Run a conversion; print its report, or the user's mistake (missing file, bad format) without a traceback."""
    try:
        report = convert()
    except (FileNotFoundError, FileExistsError, ValueError, ImportError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(report.summary())
    return 0
