"""OBELICS-style rows (parquet or JSON lines) -> mm1 interleaved shards.

    python tools/obelics_to_shards.py rows/*.parquet -o my_data/interleaved [--image-root DIR]

The same as `mm1 data obelics ...` (mm1/data/convert/cli.py).
"""
import sys

from mm1.data.convert.cli import tool_main


def main(argv: list[str] | None = None) -> int:
    return tool_main("obelics", argv)


if __name__ == "__main__":
    sys.exit(main())
