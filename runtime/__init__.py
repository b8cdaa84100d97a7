"""runtime: run exported CCNet models without PyTorch (ONNX Runtime, TensorRT) or with it.

One interface for every backend: a *runner* has ``infer(batch) -> logits`` (float32
N×3×h×w normalized RGB in, N×C×h×w out) and ``meta`` (the ModelMeta written at export).
``Segmenter(model_path)`` picks the runner by file type and applies the shared pre/post-processing
of ``ccnet.processing``; ``VideoSegmenter`` pipelines it over video streams.

Nothing here imports torch or tensorrt at import time: torch only inside ``TorchRunner``,
tensorrt only inside the TensorRT build/run/inspect code (so this package runs on a Jetson-class
device that has ONNX Runtime or TensorRT but no PyTorch).
"""
from __future__ import annotations

from ccnet.lazy import lazy_getattr

_LAZY = {
    "Segmenter": "segmenter", "open_runner": "segmenter",
    "OrtRunner": "runners", "TorchRunner": "runners",
    "TrtRunner": "trt_runner",
    "VideoSegmenter": "video", "FrameResult": "video",
    "build_engine": "trt_build",
    "EngineInfo": "engine_info", "read_engine_info": "engine_info",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
