"""Text JSON lines ({"text": ...}) -> mm1 text shards.

    python tools/text_to_shards.py corpus/*.jsonl -o my_data/text [--field text]

The same as `mm1 data text ...` (mm1/data/convert/cli.py).
"""
import sys

from mm1.data.convert.cli import tool_main


def main(argv: list[str] | None = None) -> int:
    return tool_main("text", argv)


if __name__ == "__main__":
    sys.exit(main())
