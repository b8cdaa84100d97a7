"""What Triton must know about a CCNet network file: its platform, tensor names, dims and data
types and the batch it takes, read from our metadata (ONNX ``metadata_props``, the engine's
side file) and checked so that every repository we write can be served.

Dims follow Triton's rules: with ``max_batch_size`` > 0 the first (batch) dimension is left
out and must be dynamic in the file; with 0 the full shape is given.  -1 marks a dynamic dim.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from ccnet.errors import CCNetError, first_line
from ccnet.meta import ModelMeta

from .engine_info import format_shape, read_engine_info
from .segmenter import ENGINE_EXTS, ONNX_EXTS

ONNX_PLATFORM = "onnxruntime_onnx"
TENSORRT_PLATFORM = "tensorrt_plan"
# The plugin library's name in a repository (``runtime.triton_repo`` copies it under this name).
PLUGIN_FILE = "libccnet_plugins.so"
ONNX_HINT = "pip install 'ccnet-deploy[export]' (or [trt]: both bring onnx)"


@dataclass
class NetworkSpec:
    """The network model of a repository (``<name>_network``)."""

    platform: str
    file_name: str  # what Triton looks for in the version folder
    meta: ModelMeta
    input_name: str
    output_name: str
    input_dims: List[int]
    output_dims: List[int]
    max_batch_size: int
    input_type: str = "TYPE_FP32"
    output_type: str = "TYPE_FP32"
    needs_plugin: bool = False
    notes: List[str] = field(default_factory=list)


def _split_batch(shape: Sequence[int], max_batch_size: int, what: str):
    """(max_batch_size, dims without the batch dim) for a file whose batch dim is ``shape[0]``
    (-1 when dynamic), or one-line error when Triton cannot feed it."""
    batch = shape[0]
    if batch == -1:
        return max_batch_size, list(shape[1:]) if max_batch_size > 0 else list(shape)
    if batch == 1:
        return 0, list(shape)  # fixed batch 1: Triton passes the full shape, no batching
    raise CCNetError(f"{what} takes a fixed batch of {batch}, which Triton cannot fill from "
                     "single requests: re-export with a dynamic batch (ccnet-export without "
                     "--batch) or --batch 1")


def _onnx_dims(value_info) -> List[int]:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else -1 for d in dims]


def _onnx_type(value_info, path: str) -> str:
    import onnx

    elem = value_info.type.tensor_type.elem_type
    names = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}
    if elem not in names:
        raise CCNetError(f"{path}: tensor {value_info.name!r} has ONNX element type {elem}, not "
                         "float32/float16: export the model with ccnet-export (logits output)")
    return names[elem]


def _check_onnx_runs_on_ort(model, path: str) -> None:
    from export.graph import cca_functions, cca_nodes

    if cca_nodes(model) and not cca_functions(model):
        raise CCNetError(f"{path} is the plugin form (CrissCrossAttention nodes without their "
                         "ONNX function), which ONNX Runtime cannot run: export with the "
                         "function (ccnet-export default), or build an engine and pass that")
    from onnx.external_data_helper import uses_external_data

    if any(uses_external_data(t) for t in model.graph.initializer):
        raise CCNetError(f"{path} keeps its weights in external data files: save it as one "
                         "file (ccnet-export writes one) before exporting a repository")


def onnx_network(path: str, max_batch_size: int) -> NetworkSpec:
    """The ``onnxruntime_onnx`` network of an exported ccnet ONNX file."""
    try:
        from export.metadata import read_metadata
        from export.onnx_file import load_onnx
    except ImportError as e:  # onnx is not part of the core install
        raise CCNetError(f"reading {path} needs the onnx package ({first_line(e)}): "
                         f"{ONNX_HINT}") from None

    model = load_onnx(path, load_external_data=False)
    try:
        meta = read_metadata(model)
    except CCNetError:
        raise CCNetError(f"{path} carries no ccnet metadata: export it with ccnet-export") \
            from None
    _check_onnx_runs_on_ort(model, path)
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise CCNetError(f"{path} has {len(inputs)} inputs and {len(model.graph.output)} "
                         "outputs, expected one image batch in and logits out: export it with "
                         "ccnet-export")
    image, logits = inputs[0], model.graph.output[0]
    out_type = _onnx_type(logits, path)
    in_shape, out_shape = _onnx_dims(image), _onnx_dims(logits)
    if len(in_shape) != 4 or len(out_shape) != 4 or logits.name == "labels":
        raise CCNetError(f"{path} maps {format_shape(in_shape)} to {logits.name} "
                         f"{format_shape(out_shape)}, expected N×3×H×W to N×C×H×W logits: "
                         "export with --output logits")
    batch, in_dims = _split_batch(in_shape, max_batch_size, path)
    return NetworkSpec(ONNX_PLATFORM, "model.onnx", meta, image.name, logits.name, in_dims,
                       out_shape[1:] if batch else out_shape, batch, _onnx_type(image, path),
                       out_type)


def _profile_shape(profiles, name: str, path: str) -> List[int]:
    """One shape covering every profile of input ``name``: a dim fixed in all profiles (min ==
    max, same value) stays fixed, any other becomes -1."""
    ranges = [p[name] for p in profiles if name in p]
    if not ranges:
        raise CCNetError(f"{path}: the side file has no optimization profile for input "
                         f"{name!r}: rebuild with ccnet-build")
    shape = []
    for axis in range(len(ranges[0]["min"])):
        values = {r["min"][axis] for r in ranges} | {r["max"][axis] for r in ranges}
        shape.append(values.pop() if len(values) == 1 else -1)
    return shape


def _engine_batch(profiles, name: str, max_batch_size: int, path: str) -> tuple:
    """(max_batch_size Triton may send, note) for an engine's profiles."""
    lows = [p[name]["min"][0] for p in profiles if name in p]
    highs = [p[name]["max"][0] for p in profiles if name in p]
    if min(lows) > 1:
        raise CCNetError(f"{path}: every optimization profile starts at batch {min(lows)}, but "
                         "Triton sends batches from 1: rebuild with --minShapes "
                         f"{name}:1x3xHxW")
    limit = max(highs)
    if max_batch_size > limit:
        return limit, (f"max batch size lowered from {max_batch_size} to {limit}, the largest "
                       "batch of the engine's profiles")
    return max_batch_size, None


