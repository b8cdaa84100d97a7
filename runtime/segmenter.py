"""``Segmenter``: one model file (or zoo name) → label maps, with the exact shared processing.

The runner is picked by file type (.onnx → ONNX Runtime, .engine/.plan → TensorRT, .pth/.pt or a
zoo/built-in name or URL → PyTorch); the metadata comes from the model itself (ONNX
``metadata_props``, the engine's side file, the checkpoint), and ``ccnet.processing.segment``
does resize, normalize, whole/slide, resize back and argmax exactly as the PyTorch path does.
"""
from __future__ import annotations

import os
import re
from typing import Optional

import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.meta import ModelMeta
from ccnet.processing import Prediction, segment
from ccnet.runner import Runner

ONNX_EXTS = (".onnx",)
ENGINE_EXTS = (".engine", ".plan", ".trt")
TORCH_EXTS = (".pth", ".pt")
BACKENDS = {"onnxruntime": "ort", "ort": "ort", "onnx": "ort", "tensorrt": "trt", "trt": "trt",
            "pytorch": "torch", "torch": "torch"}


def _is_model_name(model: str) -> bool:
    from ccnet.zoo import BUILTIN, ZOO

    return model in ZOO or model in BUILTIN or bool(re.match(r"^(https?|ftp)://", model))


def backend_for(model: str) -> str:
    """"ort", "trt" or "torch" for a model path/name; one-line error for anything else."""
    ext = os.path.splitext(model)[1].lower()
    if ext in ONNX_EXTS:
        return "ort"
    if ext in ENGINE_EXTS:
        return "trt"
    if ext in TORCH_EXTS or _is_model_name(model):
        return "torch"
    if not os.path.exists(model):
        if not ext and "/" not in model and os.sep not in model:
            return "torch"  # a model name: the zoo lookup names the closest known one
        raise CCNetError(f"model not found: {model} (give a .onnx, .engine or .pth file, or a zoo "
                         "name)")
    raise CCNetError(f"unsupported model file type {ext or '(none)'!r} for {model}: use .onnx "
                     "(ONNX Runtime), .engine/.plan (TensorRT) or .pth (PyTorch)")


def open_runner(model: str, backend: Optional[str] = None, **opts) -> Runner:
    """The runner for ``model``: ``OrtRunner``, ``TrtRunner`` or ``TorchRunner`` (options go to
    its constructor, e.g. device=, threads=, plugins=, cuda_graph=, config=)."""
    if backend is not None and backend not in BACKENDS:
        raise CCNetError(f"unknown backend {backend!r}: use onnxruntime, tensorrt or pytorch")
    kind = BACKENDS[backend] if backend else backend_for(model)
    if kind == "ort":
        from .runners import OrtRunner

        return OrtRunner(model, **opts)
    if kind == "trt":
        from .trt_runner import TrtRunner

        return TrtRunner(model, **opts)
    return open_torch_runner(model, **opts)


def open_torch_runner(checkpoint: str, config=None, device: str = "cpu") -> Runner:
    """The PyTorch runner for a checkpoint, zoo/built-in name or URL (needs torch)."""
    try:
        from ccnet.checkpoint import load_model
        from ccnet.inference import TorchRunner
    except ImportError as e:
        raise CCNetError(f"PyTorch is needed for checkpoints ({first_line(e)}): pip install "
                         "torch, or export the model to ONNX and run that") from None
    if device != "cpu" and not device.startswith("cuda"):
        raise CCNetError(f"unknown device {device!r}: use cpu or cuda[:N]")
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CCNetError(f"device {device!r} requested but CUDA is not available: use cpu")
    return TorchRunner(load_model(checkpoint, config=config, device=device))


class Segmenter:
    """Segment BGR uint8 images with any backend.

    >>> seg = Segmenter("model.onnx")          # or .engine, .pth, a zoo name
    >>> labels = seg.segment(cv2.imread("x.jpg"))   # H×W int64 class indices

    ``meta``: override the model's metadata (needed only for files that carry none).
    Models exported with ``--output labels`` are refused: slide windows and the resize back to
    the original size average/interpolate *logits*, which a labels output no longer has.
    """

    def __init__(self, model: str, backend: Optional[str] = None,
                 meta: Optional[ModelMeta] = None, **opts):
        self.runner: Runner = open_runner(model, backend, **opts)
        self.model = model
        self.meta: ModelMeta = meta or self.runner.meta
        if self.meta is None:
            self.close()
            raise CCNetError(f"{model} carries no ccnet metadata: export it with ccnet-export (or "
                             "pass meta=ModelMeta(...))")
        if self.runner.output_kind != "logits":
            self.close()
            raise CCNetError(f"{model} outputs labels, but Segmenter needs logits (resizing back "
                             "to the image and slide windows work on logits): re-export with "
                             "--output logits, or call the runner's infer() directly")

    @property
    def backend(self) -> str:
        return self.runner.name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The network pass only: N×3×h×w normalized batch → N×C×h×w logits."""
        return self.runner.infer(batch)

    def predict(self, image_bgr: np.ndarray, tta: bool = False) -> Prediction:
        """Labels and logits (C×H×W at the original size) of one BGR uint8 image."""
        return segment(image_bgr, self.meta, self.runner.infer, tta=tta)

    def segment(self, image_bgr: np.ndarray) -> np.ndarray:
        """H×W int64 label map of one BGR uint8 image."""
        return self.predict(image_bgr).labels

    __call__ = segment

    def close(self) -> None:
        """Release the backend (session, engine, device memory); safe to call twice."""
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
