"""ccnet build: a ccnet ONNX → TensorRT engine, trtexec-style, plus the engine's side file."""
from __future__ import annotations

import argparse

from . import args as common
from .app import entry_point

DESCRIPTION = ("Build a TensorRT engine from a ccnet ONNX (trtexec-style); precision comes from "
               "the ONNX (FP32 / FP16 / Q-DQ INT8), the network is strongly typed.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser, help="input ONNX (ccnet export output)", aliases=("--onnx",))
    parser.add_argument("--saveEngine", required=True,
                        help="output engine; metadata goes to <engine>.json")
    parser.add_argument("--minShapes", help="input:NxCxHxW (trtexec syntax)")
    parser.add_argument("--optShapes", help="input:NxCxHxW")
    parser.add_argument("--maxShapes", help="input:NxCxHxW")
    parser.add_argument("--workspace", type=int, help="workspace memory pool limit in MiB")
    parser.add_argument("--timingCacheFile", help="timing cache to load (if present) and save")
    parser.add_argument("--plugins", "--dynamicPlugins", dest="plugins",
                        help="libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or build/)")
    parser.add_argument("--builderOptimizationLevel", type=int, help="0..5 (TensorRT default 3)")
    parser.add_argument("--versionCompatible", action="store_true",
                        help="engine runs on later TensorRT releases of the same major version")
    parser.add_argument("--infoOnly", action="store_true",
                        help="only write <engine>.json (for an engine built by plain trtexec "
                             "with the same shapes)")
    parser.add_argument("--verbose", action="store_true")


def run(args: argparse.Namespace) -> int:
    from runtime.engine_info import format_shape
    from runtime.trt_build import build_engine

    info = build_engine(args.model, args.saveEngine, args.minShapes, args.optShapes,
                        args.maxShapes, args.workspace, args.timingCacheFile, args.plugins,
                        args.builderOptimizationLevel, args.versionCompatible, args.verbose,
                        info_only=args.infoOnly)
    shapes = "; ".join(f"{n}: {format_shape(r['min'])} .. {format_shape(r['max'])}"
                       for n, r in info.profiles[0].items())
    written = args.saveEngine + ".json" if args.infoOnly else args.saveEngine
    print(f"{'wrote metadata only:' if args.infoOnly else 'wrote'} {written} "
          f"(TensorRT {info.tensorrt_version}, {info.precision}, CCA {info.cca}, {shapes})")
    return 0


main = entry_point("ccnet-build", DESCRIPTION, add_arguments, run)
