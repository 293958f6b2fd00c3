"""`mm1 bench` (placeholder until the benchmarks land)."""
from __future__ import annotations

import argparse
import sys


def _not_yet(args) -> int:
    print("mm1 bench: not available yet in this version", file=sys.stderr)
    return 2


def register(sub) -> None:
    p = sub.add_parser("bench", help="(not available yet)", description="Not available yet in this version.")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=_not_yet)
