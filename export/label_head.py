"""The label head: mmseg's resize back to the image size and argmax, appended to a logits graph.

``add_label_head`` turns a file whose output is ``logits`` N×C×h×w into one that takes a second
input ``output_size`` (an empty 0×H×W float32 tensor: only its shape is read) and returns
``labels`` N×H×W in ``label_dtype(C)`` (uint8 up to 255 classes, else int32)::

    Shape(logits)[0:2] ++ Shape(output_size)[1:3] → sizes
    Resize(logits, sizes, linear, half_pixel | align_corners) → ArgMax(axis=1) → Cast → labels

``half_pixel`` (no clamping term) and ``align_corners`` are the ONNX names of PyTorch's
bilinear ``align_corners=False`` / ``True``; TensorRT's ONNX parser supports both, and an empty
input tensor takes a normal optimization-profile range, so one engine serves every image size
in its profile and only the 1-byte-per-pixel map leaves the GPU.  ``strip_label_head`` gives
the logits graph back (FP16 conversion and INT8 calibration work on that part).
"""
from __future__ import annotations

import copy
from typing import Tuple

import onnx
from onnx import TensorProto, helper

from ccnet.errors import CCNetError
from ccnet.labels import (LABEL_HEAD_INPUT, LABEL_HEAD_KEY, LABEL_HEAD_OUTPUT, label_dtype,
                          label_head_of)
from ccnet.meta import ModelMeta

from .metadata import read_metadata

PREFIX = "label_head/"
LOGITS = "logits"
_ONNX_DTYPES = {"uint8": TensorProto.UINT8, "int32": TensorProto.INT32}


def head_description(meta: ModelMeta) -> dict:
    """What the metadata records about the head (``ModelMeta.extra["label_head"]``)."""
    return {"input": LABEL_HEAD_INPUT, "output": LABEL_HEAD_OUTPUT,
            "dtype": label_dtype(meta.num_classes).name, "align_corners": meta.align_corners,
            "rule": "bilinear resize of the logits to the output size (config align_corners), "
                    "then argmax over classes"}


def with_head_metadata(meta: ModelMeta) -> ModelMeta:
    """``meta`` with the head described and the file's contract saying what it takes/returns."""
    head = head_description(meta)
    extra = dict(meta.extra, **{LABEL_HEAD_KEY: head})
    contract = copy.deepcopy(extra.get("contract", {}))
    batch = contract.get("input", {}).get("shape", ["batch"])[0]
    contract["size_input"] = {"name": LABEL_HEAD_INPUT, "dtype": "float32",
                              "shape": [0, "out_height", "out_width"],
                              "note": "empty tensor: only its shape (the output size) is read"}
    contract["output"] = {"name": LABEL_HEAD_OUTPUT, "dtype": head["dtype"],
                          "shape": [batch, "out_height", "out_width"]}
    extra["contract"] = contract
    return meta.replace(extra=extra)


def has_label_head(model: onnx.ModelProto) -> bool:
    return any(i.name == LABEL_HEAD_INPUT for i in model.graph.input)


def require_whole_mode(meta: ModelMeta) -> None:
    """Refuse slide-mode models: they average logits over windows, the head cannot."""
    if meta.mode != "whole":
        raise CCNetError(f"{meta.name} runs in slide mode, which averages logits over windows: "
                         "the label head serves whole-image models only; export logits")


def check_headless(model: onnx.ModelProto, meta: ModelMeta) -> None:
    """One-line errors for models the head cannot be appended to."""
    if has_label_head(model):
        raise CCNetError("the model already has a label head")
    outputs = [o.name for o in model.graph.output]
    if outputs != [LOGITS]:
        raise CCNetError(f"the label head needs a logits output, the model has {outputs}: "
                         "export with --output logits")
    require_whole_mode(meta)


def add_label_head(model: onnx.ModelProto, meta: ModelMeta) -> onnx.ModelProto:
    """A copy of the logits ``model`` with the label head appended (metadata not touched)."""
    check_headless(model, meta)
    head = copy.deepcopy(model)
    graph = head.graph
    mode = "align_corners" if meta.align_corners else "half_pixel"
    dtype = _ONNX_DTYPES[label_dtype(meta.num_classes).name]
    name = PREFIX.replace("/", "_")
    graph.node.extend([
        helper.make_node("Shape", [LOGITS], [name + "nc"], start=0, end=2, name=PREFIX + "nc"),
        helper.make_node("Shape", [LABEL_HEAD_INPUT], [name + "hw"], start=1, end=3,
                         name=PREFIX + "hw"),
        helper.make_node("Concat", [name + "nc", name + "hw"], [name + "sizes"], axis=0,
                         name=PREFIX + "sizes"),
        helper.make_node("Resize", [LOGITS, "", "", name + "sizes"], [name + "resized"],
                         mode="linear", coordinate_transformation_mode=mode,
                         name=PREFIX + "resize"),
        helper.make_node("ArgMax", [name + "resized"], [name + "argmax"], axis=1, keepdims=0,
                         name=PREFIX + "argmax"),
        helper.make_node("Cast", [name + "argmax"], [LABEL_HEAD_OUTPUT], to=dtype,
                         name=PREFIX + "cast"),
    ])
    batch = graph.output[0].type.tensor_type.shape.dim[0]
    batch_dim = batch.dim_value if batch.HasField("dim_value") else (batch.dim_param or "batch")
    graph.input.append(helper.make_tensor_value_info(
        LABEL_HEAD_INPUT, TensorProto.FLOAT, [0, "out_height", "out_width"]))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(
        LABEL_HEAD_OUTPUT, dtype, [batch_dim, "out_height", "out_width"]))
    return head


def strip_label_head(model: onnx.ModelProto) -> Tuple[onnx.ModelProto, bool]:
    """(the logits part of ``model``, whether it had a head); a headless model comes back as
    is.  The logits output is re-declared float32 N×C×h×w from the Resize's input."""
    if not has_label_head(model):
        return model, False
    logits = copy.deepcopy(model)
    graph = logits.graph
    kept = [n for n in graph.node if not n.name.startswith(PREFIX)]
    del graph.node[:]
    graph.node.extend(kept)
    inputs = [i for i in graph.input if i.name != LABEL_HEAD_INPUT]
    del graph.input[:]
    graph.input.extend(inputs)
    dims = _logits_dims(model)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, dims))
    return logits, True


def _logits_dims(model: onnx.ModelProto) -> list:
    """N×C×h×w of the logits from the recorded contract (symbolic names where dynamic)."""
    meta = read_metadata(model)
    if label_head_of(meta) is None:
        raise CCNetError("the model has a label-head input but its metadata does not describe "
                         "the head: re-export it with ccnet export --label-head")
    dims = meta.extra.get("contract", {}).get("input", {}).get(
        "shape", ["batch", 3, "height", "width"])
    return [dims[0], meta.num_classes, dims[2], dims[3]]
