"""calib: INT8 post-training quantization (explicit Q/DQ) and the mIoU parity report.

- ``calib.quantize.quantize``: FP32 ONNX + calibration images (or a calibration cache) → Q/DQ
  INT8 ONNX that TensorRT 10/11 builds as a strongly typed network and ONNX Runtime runs
  (console script ``ccnet-calibrate``).
- ``calib.parity.parity_report``: PyTorch FP32 vs every exported model on one dataset: mIoU,
  ΔmIoU, per-class ΔIoU, argmax pixel agreement (console script ``ccnet-parity``).
"""
from __future__ import annotations

_LAZY = {"quantize": "quantize", "load_cache": "quantize", "parity_report": "parity"}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'calib' has no attribute {name!r}")


__all__ = list(_LAZY)
