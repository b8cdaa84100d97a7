"""Build a TensorRT engine from our ONNX, trtexec-style (``ccnet-build``).

Strongly typed network (TensorRT 10.x and 11.x): the precision comes from the ONNX itself (FP32,
FP16-converted, or Q/DQ INT8), never from builder flags.  The plugin library is loaded and
registered before parsing so the CrissCrossAttention nodes become plugin layers; if they were
inlined from the ONNX function instead, the build says so.  Beside ``model.engine`` it writes
``model.engine.json`` (runtime/engine_info.py): ModelMeta, TensorRT version, plugin, profile,
precision.  tensorrt is imported lazily; without it the CLI prints one line and exits 2.
"""
from __future__ import annotations

import os

from typing import Dict, Optional, Union

from ccnet.errors import CCNetError
from ccnet.files import atomic_write

from .engine_info import (EngineInfo, Shape, format_shape, parse_shapes,
                          write_engine_info)
from .trt_common import (PLUGIN_FLAG_HINT, contract, import_tensorrt, is_plugin_layer_type,
                         load_plugin_library, make_logger, plugin_description,
                         resolve_plugin_library, tensorrt_version)

ShapeArg = Optional[Union[Dict[str, Shape], str]]


def read_onnx_summary(onnx_path: str) -> dict:
    """ModelMeta dict, precision, CCA node count and whether their local function is present,
    read with the ``onnx`` package when installed (a build box may lack it: then all are None)."""
    summary = {"meta": None, "cca_nodes": None, "has_function": None, "precision": None}
    try:
        from export import cca_functions, cca_nodes, load_onnx, read_metadata
    except ImportError:
        return summary
    model = load_onnx(onnx_path, load_external_data=False)
    try:
        meta = read_metadata(model)
    except CCNetError:
        meta = None
    if meta is not None:
        summary["meta"] = meta.to_dict()
        summary["precision"] = meta.extra.get("precision")
    summary["cca_nodes"] = len(cca_nodes(model))
    summary["has_function"] = bool(cca_functions(model))
    return summary


def _as_shapes(value: ShapeArg) -> Dict[str, Shape]:
    if value is None:
        return {}
    if isinstance(value, str):
        return parse_shapes(value)
    return {k: tuple(int(d) for d in v) for k, v in value.items()}


def _profile_ranges(network, min_shapes, opt_shapes, max_shapes) -> Dict[str, Dict[str, list]]:
    """min/opt/max per network input, trtexec rules: a missing one falls back to opt (or to the
    others); fixed inputs use their own dims.  Dynamic inputs without any shape are an error."""
    ranges = {}
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        name, dims = tensor.name, tuple(tensor.shape)
        given = [s.get(name) for s in (min_shapes, opt_shapes, max_shapes)]
        if all(d >= 0 for d in dims):
            for g in given:
                if g is not None and tuple(g) != dims:
                    raise CCNetError(f"input {name!r} is fixed at {format_shape(dims)} in the ONNX "
                                     f"but a shape of {format_shape(g)} was given: re-export with "
                                     "dynamic dims or drop the shape flags")
            ranges[name] = {"min": list(dims), "opt": list(dims), "max": list(dims)}
            continue
        if all(g is None for g in given):
            pretty = "x".join("?" if d < 0 else str(d) for d in dims)
            raise CCNetError(f"input {name!r} has dynamic dims {pretty}: give --minShapes/--optShapes"
                             f"/--maxShapes, e.g. --optShapes={name}:1x3x512x512 (one fixed size) or"
                             f" --minShapes={name}:1x3x256x256 --optShapes={name}:1x3x512x512 "
                             f"--maxShapes={name}:1x3x512x1024")
        lo, opt, hi = given
        opt = opt or hi or lo
        lo, hi = lo or opt, hi or opt
        for label, shape in (("min", lo), ("opt", opt), ("max", hi)):
            if len(shape) != len(dims) or any(d >= 0 and s != d for d, s in zip(dims, shape)):
                raise CCNetError(f"--{label}Shapes {name}:{format_shape(shape)} does not fit the "
                                 f"ONNX input dims {dims}")
        if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
            raise CCNetError(f"shapes for {name!r} must satisfy min <= opt <= max per dimension: "
                             f"{format_shape(lo)}, {format_shape(opt)}, {format_shape(hi)}")
        ranges[name] = {"min": list(lo), "opt": list(opt), "max": list(hi)}
    return ranges


