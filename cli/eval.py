"""ccnet eval: mIoU / aAcc / mAcc of a model on a dataset, as mmseg's IoUMetric computes them."""
from __future__ import annotations

import argparse
import os

from ccnet.files import check_output_file

from . import args as common
from .app import entry_point

DESCRIPTION = ("Evaluate a CCNet (checkpoint, zoo name, .onnx or .engine) like mmseg's "
               "IoUMetric: mIoU, aAcc, mAcc and a per-class table.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser)
    common.add_config(parser)
    common.add_device(parser)
    common.add_dataset(parser)
    parser.add_argument("--split", default="val", help="split to evaluate (default: val)")
    common.add_tta(parser)
    parser.add_argument("--json", default=None, metavar="OUT.json", help="also write the metrics")
    common.add_progress(parser)


def run(args: argparse.Namespace) -> int:
    from ccnet.datasets import check_model_fits_dataset, open_dataset
    from ccnet.evaluation import evaluate_one
    from ccnet.files import write_json
    from ccnet.metrics import format_table, result_to_json
    from runtime.machine import Timed
    from runtime.segmenter import Segmenter

    if args.json:
        check_output_file(args.json, (".json",), what="--json")
    dataset = open_dataset(args.data, args.dataset, args.split).head(args.max_images)
    with Segmenter(args.model, **common.runner_options(args)) as segmenter:
        meta = segmenter.meta
        check_model_fits_dataset(meta.num_classes, args.dataset)
        timed = Timed(lambda image: segmenter.segment(image, tta=args.tta))
        result = evaluate_one(timed, dataset, meta.num_classes, meta.ignore_index,
                              progress=not args.no_progress)
        backend = segmenter.backend
    print(format_table(result, meta.classes))
    print(f"{'backend':<12} | ms/image\n{backend:<12} | {timed.ms_per_call:8.1f}")
    if args.json:
        report = result_to_json(result, meta.classes)
        report.update(model=meta.name, dataset=args.dataset, data=os.path.abspath(args.data),
                      tta=args.tta, backend=backend,
                      ms_per_image=round(timed.ms_per_call, 2))
        write_json(args.json, report)
    return 0


main = entry_point("ccnet-eval", DESCRIPTION, add_arguments, run)
