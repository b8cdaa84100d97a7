"""What ``ccnet build`` reads from a parsed TensorRT network: the optimization profile for its
inputs, whether the criss-cross attention became our plugin, its precision and output kind.

Pure functions of a ``trt.INetworkDefinition`` (and the ``tensorrt`` module passed in), so the
control flow is testable with small doubles of the documented TensorRT API.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from ccnet.errors import CCNetError

from .engine_info import Shape, format_shape

Ranges = Dict[str, Dict[str, List[int]]]


def _pretty_dims(dims: Sequence[int]) -> str:
    return "x".join("?" if d < 0 else str(d) for d in dims)


def _check_fixed_input(name: str, dims: Shape, given: Sequence[Optional[Shape]]) -> None:
    for shape in given:
        if shape is not None and tuple(shape) != dims:
            raise CCNetError(f"input {name!r} is fixed at {format_shape(dims)} in the ONNX but a "
                             f"shape of {format_shape(shape)} was given: re-export with dynamic "
                             "dims or drop the shape flags")


def _dynamic_range(name: str, dims: Shape, given: Sequence[Optional[Shape]]) -> Dict[str, list]:
    """min/opt/max of one dynamic input, trtexec rules: a missing one falls back to opt (or to
    the others), so ``--optShapes`` alone means one fixed shape (min = opt = max)."""
    if all(g is None for g in given):
        raise CCNetError(f"input {name!r} has dynamic dims {_pretty_dims(dims)}: give --minShapes/"
                         f"--optShapes/--maxShapes, e.g. --optShapes={name}:1x3x512x512 (one "
                         f"fixed size) or --minShapes={name}:1x3x256x256 --optShapes={name}:"
                         f"1x3x512x512 --maxShapes={name}:1x3x512x1024")
    lo, opt, hi = given
    opt = opt or hi or lo
    lo, hi = lo or opt, hi or opt
    for label, shape in (("min", lo), ("opt", opt), ("max", hi)):
        if len(shape) != len(dims) or any(d >= 0 and s != d for d, s in zip(dims, shape)):
            raise CCNetError(f"--{label}Shapes {name}:{format_shape(shape)} does not fit the ONNX "
                             f"input dims {_pretty_dims(dims)}")
    if not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
        raise CCNetError(f"shapes for {name!r} must satisfy min <= opt <= max per dimension: "
                         f"{format_shape(lo)}, {format_shape(opt)}, {format_shape(hi)}")
    return {"min": list(lo), "opt": list(opt), "max": list(hi)}


def input_ranges(network, min_shapes: Dict[str, Shape], opt_shapes: Dict[str, Shape],
                 max_shapes: Dict[str, Shape]) -> Tuple[Ranges, List[str]]:
    """(min/opt/max for every network input, names of the inputs with dynamic dims).

    A network with any dynamic input needs an optimization profile even when min = opt = max
    (the fixed-shape build that CUDA graphs want); fixed inputs keep their own dims."""
    ranges: Ranges = {}
    dynamic = []
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        name, dims = tensor.name, tuple(tensor.shape)
        given = [s.get(name) for s in (min_shapes, opt_shapes, max_shapes)]
        if all(d >= 0 for d in dims):
            _check_fixed_input(name, dims, given)
            ranges[name] = {"min": list(dims), "opt": list(dims), "max": list(dims)}
        else:
            ranges[name] = _dynamic_range(name, dims, given)
            dynamic.append(name)
    return ranges, dynamic


def plugin_identity(trt, layer) -> Optional[Tuple[str, str, str]]:
    """(name, version, namespace) of the plugin behind an IPluginV3 layer, None for others.

    ``INetworkDefinition.get_layer`` returns a plain ``ILayer`` (the bindings do not downcast),
    so the layer is downcast to ``IPluginV3Layer`` for its ``plugin`` property (pyGraph.cpp), and
    the name comes from the plugin's CORE capability interface (``IPluginV3OneCore``,
    pyPlugin.cpp), never from the layer name the parser made up."""
    if layer.type != trt.LayerType.PLUGIN_V3:
        return None
    layer.__class__ = trt.IPluginV3Layer
    core = layer.plugin.get_capability_interface(trt.PluginCapabilityType.CORE)
    if core is None:
        return None
    return str(core.plugin_name), str(core.plugin_version), str(core.plugin_namespace)


def classify_cca(trt, network, cca_nodes: Optional[int], plugin: Tuple[str, str, str]) -> tuple:
    """("plugin" | "inlined" | "partial" | "none" | "unknown", number of CCA plugin layers);
    ``plugin`` is the (name, version, namespace) of our creator."""
    found = sum(plugin_identity(trt, network.get_layer(i)) == tuple(plugin)
                for i in range(network.num_layers))
    if cca_nodes is None:
        return ("plugin" if found else "unknown"), found
    if cca_nodes == 0:
        return "none", found
    if found >= cca_nodes:
        return "plugin", found
    return ("partial" if found else "inlined"), found


def network_precision(trt, network) -> str:
    """int8 if the network has Q/DQ layers, fp16 if any layer outputs half, else fp32."""
    qdq = {trt.LayerType.QUANTIZE, trt.LayerType.DEQUANTIZE}
    half = False
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type in qdq:
            return "int8"
        half = half or any(layer.get_output(j).dtype == trt.DataType.HALF
                           for j in range(layer.num_outputs))
    return "fp16" if half else "fp32"


def output_kind(trt, network) -> str:
    """"labels" for an integer (argmax) output, else "logits"."""
    output = network.get_output(0)
    integer = {trt.DataType.INT32, getattr(trt.DataType, "INT64", trt.DataType.INT32)}
    return "labels" if output.name == "labels" or output.dtype in integer else "logits"
