"""ccnet parity: mIoU of exported models against PyTorch FP32 on one dataset."""
from __future__ import annotations

import argparse
import sys

from ccnet.errors import CCNetError

from . import args as common
from .app import entry_point

DESCRIPTION = ("mIoU parity of exported models vs PyTorch FP32 on one dataset: mIoU, ΔmIoU, "
               "per-class ΔIoU and argmax pixel agreement (all in percent).")
EXIT_PARITY_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser, help="reference checkpoint (.pth, zoo or built-in name)")
    common.add_dataset(parser)
    parser.add_argument("--onnx", help="FP32 ONNX (ONNX Runtime)")
    parser.add_argument("--onnx-fp16", help="FP16 ONNX (ONNX Runtime)")
    parser.add_argument("--onnx-int8", help="INT8 Q/DQ ONNX from ccnet calibrate (ONNX Runtime)")
    parser.add_argument("--engine", nargs="+", action="extend", default=[],
                        help="TensorRT engine(s); precision read from the engine's metadata")
    parser.add_argument("--max-delta", type=float,
                        help="fail (exit 1) when any backend's |ΔmIoU| vs PyTorch exceeds this "
                             "many mIoU points (percent, e.g. 0.3)")
    parser.add_argument("--compare", action="store_true",
                        help="also compare each --engine tensor by tensor with ONNX Runtime on "
                             "the ONNX it was built from, same images (polygraphy's comparator); "
                             "fails (exit 1) when an output is out of tolerance")
    parser.add_argument("--compare-onnx", help="ONNX for --compare (default: the engine's side "
                                               "file names the one it was built from)")
    parser.add_argument("--atol", type=float, default=1e-3, help="--compare absolute tolerance")
    parser.add_argument("--rtol", type=float, default=1e-3, help="--compare relative tolerance")
    parser.add_argument("--json", help="write the report as JSON")
    parser.add_argument("--plot", help="write a per-class ΔIoU bar chart (PNG)")
    common.add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from runtime.parity import exceeding, format_report, parity_report, plot_deltas, write_json

    if args.max_delta is not None and args.max_delta < 0:
        raise CCNetError(f"--max-delta must be >= 0 (mIoU points), got {args.max_delta}")
    if args.compare and not args.engine:
        raise CCNetError("--compare compares TensorRT engines with ONNX Runtime: give --engine")
    report = parity_report(args.model, args.data, args.dataset, onnx=args.onnx,
                           onnx_fp16=args.onnx_fp16, onnx_int8=args.onnx_int8,
                           engines=args.engine, max_images=args.max_images,
                           progress=not args.no_progress)
    print(format_report(report))
    if args.json:
        write_json(report, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        plot_deltas(report, args.plot)
        print(f"wrote {args.plot}")
    compared_ok = compare_engines(args) if args.compare else True
    if args.max_delta is not None:
        failed = exceeding(report, args.max_delta)
        if failed:
            print(f"parity FAILED (|ΔmIoU| > {args.max_delta} points): " + "; ".join(failed),
                  file=sys.stderr)
            return EXIT_PARITY_FAILED
        print(f"parity OK: every |ΔmIoU| <= {args.max_delta} points")
    return 0 if compared_ok else EXIT_PARITY_FAILED


def compare_engines(args: argparse.Namespace) -> bool:
    """The --compare report for every engine; True when all outputs are within tolerance."""
    from ccnet.datasets import open_dataset
    from runtime.trt_compare import compare_engine, format_comparison

    data_set = open_dataset(args.data, args.dataset).head(args.max_images)
    images = [image for image, _ in data_set.pairs]
    passed = True
    for engine in args.engine:
        summary = compare_engine(engine, images, args.compare_onnx, atol=args.atol,
                                 rtol=args.rtol)
        print(format_comparison(summary))
        passed = passed and summary["passed"]
    return passed


main = entry_point("ccnet-parity", DESCRIPTION, add_arguments, run)
