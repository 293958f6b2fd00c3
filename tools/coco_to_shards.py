"""COCO-captions JSON + image folder -> mm1 caption shards (img2dataset layout).

    python tools/coco_to_shards.py captions_train2017.json train2017/ -o data/coco [--first-caption]
"""
from __future__ import annotations

import argparse
import sys

from mm1.data.convert import convert_coco
from mm1.data.convert.cli import add_output_args, output_options, run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("captions", help="COCO captions JSON with 'images' and 'annotations'")
    parser.add_argument("images", help="folder holding the images' file_name")
    parser.add_argument("--first-caption", action="store_true",
                        help="one sample per image with its first caption (default: one sample per caption)")
    add_output_args(parser, prefix="caption", per_shard=10_000, shuffle_buffer=10_000_000)
    args = parser.parse_args(argv)
    return run(parser.prog, lambda: convert_coco(args.captions, args.images, output_options(args),
                                                 per_image=args.first_caption))


if __name__ == "__main__":
    sys.exit(main())
