"""calib: INT8 post-training quantization (explicit Q/DQ), one job per module.

- ``quantize.quantize``: FP32 ONNX + calibration photos (or a calibration cache) → Q/DQ INT8
  ONNX that TensorRT 10/11 builds as a strongly typed network and ONNX Runtime runs
  (``ccnet calibrate``); orchestration only.
- ``options.QuantOptions``: every choice of a run, checked in one place.
- ``selection`` (which photos), ``data`` (their network inputs), ``calibrate`` (ranges over
  inputs of any sizes), ``clip_search`` (per-tensor thresholds by Conv output error),
  ``cache`` (the ranges as a checked JSON file).
- ``placement`` (Q/DQ rules per target, a table), ``qdq_graph`` (the graph edits),
  ``sensitivity`` (Convs kept in float to reach an agreement target), ``modelopt_quantizer``
  (NVIDIA ModelOpt's placement, optional).
"""
from __future__ import annotations

from ccnet.lazy import lazy_getattr

# (``quantize`` is also a submodule name, so the function is not re-exported here.)
_LAZY = {"load_cache": "cache", "save_cache": "cache", "QuantOptions": "options"}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
