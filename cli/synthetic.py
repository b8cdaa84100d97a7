"""ccnet synthetic: write procedural street scenes with labels (folder dataset layout)."""
from __future__ import annotations

import argparse

from .app import entry_point
from .args import positive_int

DESCRIPTION = "Write synthetic street scenes with pixel labels (images/ + labels/)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ccnet.synthetic import DEFAULT_SIZE

    parser.add_argument("--out", required=True, help="dataset root (images/ and labels/ inside)")
    parser.add_argument("--num", type=positive_int, required=True, help="number of scenes")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first scene")
    parser.add_argument("--size", type=int, nargs=2, default=DEFAULT_SIZE, metavar=("H", "W"))
    parser.add_argument("--ignore-border", type=int, default=0,
                        help="leave this many pixels around small objects unlabelled (255)")


def run(args: argparse.Namespace) -> int:
    from ccnet.synthetic import write_dataset

    write_dataset(args.out, args.num, args.seed, tuple(args.size), args.ignore_border)
    print(f"wrote {args.num} scenes (seeds {args.seed}..{args.seed + args.num - 1}) to {args.out}")
    return 0


main = entry_point("ccnet-synthetic", DESCRIPTION, add_arguments, run)
