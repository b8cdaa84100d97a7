"""The FP32 model to quantize: checks with one-line errors, and the copy ONNX Runtime runs."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Tuple

import onnx

from ccnet.errors import CCNetError
from ccnet.files import file_sha256
from ccnet.meta import ModelMeta
from export.label_head import strip_label_head
from export.onnx_file import image_input, load_onnx

from .qdq_graph import is_quantized


@dataclass
class SourceModel:
    """An FP32 ccnet-export ONNX file, read and checked."""

    path: str
    model: onnx.ModelProto
    meta: ModelMeta
    input_name: str
    input_shape: Tuple[Optional[int], ...]  # ints for static dims, None for dynamic ones
    sha256: str

    @property
    def unit(self) -> str:
        return "window" if self.meta.mode == "slide" else "image"

    def prepared(self, workdir: str, opset: Optional[int] = None) -> str:
        """Write the copy calibration runs (with the CCA function, so ONNX Runtime can run a
        plugin-form file; at ``opset`` if given) into ``workdir``; returns its path."""
        from export.graph import attach_cca_function, cca_functions, cca_nodes, model_opset

        model = self.model
        if opset is not None and model_opset(model) < opset:
            model = onnx.version_converter.convert_version(model, opset)
            del model.functions[:]  # the converter drops or keeps them stale: rebuild below
        else:
            model = onnx.ModelProto.FromString(model.SerializeToString())
        if cca_nodes(model) and not cca_functions(model):
            attach_cca_function(model)
        path = os.path.join(workdir, f"fp32_opset{model_opset(model)}.onnx")
        onnx.save(model, path)
        return path


def read_meta(model: onnx.ModelProto, path: str = "model") -> ModelMeta:
    """The ModelMeta that ccnet-export wrote into the ONNX metadata (one-line error if absent)."""
    from export.metadata import read_metadata

    try:
        return read_metadata(model)
    except CCNetError as e:
        raise CCNetError(f"{path}: {e} (calibration needs the model's pre-processing)") from None


def load_source(path: str) -> SourceModel:
    """Read an FP32 ccnet-export ONNX; refuse quantized, FP16 and metadata-less files."""
    model = load_onnx(path)
    meta = read_meta(model, path)
    model, _ = strip_label_head(model)  # calibrate the logits part; quantize re-attaches the head
    if is_quantized(model):
        raise CCNetError(f"{path} is already quantized (it has Q/DQ or integer nodes): "
                         "calibrate the FP32 ONNX from ccnet-export instead")
    if meta.extra.get("precision", "fp32") != "fp32" or any(
            i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer):
        raise CCNetError(f"{path} is not an FP32 model (precision "
                         f"{meta.extra.get('precision', 'fp16')}): calibrate the FP32 export "
                         "(INT8 files keep their float layers in FP32)")
    name, shape = image_input(model, path)
    return SourceModel(path, model, meta, name, shape, file_sha256(path))
