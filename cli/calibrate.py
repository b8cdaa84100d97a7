"""ccnet calibrate: an exported FP32 ONNX → INT8 with explicit Q/DQ nodes."""
from __future__ import annotations

import argparse

from . import args as common
from .app import entry_point

DESCRIPTION = ("Quantize an exported FP32 CCNet ONNX to INT8 with explicit Q/DQ nodes "
               "(TensorRT 10/11 strongly typed INT8; also runs on ONNX Runtime).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calib.quantize import DEFAULT_NUM_IMAGES, METHODS, TARGETS

    common.add_model(parser, help="FP32 ONNX written by ccnet export", aliases=("--onnx",))
    parser.add_argument("--images", "--calib-images", dest="images",
                        help="folder of calibration images (pre-processed like inference)")
    parser.add_argument("--method", choices=METHODS,
                        help="range calibration (default entropy; with a cache alone: the cache's)")
    parser.add_argument("--num-images", type=int, default=DEFAULT_NUM_IMAGES,
                        help="calibrate on the first N readable images (default "
                             f"{DEFAULT_NUM_IMAGES})")
    parser.add_argument("--cache", help="calibration cache JSON: written with --images, reused "
                                        "without --images (must be made for this exact ONNX file)")
    parser.add_argument("--target", choices=TARGETS, default="tensorrt",
                        help="Q/DQ placement: tensorrt (default; symmetric int8, Q/DQ in front of "
                             "Convs, what TensorRT fuses) or ort-cpu (uint8 activations, Conv "
                             "outputs quantized: what ONNX Runtime CPU runs fast)")
    parser.add_argument("--no-function", action="store_true",
                        help="write the plugin-only form (no CCA function: TensorRT + plugin only)")
    common.add_progress(parser)
    parser.add_argument("--out", required=True, help="INT8 ONNX to write")


def run(args: argparse.Namespace) -> int:
    from calib.quantize import quantize

    report = quantize(args.model, args.out, images_dir=args.images, method=args.method,
                      num_images=args.num_images, cache=args.cache,
                      function=not args.no_function, progress=not args.no_progress,
                      target=args.target)
    source = f"cache {args.cache}" if report["from_cache"] else f"{report['num_images']} image(s)"
    function = "with" if report["function"] else "without"
    print(f"wrote {report['out']}: {report['quantized_convs']} Conv(s) INT8, "
          f"{report['residual_adds']} residual Add shortcut(s) through Q/DQ, {report['method']} "
          f"ranges from {source}, {report['target']} placement, {function} CCA function "
          f"({report['seconds']} s)")
    if args.cache and not report["from_cache"]:
        print(f"wrote calibration cache {args.cache}")
    return 0


main = entry_point("ccnet-calibrate", DESCRIPTION, add_arguments, run)
