"""COCO-captions JSON + image folder -> mm1 caption shards (img2dataset layout).

    python tools/coco_to_shards.py captions_train2017.json train2017/ -o my_data/caption [--first-caption]

The same as `mm1 data coco ...` (mm1/data/convert/cli.py).
"""
import sys

from mm1.data.convert.cli import tool_main


def main(argv: list[str] | None = None) -> int:
    return tool_main("coco", argv)


if __name__ == "__main__":
    sys.exit(main())