def _plugin_layer_name(trt, layer) -> str:
    """The plugin name of a plugin layer when the bindings expose it ('' otherwise)."""
    try:
        plugin = layer.get_plugin()
        core = plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
        return str(core.plugin_name)
    except Exception:
        return str(getattr(getattr(layer, "plugin", None), "plugin_type", "") or "")


def classify_cca(trt, network, cca_nodes: Optional[int]) -> tuple:
    """("plugin" | "inlined" | "partial" | "none" | "unknown", number of CCA plugin layers)."""
    op = contract()["plugin_name"]
    found = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if is_plugin_layer_type(trt, layer.type) and (
                op in layer.name or _plugin_layer_name(trt, layer) == op):
            found += 1
    if cca_nodes is None:
        return ("plugin" if found else "unknown"), found
    if cca_nodes == 0:
        return "none", found
    if found >= cca_nodes:
        return "plugin", found
    return ("partial" if found else "inlined"), found


def network_precision(trt, network) -> str:
    """int8 if the network has Q/DQ layers, fp16 if any layer outputs half, else fp32."""
    qdq = {getattr(trt.LayerType, n, None) for n in ("QUANTIZE", "DEQUANTIZE")}
    half = False
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in qdq:
            return "int8"
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype == trt.DataType.HALF:
                half = True
    return "fp16" if half else "fp32"


def trtexec_command(onnx_path: str, engine_path: str, ranges: Optional[dict] = None,
                    plugins: Optional[str] = None, workspace_mib: Optional[int] = None,
                    timing_cache: Optional[str] = None, optimization_level: Optional[int] = None,
                    version_compatible: bool = False) -> str:
    """The plain trtexec command line that builds the same engine (no side file: write it
    with ``ccnet-build --infoOnly`` afterwards)."""
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}", "--stronglyTyped"]
    if plugins:
        parts.append(f"--dynamicPlugins={plugins}")
        if version_compatible:
            parts.append(f"--setPluginsToSerialize={plugins}")
    for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
        if ranges and any(r["min"] != r["max"] for r in ranges.values()):
            parts.append(flag + "=" + ",".join(f"{n}:{format_shape(r[key])}"
                                              for n, r in ranges.items()))
    if workspace_mib:
        parts.append(f"--memPoolSize=workspace:{int(workspace_mib)}M")
    if timing_cache:
        parts.append(f"--timingCacheFile={timing_cache}")
    if optimization_level is not None:
        parts.append(f"--builderOptimizationLevel={int(optimization_level)}")
    if version_compatible:
        parts.append("--versionCompatible")
    parts.append("--profilingVerbosity=detailed")
    return " ".join(parts)


