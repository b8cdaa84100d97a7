"""ccnet inspect: polygraphy's engine report (inputs, outputs, profiles, layers with their
formats) plus whether criss-cross attention runs as the plugin and the engine's side file."""
from __future__ import annotations

import argparse
import json

from ccnet.errors import CCNetError

from .app import entry_point

DESCRIPTION = ("Print an engine's layers and precisions (polygraphy's report) and whether "
               "criss-cross attention runs as the plugin.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("engine", nargs="?", metavar="ENGINE", help="engine built by ccnet build")
    parser.add_argument("--model", help="the engine, as every command names its model")
    parser.add_argument("--plugins", help="libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or "
                                          "build/)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON (side file, layer table, CCA count) instead of text")


def cca_status(summary: dict) -> str:
    n = summary["cca_plugin_layers"]
    if n:
        return f"CCA: runs as the CrissCrossAttention plugin ({n} layer(s))"
    if summary["info"].get("cca") == "none":
        return "CCA: the model has no CrissCrossAttention nodes"
    return ("CCA: NOT running as the plugin (inlined standard layers, or fused by TensorRT; "
            f"build-time status: {summary['info'].get('cca')})")


def run(args: argparse.Namespace) -> int:
    from runtime.inspect_engine import inspect_engine

    if bool(args.model) == bool(args.engine):
        raise CCNetError("give the engine once: ccnet inspect ENGINE or --model ENGINE")
    args.model = args.model or args.engine
    summary = inspect_engine(args.model, args.plugins, report=not args.json)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    info = summary["info"]
    meta = info.get("meta") or {}
    print(f"engine: {args.model}  (built by TensorRT {info['tensorrt_version']}, precision "
          f"{info['precision']}, version-compatible {info['version_compatible']}, model "
          f"{meta.get('name', '?')}, {meta.get('num_classes', '?')} classes, from "
          f"{info.get('onnx')})")
    print(summary["report"])
    print(cca_status(summary))
    return 0


main = entry_point("ccnet-inspect", DESCRIPTION, add_arguments, run)
