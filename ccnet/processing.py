"""Pre- and post-processing shared by the PyTorch path and every runtime (numpy + cv2 only).

The network is abstracted as ``infer(batch) -> logits``: a float32 N×3×h×w normalized RGB
batch in, float32 N×C×h×w logits at the input resolution out (mmseg's ``encode_decode``, which
is also the ONNX graph contract).  Everything around it follows mmseg (docs/mmseg-inference.md):
keep-ratio resize of the uint8 BGR image → RGB → normalize → whole/slide → resize logits back to
the original size → argmax; ms+flip TTA by the mmseg 0.x rule.

Labels alone (``segment_labels``, ``labels_from_logits``) take the fast path of
``ccnet.label_resize``, which never forms the full-size C×H×W logits; ``resize_logits`` is the
exact reference it is tested against, and what ``segment`` uses when the caller asks for
full-size logits (``Prediction.logits``) or for TTA.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import CCNetError
from .images import check_image
from .label_resize import axis_table, first_argmax, resize_argmax
from .meta import ModelMeta, slide_grid

InferFn = Callable[[np.ndarray], np.ndarray]

# mmseg 0.x MultiScaleFlipAug ratios behind the published "ms+flip" mIoU.
TTA_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


# ----------------------------------------------------------------------------- preprocessing
def rescale_size(width: int, height: int, scale: Sequence[int]) -> Tuple[int, int]:
    """mmcv.rescale_size with keep_ratio: returns (new_w, new_h)."""
    s = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return max(1, int(width * s + 0.5)), max(1, int(height * s + 0.5))  # 1×4000 keeps 1 px


def resize_keep_ratio(image: np.ndarray, scale: Sequence[int],
                      out: Optional[np.ndarray] = None) -> np.ndarray:
    """Resize the uint8 BGR image with mmcv's keep-ratio rule and INTER_LINEAR (into ``out``
    when it has the right shape)."""
    h, w = image.shape[:2]
    new_w, new_h = rescale_size(w, h, scale)
    if (new_w, new_h) == (w, h):
        return image
    if out is not None and out.shape != (new_h, new_w, 3):
        out = None
    return cv2.resize(image, (new_w, new_h), dst=out, interpolation=cv2.INTER_LINEAR)


@functools.lru_cache(maxsize=16)
def _normalize_tables(mean: Tuple[float, ...], std: Tuple[float, ...]) -> Tuple[np.ndarray, ...]:
    """Per channel, (v - mean) / std in float32 for every uint8 v: normalizing a uint8 image is
    a 256-entry table look-up, bit-identical to the float32 arithmetic."""
    values = np.arange(256, dtype=np.float32)
    return tuple((values - np.float32(m)) / np.float32(s) for m, s in zip(mean, std))


def _source_channels(meta: ModelMeta) -> Tuple[int, int, int]:
    """Which BGR channel each network input channel reads."""
    return (2, 1, 0) if meta.bgr_to_rgb else (0, 1, 2)


class Preprocessor:
    """mmseg pre-processing (``preprocess``) in one resize and one look-up pass per channel, into
    kept buffers: no float64, no per-call allocation once the frame size repeats.

    A returned batch is overwritten by the ``buffers``-th next call, so a pipeline holding k
    batches at once needs ``buffers > k``; not thread-safe (one per thread).
    """

    def __init__(self, meta: ModelMeta, buffers: int = 1):
        self.meta = meta
        self.tables = _normalize_tables(meta.mean, meta.std)
        self.sources = _source_channels(meta)
        self._resized: Optional[np.ndarray] = None
        self._planes: List[np.ndarray] = []
        self._batches: List[Optional[np.ndarray]] = [None] * max(1, int(buffers))
        self._next = 0

    def _batch_buffer(self, h: int, w: int) -> np.ndarray:
        slot = self._next
        self._next = (slot + 1) % len(self._batches)
        if self._batches[slot] is None or self._batches[slot].shape != (1, 3, h, w):
            self._batches[slot] = np.empty((1, 3, h, w), np.float32)
        return self._batches[slot]

    def normalize(self, image_bgr: np.ndarray, out: np.ndarray) -> np.ndarray:
        """BGR uint8 H×W×3 → normalized 3×H×W float32 written into ``out``."""
        h, w = image_bgr.shape[:2]
        if not self._planes or self._planes[0].shape != (h, w):
            self._planes = [np.empty((h, w), np.uint8) for _ in range(3)]
        cv2.split(image_bgr, self._planes)
        for channel, (source, table) in enumerate(zip(self.sources, self.tables)):
            cv2.LUT(self._planes[source], table, dst=out[channel])
        return out

    def __call__(self, image_bgr: np.ndarray, scale: Optional[Sequence[int]] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        """Original BGR image → network input 1×3×h×w at the test scale (or ``scale``); ``out``:
        a 3×h×w (or 1×3×h×w) float32 array to fill instead of a kept buffer (a batch row)."""
        check_image(image_bgr)
        resized = resize_keep_ratio(image_bgr, scale or self.meta.test_scale, self._resized)
        if resized is not image_bgr:
            self._resized = resized
        h, w = resized.shape[:2]
        batch = self._batch_buffer(h, w) if out is None else out.reshape(1, 3, h, w)
        self.normalize(resized, batch[0])
        return batch


def normalize(image_bgr: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """BGR uint8 H×W×3 → normalized RGB float32 3×H×W (mmseg SegDataPreProcessor)."""
    h, w = image_bgr.shape[:2]
    return Preprocessor(meta).normalize(image_bgr, np.empty((3, h, w), np.float32))


def preprocess(image_bgr: np.ndarray, meta: ModelMeta,
               scale: Optional[Sequence[int]] = None) -> np.ndarray:
    """Original BGR image → network input 1×3×h×w at the test scale (or ``scale``); a fresh
    array (``Preprocessor`` reuses its buffers)."""
    return Preprocessor(meta)(image_bgr, scale)


# ----------------------------------------------------------------------------- network passes
def slide_windows(height: int, width: int, crop: Sequence[int],
                  stride: Sequence[int]) -> List[Tuple[int, int, int, int]]:
    """mmseg slide_inference windows as (y1, y2, x1, x2); the last window shifts back inside."""
    h_crop, w_crop = crop
    h_stride, w_stride = stride
    h_grids, w_grids = slide_grid(height, h_crop, h_stride), slide_grid(width, w_crop, w_stride)
    windows = []
    for hi in range(h_grids):
        for wi in range(w_grids):
            y1, x1 = hi * h_stride, wi * w_stride
            y2, x2 = min(y1 + h_crop, height), min(x1 + w_crop, width)
            y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
            windows.append((y1, y2, x1, x2))
    return windows


def _check_logits(logits: np.ndarray, batch: np.ndarray, num_classes: int) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float32)
    expected = (batch.shape[0], num_classes) + tuple(batch.shape[2:])
    if logits.shape != expected:
        raise CCNetError(f"the model returned logits of shape {logits.shape}, expected {expected}:"
                         " is the model exported with --output logits for these metadata?")
    return logits


def network_logits(batch: np.ndarray, meta: ModelMeta, infer: InferFn) -> np.ndarray:
    """Run whole or slide inference on a preprocessed N×3×h×w batch → N×C×h×w logits."""
    if meta.mode == "whole":
        return _check_logits(infer(batch), batch, meta.num_classes)
    n, _, h, w = batch.shape
    summed = np.zeros((n, meta.num_classes, h, w), dtype=np.float32)
    count = np.zeros((1, 1, h, w), dtype=np.float32)
    for y1, y2, x1, x2 in slide_windows(h, w, meta.crop_size, meta.stride):
        crop = np.ascontiguousarray(batch[:, :, y1:y2, x1:x2])
        summed[:, :, y1:y2, x1:x2] += _check_logits(infer(crop), crop, meta.num_classes)
        count[:, :, y1:y2, x1:x2] += 1
    return summed / count  # mmseg averages logits, not probabilities


# ----------------------------------------------------------------------------- postprocessing
def resize_logits(logits: np.ndarray, size: Tuple[int, int], align_corners: bool) -> np.ndarray:
    """Bilinear resize of ...×h×w float maps to ``size`` = (H, W), as F.interpolate does: the
    exact reference (full-size output; labels come from ``labels_from_logits``)."""
    h_out, w_out = size
    h_in, w_in = logits.shape[-2:]
    logits = logits.astype(np.float32, copy=False)
    if (h_in, w_in) == (h_out, w_out):
        return logits
    y0, y1, ly = axis_table(h_in, h_out, align_corners)
    x0, x1, lx = axis_table(w_in, w_out, align_corners)
    cols = logits[..., x0] * (1 - lx) + logits[..., x1] * lx
    ly = ly[:, None]
    return cols[..., y0, :] * (1 - ly) + cols[..., y1, :] * ly


def labels_from_logits(logits: np.ndarray, image_shape: Sequence[int],
                       meta: ModelMeta) -> np.ndarray:
    """Network logits C×h×w → H×W label map at the original image size (mmseg's resize back
    with the config's align_corners, then argmax; ``ccnet.label_resize``), label_dtype(C)."""
    return resize_argmax(logits, tuple(image_shape[:2]), meta.align_corners)


def softmax(logits: np.ndarray, axis: int = 0) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def restore_size(logits: np.ndarray, image_shape: Sequence[int], meta: ModelMeta) -> np.ndarray:
    """Network logits C×h×w → C×H×W at the original image size (config align_corners)."""
    return resize_logits(logits, tuple(image_shape[:2]), meta.align_corners)


def image_logits(image_bgr: np.ndarray, meta: ModelMeta, infer: InferFn,
                 scale: Optional[Sequence[int]] = None, flip: bool = False) -> np.ndarray:
    """One pass: preprocess at ``scale`` → network → logits C×H×W at the original size."""
    image = image_bgr[:, ::-1] if flip else image_bgr
    batch = preprocess(image, meta, scale)
    logits = restore_size(network_logits(batch, meta, infer)[0], image_bgr.shape, meta)
    return logits[:, :, ::-1] if flip else logits


def tta_scales(meta: ModelMeta, ratios: Sequence[float] = TTA_RATIOS) -> List[Tuple[int, int]]:
    """mmseg 0.x MultiScaleFlipAug target scales: (int(S_w*r), int(S_h*r))."""
    sw, sh = meta.test_scale
    return [(int(sw * r), int(sh * r)) for r in ratios]


@dataclass
class Prediction:
    """``labels``: H×W class map in ``label_dtype(C)``; ``logits``: C×H×W float32 at the
    original size (with ``tta=True``, the averaged softmax probabilities, whose argmax gives the
    labels; None where only the labels were asked for)."""

    labels: np.ndarray
    logits: Optional[np.ndarray]


def segment(image_bgr: np.ndarray, meta: ModelMeta, infer: InferFn,
            tta: bool = False) -> Prediction:
    """Full mmseg inference of one BGR image through ``infer``, with full-size logits (for the
    labels alone, ``segment_labels`` is faster and needs far less memory)."""
    check_image(image_bgr)
    if not tta:
        logits = image_logits(image_bgr, meta, infer)
    else:
        probs = [softmax(image_logits(image_bgr, meta, infer, scale, flip))
                 for scale in tta_scales(meta) for flip in (False, True)]
        logits = np.mean(probs, axis=0, dtype=np.float32)
    return Prediction(labels=first_argmax(logits), logits=logits)


def segment_labels(image_bgr: np.ndarray, meta: ModelMeta, infer: InferFn,
                   preprocessor: Optional[Preprocessor] = None) -> np.ndarray:
    """The label map of one BGR image through ``infer`` (no TTA), without full-size logits:
    the fast path of ``segment(...).labels``."""
    batch = (preprocessor or Preprocessor(meta))(image_bgr)
    return labels_from_logits(network_logits(batch, meta, infer)[0], image_bgr.shape, meta)
