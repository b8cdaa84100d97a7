"""ccnet bench: end-to-end latency and per-stage throughput of a model file on given sizes."""
from __future__ import annotations

import argparse

from . import args as common
from .app import entry_point, log

DESCRIPTION = ("Benchmark a CCNet model (.onnx, .engine, .pth or zoo name) end to end: "
               "decode, preprocess, infer and postprocess per image size; p50/p90/p99 latency, "
               "per-stage throughput, peak RSS, machine and library versions (JSON).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from runtime.benchmark import DEFAULT_SIZES

    common.add_model(parser)
    common.add_config(parser)
    common.add_device(parser)
    parser.add_argument("--backend", choices=["onnxruntime", "tensorrt", "pytorch"],
                        help="runner to use (default: from the file type)")
    parser.add_argument("--sizes", default=DEFAULT_SIZES, metavar="WxH[,WxH...]",
                        help=f"image sizes to benchmark, width x height (default {DEFAULT_SIZES})")
    parser.add_argument("--batch", type=common.positive_int, default=1,
                        help="images per network pass (default 1; an engine's profile must "
                             "cover it)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed passes per size before measuring (default 2)")
    parser.add_argument("--reps", type=common.positive_int, default=10,
                        help="timed passes per size (default 10)")
    parser.add_argument("--image", metavar="PHOTO",
                        help="photo to benchmark, resized to each size (default: a synthetic "
                             "street scene)")
    parser.add_argument("--threads", type=common.positive_int,
                        help="intra-op threads of ONNX Runtime / PyTorch (default: theirs)")
    parser.add_argument("--plugins", metavar="LIB",
                        help="TensorRT plugin library (default: $CCNET_PLUGIN_LIB or build/)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="TensorRT: capture and replay a CUDA graph per input shape")
    parser.add_argument("--json", metavar="OUT.json", help="also write the report as JSON")


def run(args: argparse.Namespace) -> int:
    from ccnet.files import check_output_file, write_json
    from runtime.benchmark import benchmark, format_report

    if args.json:
        check_output_file(args.json, (".json",), what="--json")
    options = common.runner_options(args)
    report = benchmark(args.model, sizes=args.sizes, batch=args.batch, warmup=args.warmup,
                       reps=args.reps, image=args.image, backend=args.backend,
                       threads=args.threads, log=log, **options)
    print(format_report(report))
    if args.json:
        write_json(args.json, report)
        print(f"wrote {args.json}")
    return 0


main = entry_point("ccnet-bench", DESCRIPTION, add_arguments, run)
