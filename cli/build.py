"""ccnet build: a ccnet ONNX → TensorRT engine, trtexec-style, plus the engine's side file."""
from __future__ import annotations

import argparse

from ccnet.errors import CCNetError

from . import args as common
from .app import entry_point

DESCRIPTION = ("Build a TensorRT engine from a ccnet ONNX with trtexec's flag names; precision "
               "comes from the ONNX (FP32 / FP16 / Q-DQ INT8), the network is strongly typed.")
PRECISION_ANSWER = "precision comes from the ONNX: use ccnet fp16 / ccnet calibrate"
UNITS = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def parse_pool_sizes(text: str) -> dict:
    """trtexec ``--memPoolSize``: ``pool:size[,pool:size]``, size in MiB unless it ends in
    B/K/M/G (base 2), decimals allowed -> {pool: bytes}."""
    pools = {}
    for item in text.split(","):
        name, sep, size = item.strip().partition(":")
        unit = size[-1:].upper()
        number = size[:-1] if unit in UNITS else size
        try:
            value = float(number) * UNITS.get(unit, UNITS["M"])
        except ValueError:
            value = -1.0
        if not sep or not name or value < 0:
            raise CCNetError(f"bad --memPoolSize {item!r}: use pool:size, e.g. "
                             "--memPoolSize=workspace:4096M")
        pools[name] = int(value)
    return pools


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_model(parser, help="input ONNX (ccnet export output)", aliases=("--onnx",))
    parser.add_argument("--saveEngine", required=True,
                        help="output engine; metadata goes to <engine>.json")
    parser.add_argument("--minShapes", help="input:NxCxHxW (trtexec syntax)")
    parser.add_argument("--optShapes", help="input:NxCxHxW (alone: one fixed shape)")
    parser.add_argument("--maxShapes", help="input:NxCxHxW")
    parser.add_argument("--memPoolSize", help="pool:size[,pool:size], e.g. workspace:4096M "
                                              "(MiB unless suffixed B/K/M/G)")
    parser.add_argument("--workspace", type=common.positive_int,
                        help="workspace pool limit in MiB (= --memPoolSize=workspace:N)")
    parser.add_argument("--timingCacheFile", help="timing cache to load (if present) and save")
    parser.add_argument("--plugins", "--dynamicPlugins", dest="plugins",
                        help="libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or build/)")
    parser.add_argument("--builderOptimizationLevel", type=int, help="0..5 (TensorRT default 3)")
    parser.add_argument("--versionCompatible", "--vc", action="store_true",
                        help="engine also runs on later TensorRT releases (and 10.x on 11.x)")
    parser.add_argument("--stronglyTyped", action="store_true",
                        help="accepted for trtexec compatibility: always on")
    parser.add_argument("--fp16", action="store_true", help=f"refused: {PRECISION_ANSWER}")
    for flag in ("--int8", "--bf16", "--fp8", "--best"):
        parser.add_argument(flag, action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--infoOnly", action="store_true",
                        help="only write <engine>.json (for an engine built by plain trtexec "
                             "with the same shapes)")
    parser.add_argument("--verbose", action="store_true")


def build_options(args: argparse.Namespace):
    """BuildOptions from the parsed flags; precision flags get the one-line answer."""
    from runtime.trt_build import BuildOptions

    if any(getattr(args, f) for f in ("fp16", "int8", "bf16", "fp8", "best")):
        raise CCNetError(PRECISION_ANSWER)
    pools = parse_pool_sizes(args.memPoolSize) if args.memPoolSize else {}
    return BuildOptions(min_shapes=args.minShapes, opt_shapes=args.optShapes,
                        max_shapes=args.maxShapes, memory_pools=pools,
                        workspace_mib=args.workspace, timing_cache=args.timingCacheFile,
                        plugins=args.plugins, optimization_level=args.builderOptimizationLevel,
                        version_compatible=args.versionCompatible, verbose=args.verbose,
                        info_only=args.infoOnly)


def run(args: argparse.Namespace) -> int:
    from runtime.engine_info import format_shape
    from runtime.trt_build import build_engine

    info = build_engine(args.model, args.saveEngine, build_options(args))
    shapes = "; ".join(f"{n}: {format_shape(r['min'])} .. {format_shape(r['max'])}"
                       for n, r in info.profiles[0].items())
    written = args.saveEngine + ".json" if args.infoOnly else args.saveEngine
    print(f"{'wrote metadata only:' if args.infoOnly else 'wrote'} {written} "
          f"(TensorRT {info.tensorrt_version}, {info.precision}, CCA {info.cca}, {shapes})")
    return 0


main = entry_point("ccnet-build", DESCRIPTION, add_arguments, run)
