"""``ccnet``: every command of the toolkit as a subcommand (``ccnet export ...``)."""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from ccnet.errors import CCNetError

from .app import Parser, add_common, run_guarded

# subcommand -> module of this package (each has DESCRIPTION, add_arguments, run).
COMMANDS = {
    "export": "export", "fp16": "fp16", "calibrate": "calibrate", "build": "build",
    "inspect": "inspect", "parity": "parity", "eval": "eval", "predict": "predict",
    "video": "video", "batch": "batch", "train": "train", "synthetic": "synthetic",
    "serve": "serve", "triton-repo": "triton_repo", "zoo": "zoo", "deploy": "deploy",
    "bench": "bench",
}
# Missing module -> the install profile that brings it (the core install is torch-free).
EXTRA_FOR_MODULE = {"torch": "export", "onnx": "export", "onnxscript": "export",
                    "onnxconverter_common": "export", "matplotlib": "export",
                    "onnxruntime": "ort", "tensorrt": "trt"}


def _missing_message(name: str, error: ImportError) -> str:
    missing = (error.name or "").split(".")[0] or str(error)
    extra = EXTRA_FOR_MODULE.get(missing)
    hint = f"pip install 'ccnet-deploy[{extra}]'" if extra else f"install {missing}"
    return f"ccnet {name} needs {missing}, which is not installed: {hint}"


def _add_command(sub, name: str, module) -> None:
    help_text = module.DESCRIPTION.split(":")[0]
    try:
        module.add_arguments(Parser())  # a dry run: does this install have what the flags need?
    except ImportError as e:
        message = _missing_message(name, e)
        command = sub.add_parser(name, help=help_text,
                                 description=f"{module.DESCRIPTION} ({message})")

        def unavailable(args: argparse.Namespace) -> int:
            raise CCNetError(message)

        command.set_defaults(run=unavailable, unavailable=True)
        return
    command = sub.add_parser(name, help=help_text, description=module.DESCRIPTION)
    module.add_arguments(command)
    add_common(command, default=argparse.SUPPRESS)
    command.set_defaults(run=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="ccnet", description="CCNet (mmseg zoo) → ONNX → TensorRT deployment toolkit.",
        epilog="'ccnet COMMAND --help' describes a command's flags.")
    add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        _add_command(sub, name, importlib.import_module(f".{module_name}", __package__))
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "unavailable", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return run_guarded(args.run, args)


if __name__ == "__main__":
    sys.exit(main())