def engine_network(path: str, max_batch_size: int) -> NetworkSpec:
    """The ``tensorrt_plan`` network of a ccnet-build engine, from its side file (the engine
    itself is not opened: no TensorRT needed)."""
    info = read_engine_info(path)
    meta = info.model_meta()
    if meta is None:
        raise CCNetError(f"{path}.json carries no model metadata: rebuild the engine with "
                         "ccnet-build from an ONNX written by ccnet-export")
    if info.output_kind != "logits":
        raise CCNetError(f"{path} outputs {info.output_kind}, but the resize back to the image "
                         "and slide windows need logits: rebuild from an ONNX exported with "
                         "--output logits")
    shape = _profile_shape(info.profiles, info.input_name, path)
    if len(shape) != 4:
        raise CCNetError(f"{path}: input {info.input_name!r} has {len(shape)} dims in the "
                         "profile, expected N×3×H×W")
    notes = []
    if shape[0] == -1:
        batch, note = _engine_batch(info.profiles, info.input_name, max_batch_size, path)
        notes += [note] if note else []
    else:
        batch = 0
    batch, in_dims = _split_batch(shape, batch, path)
    out_shape = [shape[0], meta.num_classes, shape[2], shape[3]]
    return NetworkSpec(TENSORRT_PLATFORM, "model.plan", meta, info.input_name,
                       info.output_name, in_dims, out_shape[1:] if batch else out_shape, batch,
                       needs_plugin=info.cca == "plugin" or bool(info.plugin), notes=notes)


def network_spec(model_file: str, max_batch_size: int) -> NetworkSpec:
    """The network spec of a .onnx or .engine/.plan file."""
    ext = os.path.splitext(model_file)[1].lower()
    if ext in ONNX_EXTS:
        return onnx_network(model_file, max_batch_size)
    if ext in ENGINE_EXTS:
        return engine_network(model_file, max_batch_size)
    raise CCNetError(f"{model_file}: a Triton repository needs an .onnx (onnxruntime_onnx) or "
                     f".engine/.plan (tensorrt_plan) file, got {ext or 'no extension'!r}: export "
                     "or build one first")


def plugin_note(spec: NetworkSpec, plugin: Optional[str]) -> Optional[str]:
    """Why and how Triton must load the plugin library (None when the network needs none)."""
    if spec.platform != TENSORRT_PLATFORM or not (spec.needs_plugin or plugin):
        return None
    return ("the engine's CrissCrossAttention layers are our TensorRT plugin: start tritonserver "
            f"with --backend-config=tensorrt,plugins=<{PLUGIN_FILE}> (or "
            f"LD_PRELOAD=<{PLUGIN_FILE}>)")
