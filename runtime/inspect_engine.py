"""``ccnet inspect model.engine``: polygraphy's engine report plus what is ours -- whether the
criss-cross attention runs as our plugin, and the side file's metadata.

The engine is built with DETAILED profiling verbosity by ``ccnet build``; TensorRT's engine
inspector reports layer formats and precisions only for an execution context whose input shapes
are all set (NvInferRuntime.h, ``IEngineInspector::setExecutionContext``), so the context gets
profile 0 and its opt shapes before anything is inspected.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Optional

from ccnet.errors import CCNetError

from .engine_info import EngineInfo


def _layer_precision(layer: dict) -> str:
    """The output format/datatype the inspector reports for a layer (e.g. 'Half', 'Int8');
    TensorRT 11 splits "Format/Datatype" into "Datatype" and "Format"."""
    formats = []
    for out in layer.get("Outputs") or []:
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
            cca_plugin_layers += plugin_name in layer
            continue
        kind = str(layer.get("LayerType", "?"))
        rows.append({"name": str(layer.get("Name", "?")), "type": kind,
                     "precision": _layer_precision(layer)})
        if "plugin" in kind.lower() and plugin_name in json.dumps(layer):
            cca_plugin_layers += 1
    return {"layers": rows, "cca_plugin_layers": cca_plugin_layers}


def inspection_context(engine, info: EngineInfo):
    """An execution context on profile 0 with every input at the profile's opt shape."""
    context = engine.create_execution_context()
    profile = info.profiles[0] if info.profiles else {}
    for name, shapes in profile.items():
        if not context.set_input_shape(name, tuple(shapes["opt"])):
            raise CCNetError(f"TensorRT rejected the opt shape {shapes['opt']} of {name!r}: the "
                             "side file does not match the engine; rebuild it with ccnet build")
    return context


def inspect_engine(engine_path: str, plugins: Optional[str] = None, report: bool = False) -> dict:
    """{"info": side file dict, "layers": [...], "cca_plugin_layers": n} for an engine built by
    ccnet build, plus "report", polygraphy's text report of the engine, with ``report=True``."""
    from .trt_common import creator_key, import_tensorrt
    from .trt_engine import load_engine

    engine, info = load_engine(engine_path, plugins)
    trt = import_tensorrt()
    context = inspection_context(engine, info)
    inspector = engine.create_engine_inspector()
    inspector.execution_context = context
    raw = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    summary = summarize_layers(json.loads(raw), creator_key()[0])
    summary["info"] = dataclasses.asdict(info)
    if report:
        from polygraphy.backend.trt.util import str_from_engine

        summary["report"] = str_from_engine(engine, context, show_layers=True, show_attrs=True)
    return summary
