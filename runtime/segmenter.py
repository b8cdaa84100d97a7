"""``Segmenter``: one model file (or zoo name) → label maps, with the exact shared processing.

The runner is picked by file type (.onnx → ONNX Runtime, .engine/.plan → TensorRT, .pth/.pt or a
zoo/built-in name or URL → PyTorch); the metadata comes from the model itself (ONNX
``metadata_props``, the engine's side file, the checkpoint), and ``ccnet.processing`` does
resize, normalize, whole/slide, resize back and argmax exactly as the PyTorch path does.
"""
from __future__ import annotations

import inspect
import os
import re
from typing import Optional, Sequence

import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.labels import label_dtype, label_head_of
from ccnet.meta import ModelMeta
from ccnet.processing import (Prediction, Preprocessor, labels_from_logits, network_logits,
                              segment)
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


def runner_kind(model: str, backend: Optional[str] = None) -> str:
    """"ort", "trt" or "torch": ``backend`` when given, else by the model's file type."""
    if backend is not None and backend not in BACKENDS:
        raise CCNetError(f"unknown backend {backend!r}: use onnxruntime, tensorrt or pytorch")
    return BACKENDS[backend] if backend else backend_for(model)


def open_runner(model: str, backend: Optional[str] = None, **opts) -> Runner:
    """The runner for ``model``: ``OrtRunner``, ``TrtRunner`` or ``TorchRunner`` (options go to
    its constructor, e.g. device=, threads=, plugins=, cuda_graph=, config=)."""
    kind = runner_kind(model, backend)
    if kind == "ort":
        from .runners import OrtRunner as opener
    elif kind == "trt":
        from .trt_runner import TrtRunner as opener
    else:
        opener = open_torch_runner
    accepted = inspect.signature(opener).parameters
    unknown = sorted(k for k in opts if k not in accepted)
    if unknown:
        raise CCNetError(f"option(s) {', '.join(unknown)} do not apply to {model} "
                         f"({opener.__name__}); drop them")
    return opener(model, **opts)


def open_torch_runner(checkpoint: str, config=None, device: str = "cpu",
                      allow_nonfinite: bool = False) -> Runner:
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
    return TorchRunner(load_model(checkpoint, config=config, device=device,
                                  allow_nonfinite=allow_nonfinite))


class Segmenter:
    """Segment BGR uint8 images with any backend.

    >>> seg = Segmenter("model.onnx")          # or .engine, .pth, a zoo name
    >>> labels = seg.segment(cv2.imread("x.jpg"))   # H×W uint8 (int32 over 255 classes)

    ``segment`` takes the fast path: pre-processing into reused buffers, then either the file's
    label head (exported with ``--label-head``: resize back and argmax run in the graph, only
    the label map leaves the backend) or the host resize + argmax of ``ccnet.label_resize``,
    which never forms the full-size logits.  ``predict`` returns full-size logits as well.
    ``meta``: override the model's metadata (needed only for files that carry none).  Files
    exported with ``--output labels`` (argmax at the network resolution) are refused: the resize
    back to the image and slide windows work on logits.  Not thread-safe: one per thread.
    """

    def __init__(self, model: str, backend: Optional[str] = None,
                 meta: Optional[ModelMeta] = None, **opts):
        if meta is not None:
            if not isinstance(meta, ModelMeta):
                raise CCNetError(f"meta must be a ccnet.meta.ModelMeta, not {type(meta).__name__}")
            meta.validate()  # a user's ModelMeta may have been changed after construction
        self.runner: Runner = open_runner(model, backend, **opts)
        self.model = model
        self.meta: ModelMeta = meta or self.runner.meta
        try:
            self._check_output()
        except CCNetError:
            self.close()
            raise
        self.label_head = self.runner.output_kind == "label_map"
        self.preprocessor = Preprocessor(self.meta)

    def _check_output(self) -> None:
        if self.meta is None:
            raise CCNetError(f"{self.model} carries no ccnet metadata: export it with ccnet-export "
                             "(or pass meta=ModelMeta(...))")
        kind = self.runner.output_kind
        if kind == "labels":
            raise CCNetError(f"{self.model} outputs labels at the network resolution, but "
                             "Segmenter needs logits (resizing back to the image and slide "
                             "windows work on logits): re-export with --output logits, or with "
                             "--label-head for label maps at the image size")
        head = label_head_of(self.runner.meta)
        if kind == "label_map" and self.meta.mode != "whole":
            raise CCNetError(f"{self.model} has a label head, which serves whole-image inference "
                             "only: slide mode averages logits over windows, so export it "
                             "without --label-head")
        if kind == "label_map" and head and bool(head.get("align_corners")) != \
                self.meta.align_corners:
            raise CCNetError(f"{self.model}'s label head resizes with align_corners="
                             f"{head.get('align_corners')}, the metadata given says "
                             f"{self.meta.align_corners}: re-export for that setting")

    @property
    def backend(self) -> str:
        return self.runner.name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The network pass only: N×3×h×w normalized batch → N×C×h×w logits."""
        return self.runner.infer(batch)

    def network_pass(self, batch: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
        """The backend's part for a preprocessed N×3×h×w batch of images of ``image_shape``:
        N×H×W label maps (label head) or N×C×h×w logits (whole or slide windows)."""
        if self.label_head:
            return self.runner.infer_labels(batch, tuple(image_shape[:2]))
        return network_logits(batch, self.meta, self.runner.infer)

    def finish(self, output: np.ndarray, image_shape: Sequence[int]) -> np.ndarray:
        """One image's ``network_pass`` output → its H×W label map in
        ``label_dtype(num_classes)``."""
        if self.label_head:
            return output.astype(label_dtype(self.meta.num_classes), copy=False)
        return labels_from_logits(output, image_shape, self.meta)

    def require_logits(self, remedy: str) -> None:
        """One-line CCNetError naming ``remedy`` when the model has a label head: it returns
        label maps, never logits."""
        if self.label_head:
            raise CCNetError(f"{self.model} returns label maps (label head), not logits: "
                             f"{remedy}, or export without --label-head for logits")

    def predict(self, image_bgr: np.ndarray, tta: bool = False) -> Prediction:
        """Labels and logits (C×H×W at the original size) of one BGR uint8 image."""
        self.require_logits("use segment() (no TTA)")
        return segment(image_bgr, self.meta, self.runner.infer, tta=tta)

    def segment(self, image_bgr: np.ndarray, tta: bool = False) -> np.ndarray:
        """H×W label map of one BGR uint8 image (uint8 up to 255 classes, else int32)."""
        if tta:
            return self.predict(image_bgr, tta=True).labels
        batch = self.preprocessor(image_bgr)
        return self.finish(self.network_pass(batch, image_bgr.shape)[0], image_bgr.shape)

    __call__ = segment

    def close(self) -> None:
        """Release the backend (session, engine, device memory); safe to call twice."""
        self.runner.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
