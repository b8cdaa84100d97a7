"""ccnet deploy: checkpoint → ONNX FP32/FP16/INT8 → TensorRT engines → parity → report, in one
resumable command."""
from __future__ import annotations

import argparse

from . import args as common
from .app import entry_point

DESCRIPTION = ("Deploy a CCNet in one go: checkpoint → ONNX → FP16 / INT8 → TensorRT engines "
               "(when TensorRT is installed) → parity vs PyTorch → DIR/report.md + report.json. "
               "Rerunning skips every step whose inputs did not change.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calib.options import METHODS
    from ccnet.datasets import DATASET_KINDS

    common.add_model(parser, help="checkpoint (.pth), zoo or built-in name, or URL")
    common.add_config(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--precision", metavar="LIST",
                        help="comma list of fp32, fp16, int8 (default fp32,fp16, plus int8 with "
                             "--calib-images)")
    parser.add_argument("--calib-images", metavar="DIR",
                        help="INT8 calibration images; also the parity images when no --data")
    parser.add_argument("--calib-method", choices=METHODS,
                        help="INT8 range calibration (default entropy)")
    parser.add_argument("--num-calib-images", type=common.positive_int,
                        help="calibrate on the first N images (default: calibrate's default)")
    parser.add_argument("--data", metavar="DIR", help="labelled parity data (with --dataset)")
    parser.add_argument("--dataset", choices=DATASET_KINDS, help="layout of --data")
    parser.add_argument("--max-images", type=common.positive_int,
                        help="parity on the first N images (default: all of --data, or 20 "
                             "calibration images)")
    parser.add_argument("--engine", action="store_true",
                        help="also build TensorRT engines (needs TensorRT; else a note)")
    parser.add_argument("--plugins", help="libccnet_plugins.so for the engines (default: "
                                          "$CCNET_PLUGIN_LIB or build/)")
    for which in ("min", "opt", "max"):
        parser.add_argument(f"--{which}-shape", metavar="input:1x3xHxW",
                            help=f"engine profile {which} shape (default from the test scale)")
    common.add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from runtime.deploy import DeployPlan, deploy, parse_precisions

    plan = DeployPlan(
        model=args.model, out_dir=args.out,
        precisions=parse_precisions(args.precision, args.calib_images),
        calib_images=args.calib_images, engine=args.engine, data=args.data,
        dataset=args.dataset, max_images=args.max_images, config=args.config,
        plugins=args.plugins, calib_method=args.calib_method,
        calib_num_images=args.num_calib_images, progress=not args.no_progress,
        shapes={"min": args.min_shape, "opt": args.opt_shape, "max": args.max_shape})
    report = deploy(plan)
    ran = [s["name"] for s in report["steps"] if not s["skipped"]]
    print(f"wrote {args.out}/report.md and report.json ({len(report['files'])} files; "
          f"{len(ran)} step(s) ran, {len(report['steps']) - len(ran)} up to date)")
    for note in report["notes"]:
        print(f"note: {note}")
    return 0


main = entry_point("ccnet-deploy", DESCRIPTION, add_arguments, run)
