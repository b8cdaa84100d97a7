"""export: CCNet → ONNX with the criss-cross attention as one custom node (plus FP16).

``export_onnx`` and ``convert_to_fp16`` import torch/onnxconverter lazily; the graph helpers and
metadata need only onnx.
"""
from ccnet.lazy import lazy_getattr

from .graph import cca_functions, cca_nodes, contract
from .metadata import read_metadata, set_metadata
from .onnx_file import load_onnx

_LAZY = {"export_onnx": "to_onnx", "convert_to_fp16": "to_fp16"}

__getattr__ = lazy_getattr(__name__, _LAZY)

__all__ = ["cca_nodes", "cca_functions", "contract", "read_metadata", "set_metadata",
           "load_onnx", *_LAZY]
