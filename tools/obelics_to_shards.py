"""OBELICS-style rows (parquet or JSON lines) -> mm1 interleaved shards.

    python tools/obelics_to_shards.py rows/*.parquet -o data/obelics [--image-root DIR]
"""
from __future__ import annotations

import argparse
import sys

from mm1.data.convert import convert_obelics
from mm1.data.convert.cli import add_output_args, output_options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="parquet (.parquet) or JSON-lines (.jsonl, .json, .ndjson) files")
    parser.add_argument("--image-root", default=None,
                        help="folder relative image paths are taken from (default: each input file's folder)")
    add_output_args(parser, prefix="interleaved", per_shard=1_000, shuffle_buffer=1_000)
    args = parser.parse_args(argv)
    return run(parser.prog, lambda: convert_obelics(args.inputs, output_options(args), image_root=args.image_root))


if __name__ == "__main__":
    sys.exit(main())
