"""calib: INT8 post-training quantization (explicit Q/DQ).

- ``calib.quantize.quantize``: FP32 ONNX + calibration images (or a calibration cache) → Q/DQ
  INT8 ONNX that TensorRT 10/11 builds as a strongly typed network and ONNX Runtime runs
  (console script ``ccnet-calibrate``).
"""
from __future__ import annotations

from ccnet.lazy import lazy_getattr

# (``quantize`` is also a submodule name, so the function is not re-exported here.)
_LAZY = {"load_cache": "quantize"}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