def build_engine(onnx_path: str, engine_path: str, min_shapes: ShapeArg = None,
                 opt_shapes: ShapeArg = None, max_shapes: ShapeArg = None,
                 workspace_mib: Optional[int] = None, timing_cache: Optional[str] = None,
                 plugins: Optional[str] = None, optimization_level: Optional[int] = None,
                 version_compatible: bool = False, verbose: bool = False,
                 info_only: bool = False, log=print) -> EngineInfo:
    """Build ``engine_path`` from ``onnx_path`` and write ``engine_path + '.json'``.

    Shapes are dicts ``{"input": (N, 3, H, W)}`` or trtexec strings ``"input:1x3x512x512"``.
    ``plugins``: libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or build/).  ``info_only``:
    parse and write only the side file (for an engine built by plain trtexec with the same
    shapes and plugin).  Returns the EngineInfo written.
    """
    if not os.path.isfile(onnx_path):
        raise CCNetError(f"ONNX model not found: {onnx_path}")
    summary = read_onnx_summary(onnx_path)
    trt = import_tensorrt()
    version = tensorrt_version(trt)
    # The plugin is mandatory for the plugin form (no function body to fall back on).
    needs_plugin = bool(summary["cca_nodes"]) and summary["has_function"] is False
    library = resolve_plugin_library(plugins, required=needs_plugin or bool(plugins))
    logger = make_logger(trt, verbose)
    if library:
        load_plugin_library(trt, library)
    elif summary["cca_nodes"]:
        log(f"warning: no plugin library found ({PLUGIN_FLAG_HINT}); the CrissCrossAttention "
            "nodes will be inlined from their ONNX function")

    builder = trt.Builder(logger)
    creation = trt.NetworkDefinitionCreationFlag
    if not hasattr(creation, "STRONGLY_TYPED"):
        raise CCNetError(f"TensorRT {version} has no strongly typed networks: use TensorRT 10.x "
                         "or 11.x")
    flags = 1 << int(creation.STRONGLY_TYPED)
    # EXPLICIT_BATCH is implied (and deprecated) from 10.0 and gone in 11.
    if hasattr(creation, "EXPLICIT_BATCH") and int(version.split(".")[0]) < 10:
        flags |= 1 << int(creation.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    override = getattr(getattr(trt, "OnnxParserFlag", None), "ENABLE_PLUGIN_OVERRIDE", None)
    if library and override is not None:
        parser.set_flag(override)  # the registered plugin wins over the local function
    if not parser.parse_from_file(os.path.abspath(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = errors[0].strip().splitlines()[0] if errors else "unknown parser error"
        hint = ""
        if contract()["op_type"] in first or "plugin" in first.lower():
            hint = f"; the CrissCrossAttention plugin was not found: {PLUGIN_FLAG_HINT}"
        raise CCNetError(f"TensorRT cannot parse {onnx_path} ({len(errors)} error(s); first: "
                         f"{first[:300]}){hint}")

    cca, n_plugin_layers = classify_cca(trt, network, summary["cca_nodes"])
    messages = {
        "plugin": f"CCA: {n_plugin_layers} CrissCrossAttention node(s) run as the TensorRT plugin",
        "inlined": ("CCA: the CrissCrossAttention nodes were INLINED from their ONNX function "
                    "(standard layers, not the plugin): load the plugin with --plugins on "
                    "TensorRT >= 10.7 (the parser prefers a registered plugin from 10.7; "
                    "ENABLE_PLUGIN_OVERRIDE on newer parsers)"),
        "partial": (f"CCA: only {n_plugin_layers} of {summary['cca_nodes']} CrissCrossAttention "
                    "nodes run as the plugin; the rest were inlined"),
        "none": "CCA: the model has no CrissCrossAttention nodes (exported with --cca native)",
        "unknown": "CCA: could not tell whether the plugin is used (install onnx to check)",
    }
    log(messages[cca])

    ranges = _profile_ranges(network, _as_shapes(min_shapes), _as_shapes(opt_shapes),
                             _as_shapes(max_shapes))
    output = network.get_output(0)
    output_kind = ("labels" if output.name == "labels" or output.dtype in (
        trt.DataType.INT32, getattr(trt.DataType, "INT64", trt.DataType.INT32)) else "logits")
    info = EngineInfo(
        tensorrt_version=version, meta=summary["meta"], input_name=network.get_input(0).name,
        output_name=output.name, output_kind=output_kind,
        precision=summary["precision"] or network_precision(trt, network), cca=cca,
        plugin=plugin_description(library) if cca in ("plugin", "partial") else None,
        profiles=[ranges], version_compatible=bool(version_compatible),
        onnx=os.path.abspath(onnx_path))
    if summary["meta"] is None:
        log(f"warning: {onnx_path} carries no ccnet metadata (or onnx is not installed): "
            "Segmenter will need meta= to run this engine")
    if info_only:
        write_engine_info(engine_path, info)
        return info

    config = builder.create_builder_config()
    if workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # for ccnet-inspect
    if optimization_level is not None:
        if not 0 <= int(optimization_level) <= 5:
            raise CCNetError("--builderOptimizationLevel must be 0..5")
        config.builder_optimization_level = int(optimization_level)
    if version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
        if library:  # the engine carries the plugin library so a later TensorRT can run it
            config.plugins_to_serialize = [library]
    if any(r["min"] != r["max"] for r in ranges.values()):
        profile = builder.create_optimization_profile()
        for name, r in ranges.items():
            profile.set_shape(name, r["min"], r["opt"], r["max"])
        config.add_optimization_profile(profile)
    cache = None
    if timing_cache:
        data = b""
        if os.path.isfile(timing_cache):
            with open(timing_cache, "rb") as f:
                data = f.read()
        cache = config.create_timing_cache(data)
        config.set_timing_cache(cache, ignore_mismatch=False)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise CCNetError(f"TensorRT failed to build an engine from {onnx_path} (see its log "
                         "above; rerun with --verbose)")
    if timing_cache:
        atomic_write(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    atomic_write(engine_path, bytes(memoryview(serialized)))
    write_engine_info(engine_path, info)
    return info
