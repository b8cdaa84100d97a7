"""ccnet calibrate: an exported FP32 ONNX → INT8 with explicit Q/DQ nodes."""
from __future__ import annotations

import argparse

from . import args as common
from .app import entry_point

DESCRIPTION = ("Quantize an exported FP32 CCNet ONNX to INT8 with explicit Q/DQ nodes "
               "(TensorRT 10/11 strongly typed INT8; also runs on ONNX Runtime).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calib.options import (CLIP_SEARCHES, DEFAULT_HOLDOUT_IMAGES, DEFAULT_NUM_IMAGES,
                               DEFAULT_SEED, METHODS, QUANTIZERS)
    from calib.placement import PLACEMENTS

    common.add_model(parser, help="FP32 ONNX written by ccnet export", aliases=("--onnx",))
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", "--calib-images", dest="images", help="calibration photos: a folder (recursive; label "
                                         "folders and label PNGs are skipped) or a quoted glob "
                                         "pattern such as 'data/**/*.jpg'")
    source.add_argument("--list", dest="image_list",
                        help="text file with one photo path per line (relative to the file)")
    parser.add_argument("--num-images", type=common.positive_int, default=DEFAULT_NUM_IMAGES,
                        help=f"calibrate on N photos (default {DEFAULT_NUM_IMAGES})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"shuffle seed for choosing the photos (default {DEFAULT_SEED})")
    parser.add_argument("--method", choices=METHODS,
                        help="range calibration (default entropy; with a cache alone: the cache's)")
    parser.add_argument("--clip-search", choices=CLIP_SEARCHES,
                        help="mse: per Conv input, the clipping threshold that minimises the "
                             "Conv's output error on calibration inputs (refines the --method "
                             "ranges; recorded in the cache)")
    parser.add_argument("--cache", help="calibration cache JSON: written with --images/--list, "
                                        "reused without them (made for this exact ONNX file)")
    parser.add_argument("--target", choices=tuple(PLACEMENTS), default="tensorrt",
                        help="Q/DQ placement: " + "; ".join(f"{p.name}: {p.help}"
                                                            for p in PLACEMENTS.values()))
    parser.add_argument("--quantizer", choices=QUANTIZERS, default="ort",
                        help="ort (default: our placement through ONNX Runtime's quantizer) or "
                             "modelopt (NVIDIA ModelOpt's placement, optional package)")
    mixed = parser.add_argument_group("mixed precision (Convs kept in float)")
    mixed.add_argument("--target-agreement", type=float, metavar="P",
                       help="keep the most sensitive Convs in float until INT8 agrees with FP32 "
                            "on P %% of held-out pixels")
    mixed.add_argument("--max-fallback", type=int, metavar="K",
                       help="keep at most K Convs in float (alone: exactly the K most sensitive)")
    mixed.add_argument("--holdout", metavar="PHOTOS",
                       help="photos (folder or quoted glob) to measure agreement on, instead of "
                            "holding some calibration photos out")
    mixed.add_argument("--holdout-images", type=common.positive_int,
                       default=DEFAULT_HOLDOUT_IMAGES,
                       help="photos held out of calibration to measure agreement on (default "
                            f"{DEFAULT_HOLDOUT_IMAGES})")
    mixed.add_argument("--sensitivity-json", help="write the per-layer sensitivity table (JSON) "
                                                  "and its plot (same name, .png)")
    parser.add_argument("--no-function", action="store_true",
                        help="write the plugin-only form (no CCA function: TensorRT + plugin only)")
    common.add_progress(parser)
    parser.add_argument("--out", required=True, help="INT8 ONNX to write")


def run(args: argparse.Namespace) -> int:
    from calib.options import QuantOptions
    from calib.quantize import quantize

    options = QuantOptions(
        method=args.method, num_images=args.num_images, seed=args.seed, target=args.target,
        quantizer=args.quantizer, function=not args.no_function, clip_search=args.clip_search,
        target_agreement=args.target_agreement, max_fallback=args.max_fallback,
        holdout_images=args.holdout_images, sensitivity_json=args.sensitivity_json,
        progress=not args.no_progress)
    report = quantize(args.model, args.out, images_dir=args.images, cache=args.cache,
                      image_list=args.image_list, holdout=args.holdout, options=options)
    print(summary(report))
    return 0


def summary(report: dict) -> str:
    """What was written and from which photos (the log of the files used)."""
    lines = []
    if report["from_cache"]:
        lines.append(f"ranges from cache {report['cache']} ({report['num_images']} photo(s))")
    else:
        search = f", {report['clip_search']} clip search" if report["clip_search"] else ""
        lines.append(f"calibrated on {len(report['images'])} photo(s), {report['method']} "
                     f"ranges{search}:")
        lines += [f"  {p}" for p in report["images"]]
    if report["holdout_images"]:
        lines.append(f"held out to measure agreement ({len(report['holdout_images'])}):")
        lines += [f"  {p}" for p in report["holdout_images"]]
    lines += [f"skipped {p}: {why}" for p, why in report["skipped"]]
    if report["fallback_layers"] or report["holdout_agreement_pct"] is not None:
        lines.append(f"kept in float ({len(report['fallback_layers'])} of {report['convs']} "
                     f"Convs): {', '.join(report['fallback_layers']) or 'none'}; held-out "
                     f"agreement with FP32 {report['holdout_agreement_pct']:.3f} %")
    if report["sensitivity_json"]:
        lines.append(f"wrote sensitivity table {report['sensitivity_json']} (+ .png)")
    residual = ("" if report["residual_adds"] is None else
                f", {report['residual_adds']} residual Add shortcut(s) through Q/DQ")
    function = "with" if report["function"] else "without"
    lines.append(f"wrote {report['out']}: {report['quantized_convs']} of {report['convs']} "
                 f"Conv(s) INT8{residual}, {report['quantizer']} quantizer, {report['target']} "
                 f"placement, {function} CCA function ({report['seconds']} s)")
    if report["cache"] and not report["from_cache"]:
        lines.append(f"wrote calibration cache {report['cache']}")
    return "\n".join(lines)


main = entry_point("ccnet-calibrate", DESCRIPTION, add_arguments, run)
