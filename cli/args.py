"""Argument groups shared by the commands, so one flag means one thing everywhere."""
from __future__ import annotations

import argparse

from ccnet.datasets import DATASET_KINDS

MODEL_FORMS = "a .pth checkpoint, zoo or built-in name, URL, .onnx or .engine file"
LOG_LEVELS = ("debug", "info", "warning", "error")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def add_model(parser: argparse.ArgumentParser, help: str = MODEL_FORMS,
              aliases=("--ckpt",)) -> None:
    """``--model`` (aliases kept for older command lines)."""
    parser.add_argument("--model", *aliases, dest="model", required=True, help=help)


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help="zoo name whose architecture to use for a checkpoint (default: the "
                             "zoo row of --model, or inferred from the checkpoint's tensors)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None,
                        help="pytorch: cpu (default) or cuda[:N]; onnxruntime: auto, cpu, cuda "
                             "or tensorrt")


def add_dataset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset root folder")
    parser.add_argument("--dataset", required=True, choices=DATASET_KINDS, help="dataset layout")
    parser.add_argument("--max-images", type=positive_int, default=None,
                        help="evaluate only the first N images")


def add_progress(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (without a terminal it is a log line every 10 s)")


def add_verbosity(parser: argparse.ArgumentParser, default=None) -> None:
    """``-v`` / ``-q`` / ``--log-level`` (one of them).  ``default=argparse.SUPPRESS`` on a
    subcommand keeps a level given before the subcommand name (``ccnet -v export ...``)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-v", dest="log_level", action="store_const", const="debug",
                       default=default,
                       help="show details and the warnings of the libraries underneath")
    group.add_argument("-q", "--quiet", dest="log_level", action="store_const", const="warning",
                       default=default, help="only warnings, errors and the result")
    group.add_argument("--log-level", dest="log_level", type=str.lower, choices=LOG_LEVELS,
                       default=default, help="debug = -v, info (default), warning = -q, error")


def runner_options(args: argparse.Namespace) -> dict:
    """Backend options from the shared flags (only those given)."""
    options = {}
    for name in ("device", "config", "plugins", "allow_nonfinite", "cuda_graph"):
        value = getattr(args, name, None)
        if value:
            options[name] = value
    return options


def add_tta(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tta", action="store_true",
                        help="multi-scale + flip test-time augmentation (mmseg 0.x rule)")


def add_allow_nonfinite(parser: argparse.ArgumentParser, help: str = (
        "load a .pth checkpoint with NaN/Inf weights (refused by default)")) -> None:
    parser.add_argument("--allow-nonfinite", action="store_true", help=help)
