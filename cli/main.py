"""``ccnet``: every command of the toolkit as a subcommand (``ccnet export ...``)."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from .app import run_guarded

# subcommand -> module of this package (each has DESCRIPTION, add_arguments, run).
COMMANDS = {
    "export": "export", "fp16": "fp16", "calibrate": "calibrate", "build": "build",
    "inspect": "inspect", "parity": "parity", "eval": "eval", "predict": "predict",
    "video": "video", "batch": "batch", "train": "train", "synthetic": "synthetic",
    "serve": "serve", "triton-repo": "triton_repo",
}


def build_parser() -> argparse.ArgumentParser:
    import ccnet

    parser = argparse.ArgumentParser(
        prog="ccnet", description="CCNet (mmseg zoo) → ONNX → TensorRT deployment toolkit.")
    parser.add_argument("--version", action="version", version=f"ccnet-deploy {ccnet.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(f".{module_name}", __package__)
        command = sub.add_parser(name, help=module.DESCRIPTION.split(":")[0],
                                 description=module.DESCRIPTION)
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(args.run, args)


if __name__ == "__main__":
    sys.exit(main())
