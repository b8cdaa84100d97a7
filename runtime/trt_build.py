"""Build a TensorRT engine from our ONNX, trtexec-style (``ccnet build``), with polygraphy's
TensorRT loaders.

Strongly typed network (TensorRT 10.x and 11.x): the precision comes from the ONNX itself (FP32,
FP16-converted, or Q/DQ INT8), never from builder flags.  The plugin library is registered
before parsing (``trt_common.load_plugin_library``) so the CrissCrossAttention nodes become
plugin layers; if they were inlined from the ONNX function instead, the build says so.  The
nodes carry ``plugin_version``/``plugin_namespace``, which is how the parser finds our creator,
so the parser flag ``ENABLE_PLUGIN_OVERRIDE`` (which lets *any* registered plugin named like an
ONNX op replace it) stays off.  Beside ``model.engine`` it writes ``model.engine.json``
(runtime/engine_info.py): ModelMeta, TensorRT version, plugin, profile, precision.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Union

from ccnet.errors import CCNetError
from ccnet.files import check_output_file, commit_together, require_file

from .engine_info import (EngineInfo, Shape, format_shape, parse_shapes, side_file_path,
                          with_engine_digest, write_engine_info)
from .trt_common import (PLUGIN_FLAG_HINT, creator_key, import_tensorrt, load_plugin_library,
                         plugin_description, polygraphy_errors, polygraphy_logging,
                         resolve_plugin_library)
from .trt_network import classify_cca, input_ranges, network_precision, output_kind

ShapeArg = Optional[Union[Dict[str, Shape], str]]
MIB = 1 << 20
# trtexec --memPoolSize pool names -> trt.MemoryPoolType members
MEMORY_POOLS = {"workspace": "WORKSPACE", "tacticSharedMem": "TACTIC_SHARED_MEMORY",
                "dlaSRAM": "DLA_MANAGED_SRAM", "dlaLocalDRAM": "DLA_LOCAL_DRAM",
                "dlaGlobalDRAM": "DLA_GLOBAL_DRAM"}


@dataclass
class BuildOptions:
    """trtexec's build options that apply to our strongly typed ONNX.  Shapes are dicts
    ``{"input": (N, 3, H, W)}`` or trtexec strings ``"input:1x3x512x512"``; ``memory_pools``
    maps trtexec pool names (``workspace``, ``tacticSharedMem``...) to bytes; ``plugins`` is
    libccnet_plugins.so (default: $CCNET_PLUGIN_LIB or build/); ``info_only`` parses and writes
    only the side file (for an engine built by plain trtexec with the same shapes)."""

    min_shapes: ShapeArg = None
    opt_shapes: ShapeArg = None
    max_shapes: ShapeArg = None
    memory_pools: Dict[str, int] = field(default_factory=dict)
    workspace_mib: Optional[int] = None  # shorthand for memory_pools["workspace"]
    timing_cache: Optional[str] = None
    plugins: Optional[str] = None
    optimization_level: Optional[int] = None
    version_compatible: bool = False
    verbose: bool = False
    info_only: bool = False

    def check(self) -> None:
        """One-line errors for bad options, before any TensorRT work."""
        self.pools()
        level = self.optimization_level
        if level is not None and not 0 <= int(level) <= 5:
            raise CCNetError(f"--builderOptimizationLevel must be 0..5, got {level}")

    def pools(self) -> Dict[str, int]:
        pools = dict(self.memory_pools)
        if self.workspace_mib:
            pools["workspace"] = int(self.workspace_mib) * MIB
        unknown = sorted(set(pools) - set(MEMORY_POOLS))
        if unknown:
            raise CCNetError(f"unknown memory pool {unknown[0]!r}: use {', '.join(MEMORY_POOLS)}")
        return pools


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


def _trtexec_size(nbytes: int) -> str:
    for suffix, unit in (("G", 1 << 30), ("M", MIB), ("K", 1 << 10)):
        if nbytes % unit == 0:
            return f"{nbytes // unit}{suffix}"
    return f"{nbytes}B"


def trtexec_command(onnx_path: str, engine_path: str, ranges: Optional[dict] = None,
                    plugins: Optional[str] = None, memory_pools: Optional[Dict[str, int]] = None,
                    timing_cache: Optional[str] = None, optimization_level: Optional[int] = None,
                    version_compatible: bool = False) -> str:
    """The plain trtexec command line that builds the same engine (then write the side file
    with ``ccnet build --infoOnly``).  ``ranges``: min/opt/max of the *dynamic* inputs, which
    trtexec needs even when min = opt = max."""
    parts = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={engine_path}", "--stronglyTyped"]
    if plugins:
        parts.append(f"--dynamicPlugins={plugins}")
        if version_compatible:
            parts.append(f"--setPluginsToSerialize={plugins}")
    for key, flag in (("min", "--minShapes"), ("opt", "--optShapes"), ("max", "--maxShapes")):
        if ranges:
            parts.append(flag + "=" + ",".join(f"{n}:{format_shape(r[key])}"
                                              for n, r in ranges.items()))
    if memory_pools:
        parts.append("--memPoolSize=" + ",".join(f"{name}:{_trtexec_size(size)}"
                                                 for name, size in memory_pools.items()))
    if timing_cache:
        parts.append(f"--timingCacheFile={timing_cache}")
    if optimization_level is not None:
        parts.append(f"--builderOptimizationLevel={int(optimization_level)}")
    if version_compatible:
        parts.append("--versionCompatible")
    parts.append("--profilingVerbosity=detailed")
    return " ".join(parts)


def _plugin_library(summary: dict, requested: Optional[str], log) -> Optional[str]:
    """The library to register: mandatory for the plugin form (no function body to fall back
    on) or when asked for; otherwise used when found."""
    needs_plugin = bool(summary["cca_nodes"]) and summary["has_function"] is False
    library = resolve_plugin_library(requested, required=needs_plugin or bool(requested))
    if not library and summary["cca_nodes"]:
        log(f"warning: no plugin library found ({PLUGIN_FLAG_HINT}); the CrissCrossAttention "
            "nodes will be inlined from their ONNX function")
    return library


def parse_network(trt, onnx_path: str, library: Optional[str]):
    """(builder, network, parser) from polygraphy's NetworkFromOnnxPath with a strongly typed
    network, our plugin library registered first."""
    from polygraphy.backend.trt import NetworkFromOnnxPath

    hint = ""
    if not library:
        hint = f"; if it names CrissCrossAttention, load the plugin: {PLUGIN_FLAG_HINT}"
    if library:
        load_plugin_library(trt.get_plugin_registry(), library)
    with polygraphy_errors(f"TensorRT cannot parse {onnx_path}", hint):
        return NetworkFromOnnxPath(os.path.abspath(onnx_path), strongly_typed=True)()


CCA_MESSAGES = {
    "plugin": "CCA: {found} CrissCrossAttention node(s) run as the TensorRT plugin",
    "inlined": ("CCA: the CrissCrossAttention nodes were INLINED from their ONNX function "
                "(standard layers, not the plugin): {why}; the --no-function export forces the "
                "plugin"),
    "partial": ("CCA: only {found} of {nodes} CrissCrossAttention nodes run as the plugin; the "
                "rest were inlined"),
    "none": "CCA: the model has no CrissCrossAttention nodes (exported with --cca native)",
    "unknown": "CCA: could not tell whether the plugin is used (install onnx to check)",
}
INLINED_WHY = {True: "this TensorRT's ONNX parser prefers the model-local function to the "
                     "registered plugin",
               False: f"no plugin library was loaded ({PLUGIN_FLAG_HINT})"}


def describe_engine(trt, network, summary: dict, ranges: dict, library: Optional[str],
                    options: BuildOptions, onnx_path: str, log) -> EngineInfo:
    """The side file's content for the parsed network (and the CCA report on ``log``)."""
    cca, found = classify_cca(trt, network, summary["cca_nodes"], creator_key())
    log(CCA_MESSAGES[cca].format(found=found, nodes=summary["cca_nodes"],
                                 why=INLINED_WHY[bool(library)]))
    if summary["meta"] is None:
        log(f"warning: {onnx_path} carries no ccnet metadata (or onnx is not installed): "
            "Segmenter will need meta= to run this engine")
    return EngineInfo(
        tensorrt_version=str(trt.__version__), meta=summary["meta"],
        input_name=network.get_input(0).name, output_name=network.get_output(0).name,
        output_kind=output_kind(trt, network),
        precision=summary["precision"] or network_precision(trt, network), cca=cca,
        plugin=plugin_description(library) if cca in ("plugin", "partial") else None,
        profiles=[ranges], version_compatible=bool(options.version_compatible),
        onnx=os.path.abspath(onnx_path))


