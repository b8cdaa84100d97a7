"""ccnet inspect: an engine's layers, precisions and whether criss-cross attention runs as
the plugin."""
from __future__ import annotations

import argparse
import json

from .app import entry_point

DESCRIPTION = ("Print an engine's layers, precisions and whether criss-cross attention runs as "
               "the plugin.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="ENGINE", help="engine built by ccnet build")
    parser.add_argument("--plugins", help="libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or "
                                          "build/)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    from runtime.engine_info import format_shape
    from runtime.inspect_engine import inspect_engine

    summary = inspect_engine(args.model, args.plugins)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    info = summary["info"]
    print(f"engine: {args.model}  (TensorRT {info['tensorrt_version']}, precision "
          f"{info['precision']}, version-compatible {info['version_compatible']})")
    for i, profile in enumerate(info["profiles"]):
        for name, r in profile.items():
            print(f"profile {i} {name}: min {format_shape(r['min'])}  opt "
                  f"{format_shape(r['opt'])}  max {format_shape(r['max'])}")
    width = max([len(r["name"]) for r in summary["layers"]] + [4])
    print(f"{'layer':<{width}}  {'type':<20}  output precision")
    for r in summary["layers"]:
        print(f"{r['name']:<{width}}  {r['type']:<20}  {r['precision']}")
    n = summary["cca_plugin_layers"]
    if n:
        print(f"CCA: runs as the CrissCrossAttention plugin ({n} layer(s))")
    elif info.get("cca") == "none":
        print("CCA: the model has no CrissCrossAttention nodes")
    else:
        print("CCA: NOT running as the plugin (inlined standard layers, or fused by TensorRT; "
              f"build-time status: {info.get('cca')})")
    return 0


main = entry_point("ccnet-inspect", DESCRIPTION, add_arguments, run)
