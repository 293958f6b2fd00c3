"""Text JSON lines ({"text": ...}) -> mm1 text shards.

    python tools/text_to_shards.py corpus/*.jsonl -o data/text [--field text]
"""
from __future__ import annotations

import argparse
import sys

from mm1.data.convert import convert_text
from mm1.data.convert.cli import add_output_args, output_options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="JSON-lines files, one object per line")
    parser.add_argument("--field", default="text", help="the object key holding the document (default: %(default)s)")
    add_output_args(parser, prefix="text", per_shard=10_000, shuffle_buffer=100_000)
    args = parser.parse_args(argv)
    return run(parser.prog, lambda: convert_text(args.inputs, output_options(args), field=args.field))


if __name__ == "__main__":
    sys.exit(main())