def engine_config(trt, ranges: dict, options: BuildOptions, library: Optional[str]):
    """polygraphy's CreateConfig: the profile (always one: see ``input_ranges``), memory pools,
    timing cache, optimisation level, version compatibility; TF32 on as in TensorRT and trtexec
    (polygraphy turns it off by default); the plugin library serialized into
    version-compatible engines so a later TensorRT finds it."""
    from polygraphy.backend.trt import CreateConfig, PostprocessConfig, Profile

    level = options.optimization_level
    profile = Profile()
    for name, r in ranges.items():
        profile.add(name, min=r["min"], opt=r["opt"], max=r["max"])
    pools = {getattr(trt.MemoryPoolType, MEMORY_POOLS[name]): size
             for name, size in options.pools().items()}
    config = CreateConfig(profiles=[profile], tf32=True, memory_pool_limits=pools or None,
                          load_timing_cache=options.timing_cache,
                          profiling_verbosity=trt.ProfilingVerbosity.DETAILED,
                          builder_optimization_level=None if level is None else int(level),
                          version_compatible=bool(options.version_compatible))
    if not (options.version_compatible and library):
        return config

    def serialize_plugin(builder, network, config):
        config.plugins_to_serialize = [library]

    return PostprocessConfig(config, serialize_plugin)


