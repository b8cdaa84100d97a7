"""``ccnet-inspect model.engine``: layers, precisions, and whether CCA runs as our plugin.

Uses TensorRT's engine inspector (the engine is built with DETAILED profiling verbosity by
ccnet-build, so per-layer types and formats are present) plus the engine's side file.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from ccnet.errors import cli_main

from .engine_info import format_shape


def _layer_precision(layer: dict) -> str:
    """The output format/datatype the inspector reports for a layer (e.g. 'Half', 'Int8')."""
    outputs = layer.get("Outputs") or []
    formats = []
    for out in outputs:
        text = out.get("Format/Datatype") or out.get("Datatype") or ""
        if text and text not in formats:
            formats.append(text)
    return ", ".join(formats) or "?"


def summarize_layers(engine_information: dict, plugin_name: str) -> dict:
    """Layer table and CCA status from the inspector's JSON (``get_engine_information``).
    Pure function: testable on a saved inspector JSON."""
    rows = []
    cca_plugin_layers = 0
    for layer in engine_information.get("Layers", []):
        if isinstance(layer, str):  # built without DETAILED verbosity: names only
            rows.append({"name": layer, "type": "?", "precision": "?"})
            if plugin_name in layer:
                cca_plugin_layers += 1
            continue
        kind = str(layer.get("LayerType", "?"))
        name = str(layer.get("Name", "?"))
        rows.append({"name": name, "type": kind, "precision": _layer_precision(layer)})
        is_plugin = "plugin" in kind.lower()
        if is_plugin and (plugin_name in name or plugin_name in json.dumps(layer)):
            cca_plugin_layers += 1
    return {"layers": rows, "cca_plugin_layers": cca_plugin_layers}


def inspect_engine(engine_path: str, plugins: Optional[str] = None) -> dict:
    """{"info": side file dict, "layers": [...], "cca_plugin_layers": n} for an engine."""
    import dataclasses

    from .trt_common import contract
    from .trt_runner import TrtRunner

    runner = TrtRunner(engine_path, plugins=plugins)
    trt = runner.trt
    try:
        inspector = runner.engine.create_engine_inspector()
        inspector.execution_context = runner.context
        raw = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        summary = summarize_layers(json.loads(raw), contract()["plugin_name"])
    finally:
        runner.close()
    summary["info"] = dataclasses.asdict(runner.info)
    return summary


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ccnet-inspect", description="Print an engine's layers, "
                                "precisions and whether criss-cross attention runs as the plugin")
    p.add_argument("engine")
    p.add_argument("--plugins", help="libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or build/)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


@cli_main
def main(argv: Optional[Sequence[str]] = None) -> int:
    """ccnet-inspect: see ``inspect_engine``."""
    args = _parser().parse_args(argv)
    summary = inspect_engine(args.engine, args.plugins)
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    info = summary["info"]
    print(f"engine: {args.engine}  (TensorRT {info['tensorrt_version']}, precision "
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


if __name__ == "__main__":
    sys.exit(main())

