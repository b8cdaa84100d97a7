"""ccnet export: a CCNet checkpoint → ONNX with the criss-cross attention as one custom node."""
from __future__ import annotations

import argparse
import sys

from . import args as common
from .app import entry_point, log

DESCRIPTION = ("Export a CCNet checkpoint to ONNX (criss-cross attention as one custom node "
               "with a standard-op function).")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from export.verify import DEFAULT_ATOL, DEFAULT_RTOL, MIN_AGREEMENT

    common.add_model(parser, help="checkpoint file, URL, zoo name or built-in model name")
    parser.add_argument("--out", required=True, help="ONNX file to write")
    common.add_config(parser)
    from export.graph import DEFAULT_OPSET

    parser.add_argument("--opset", type=_int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--batch", type=_int, help="fixed batch (default dynamic)")
    parser.add_argument("--height", type=_int, help="fixed height (default dynamic)")
    parser.add_argument("--width", type=_int, help="fixed width (default dynamic)")
    parser.add_argument("--output", choices=["logits", "labels"], default="logits",
                        help="logits N×C×H×W float32 (default) or labels N×H×W int64")
    parser.add_argument("--label-head", action="store_true",
                        help="append the resize back to the image size and the argmax to the "
                             "graph: a second input output_size (empty 0xHxW, only its shape is "
                             "read) and output labels uint8 (int32 over 255 classes) NxHxW; "
                             "whole-mode models only (Segmenter uses it automatically)")
    parser.add_argument("--cca", choices=["plugin", "native"], default="plugin",
                        help="plugin: one custom node per CCA (+ function); native: standard ops")
    parser.add_argument("--no-function", action="store_true",
                        help="plugin-only form: no model-local function (TensorRT with plugin)")
    parser.add_argument("--fp16", action="store_true",
                        help="FP16 model with float32 input/output")
    parser.add_argument("--verify-image", metavar="IMAGE",
                        help="photo to verify the file on (default: a synthetic photo-like image)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip onnx.checker and the ONNX Runtime vs PyTorch comparison")
    parser.add_argument("--min-agreement", type=float, default=MIN_AGREEMENT, metavar="FRACTION",
                        help="verification: least argmax agreement with PyTorch (default "
                             f"{MIN_AGREEMENT:g})")
    parser.add_argument("--atol", type=float, default=DEFAULT_ATOL,
                        help="verification: absolute logit tolerance; a logit passes within "
                             f"max(atol, rtol × |logit|) (default {DEFAULT_ATOL:g})")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                        help=f"verification: relative logit tolerance (default {DEFAULT_RTOL:g})")
    common.add_allow_nonfinite(parser, help="load a checkpoint with NaN/Inf weights (refused by "
                               "default; its verification still fails unless --no-verify)")


def run(args: argparse.Namespace) -> int:
    from export.to_onnx import export_onnx
    from export.verify import Tolerance

    tolerance = Tolerance(atol=args.atol, rtol=args.rtol, min_agreement=args.min_agreement)
    export_onnx(args.model, args.out, config=args.config, opset=args.opset, batch=args.batch,
                height=args.height, width=args.width, output=args.output, cca=args.cca,
                function=not args.no_function, fp16=args.fp16, verify=not args.no_verify,
                verify_image=args.verify_image, tolerance=tolerance,
                allow_nonfinite=args.allow_nonfinite, log=log, label_head=args.label_head)
    return 0


main = entry_point("ccnet-export", DESCRIPTION, add_arguments, run)

if __name__ == "__main__":
    sys.exit(main())