def build_engine(onnx_path: str, engine_path: str, options: Optional[BuildOptions] = None,
                 log=print, **option_fields) -> EngineInfo:
    """Build ``engine_path`` from ``onnx_path`` and write ``engine_path + '.json'``; returns the
    EngineInfo written.  Options come as a BuildOptions and/or its fields as keywords.

    The engine bytes come from polygraphy's EngineBytesFromNetwork; they are written together
    with the side file (``commit_together``) rather than by polygraphy's SaveEngine, which
    needs a deserialized engine and writes in place: a failure leaves neither file."""
    options = dataclasses.replace(options or BuildOptions(), **option_fields)
    options.check()
    require_file(onnx_path, "ONNX model")
    check_output_file(engine_path, what="engine")
    summary = read_onnx_summary(onnx_path)
    trt = import_tensorrt()
    library = _plugin_library(summary, options.plugins, log)
    with polygraphy_logging(options.verbose):
        builder, network, parser = parse_network(trt, onnx_path, library)
        ranges, dynamic = input_ranges(network, _as_shapes(options.min_shapes),
                                       _as_shapes(options.opt_shapes),
                                       _as_shapes(options.max_shapes))
        info = describe_engine(trt, network, summary, ranges, library, options, onnx_path, log)
        log("the same engine with trtexec: " + trtexec_command(
            onnx_path, engine_path, {n: ranges[n] for n in dynamic}, library, options.pools(),
            options.timing_cache, options.optimization_level, options.version_compatible))
        if options.info_only:
            write_engine_info(engine_path, info)
            return info
        engine = _build_serialized(builder, network, parser,
                                   engine_config(trt, ranges, options, library), options, onnx_path)
    info = with_engine_digest(info, engine)
    commit_together([(engine_path, lambda tmp: _write_bytes(tmp, engine)),
                     (side_file_path(engine_path), lambda tmp: _write_bytes(
                         tmp, info.to_json().encode("utf-8")))])
    return info


def _build_serialized(builder, network, parser, config, options: BuildOptions,
                      onnx_path: str) -> bytes:
    """polygraphy's EngineBytesFromNetwork (which also merges and saves the timing cache)."""
    from polygraphy.backend.trt import EngineBytesFromNetwork

    with polygraphy_errors(f"TensorRT failed to build an engine from {onnx_path}",
                           " (see its log above; rerun with --verbose)"):
        serialized = EngineBytesFromNetwork((builder, network, parser), config=config,
                                            save_timing_cache=options.timing_cache)()
    return bytes(memoryview(serialized))


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
