"""export: CCNet → ONNX with the criss-cross attention as one custom node (plus FP16).

``export_onnx`` and ``convert_to_fp16`` import torch/onnxconverter lazily; ``cca_nodes`` and
``read_metadata`` need only onnx.
"""
from .graph import cca_functions, cca_nodes, contract
from .metadata import read_metadata, set_metadata


def __getattr__(name):
    if name == "export_onnx":
        from .to_onnx import export_onnx

        return export_onnx
    if name == "convert_to_fp16":
        from .to_fp16 import convert_to_fp16

        return convert_to_fp16
    raise AttributeError(f"module 'export' has no attribute {name!r}")


__all__ = ["cca_nodes", "cca_functions", "contract", "read_metadata", "set_metadata",
           "export_onnx", "convert_to_fp16"]
