"""ccnet fp16: an exported FP32 ONNX → strongly typed FP16 ONNX (float32 input and output)."""
from __future__ import annotations

import argparse

from . import args as common
from .app import entry_point, log

DESCRIPTION = ("Convert an exported CCNet ONNX file to a strongly typed FP16 model (float32 "
               "input/output; softmax, resize and overflowing layers stay float32).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser, help="FP32 ONNX file written by ccnet export",
                     aliases=("--onnx",))
    parser.add_argument("--out", required=True, help="FP16 ONNX file to write")
    parser.add_argument("--verify-image", metavar="IMAGE",
                        help="photo to probe overflows and verify on (default: synthetic)")
    parser.add_argument("--no-verify", action="store_true", help="skip the checks")


def run(args: argparse.Namespace) -> int:
    from export.to_fp16 import convert_to_fp16

    convert_to_fp16(args.model, args.out, verify=not args.no_verify,
                    verify_image=args.verify_image, log=log)
    print(f"wrote {args.out}")
    return 0


main = entry_point("ccnet-to-fp16", DESCRIPTION, add_arguments, run)
