"""runtime: run exported CCNet models without PyTorch (ONNX Runtime, TensorRT) or with it.

One interface for every backend: a *runner* (``ccnet.runner.Runner``) has ``infer(batch) ->
logits`` (float32 N×3×h×w normalized RGB in, N×C×h×w out), ``meta`` (the ModelMeta written at
export) and ``close``.
``Segmenter(model_path)`` picks the runner by file type and applies the shared pre/post-processing
of ``ccnet.processing``; ``VideoSegmenter`` pipelines it over video streams.

Nothing here imports torch or tensorrt at import time: torch only inside ``TorchRunner``,
tensorrt only inside the TensorRT build/run/inspect code (so this package runs on a Jetson-class
device that has ONNX Runtime or TensorRT but no PyTorch).  The parity report
(``runtime.parity``) compares PyTorch with the exported files, so it needs torch.
"""
from __future__ import annotations

from ccnet.lazy import lazy_getattr

_LAZY = {
    "Segmenter": "segmenter", "open_runner": "segmenter",
    "OrtRunner": "runners", "TrtRunner": "trt_runner",
    "VideoSegmenter": "video", "FrameResult": "video", "segment_video": "video_job",
    "predict_to_files": "predict", "parity_report": "parity",
    "build_engine": "trt_build", "BuildOptions": "trt_build", "compare_engine": "trt_compare",
    "EngineInfo": "engine_info", "read_engine_info": "engine_info",
}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
