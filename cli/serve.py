"""ccnet serve: serve a model through NVIDIA Triton Inference Server (PyTriton), HTTP + gRPC."""
from __future__ import annotations

import argparse

from . import args as common
from .app import entry_point

DESCRIPTION = ("Serve a model through Triton Inference Server (PyTriton): KServe v2 HTTP/gRPC, "
               "dynamic batching, metrics; input 'image' UINT8 HxWx3 BGR or 'encoded' JPEG/PNG "
               "bytes, output 'labels' at the image size.")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    """Flags shared with ``ccnet triton-repo``: the Triton model clients call."""
    from runtime.serving_contract import DEFAULT_MAX_IMAGE_SIDE

    parser.add_argument("--name", default="ccnet", help="Triton model name (default ccnet)")
    parser.add_argument("--max-batch-size", type=int, default=4,
                        help="Triton max batch size (default 4; 0: no batch dimension, no "
                             "dynamic batching)")
    parser.add_argument("--instances", type=common.positive_int, default=1,
                        help="model instances (each loads the model; default 1)")
    parser.add_argument("--max-image-side", type=common.positive_int,
                        default=DEFAULT_MAX_IMAGE_SIDE,
                        help="refuse images whose longest side is larger (default "
                             f"{DEFAULT_MAX_IMAGE_SIDE})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser)
    add_model_flags(parser)
    parser.add_argument("--address", default="0.0.0.0",
                        help="address the endpoints bind to (default 0.0.0.0: all interfaces)")
    parser.add_argument("--http-port", type=common.positive_int, default=8000)
    parser.add_argument("--grpc-port", type=common.positive_int, default=8001)
    parser.add_argument("--metrics-port", type=common.positive_int, default=8002)
    parser.add_argument("--batch-delay-us", type=int, default=0,
                        help="how long the dynamic batcher may hold a request to fill a batch "
                             "(default 0: batch only what queued while the model was busy)")
    parser.add_argument("--logits", action="store_true",
                        help="also offer the FP32 CxHxW 'logits' output")
    parser.add_argument("--shutdown-timeout", type=common.positive_int, default=30,
                        help="seconds in-flight requests get to finish on SIGINT/SIGTERM")
    parser.add_argument("--log-batches", action="store_true",
                        help="print one line per batch the segmenter model receives "
                             "(requests, images, sizes)")
    parser.add_argument("--backend", choices=["onnxruntime", "tensorrt", "pytorch"],
                        help="default: by the model's file type")
    common.add_device(parser)
    parser.add_argument("--plugins", help="libccnet_plugins.so for TensorRT engines")


def run(args: argparse.Namespace) -> int:
    from runtime.serving import options_from, serve

    options = options_from(**vars(args))
    serve(args.model, options, args.backend, log=lambda line: print(line, flush=True),
          **common.runner_options(args))
    return 0


main = entry_point("ccnet-serve", DESCRIPTION, add_arguments, run)
