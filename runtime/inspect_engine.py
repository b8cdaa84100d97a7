"""``ccnet-inspect model.engine``: layers, precisions, and whether CCA runs as our plugin.

Uses TensorRT's engine inspector (the engine is built with DETAILED profiling verbosity by
ccnet-build, so per-layer types and formats are present) plus the engine's side file.
"""
from __future__ import annotations

import json
from typing import Optional


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
