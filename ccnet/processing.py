"""Pre- and post-processing shared by the PyTorch path and every runtime (numpy + cv2 only).

The network is abstracted as ``infer(batch) -> logits``: a float32 N×3×h×w normalized RGB
batch in, float32 N×C×h×w logits at the input resolution out (mmseg's ``encode_decode``, which
is also the ONNX graph contract).  Everything around it follows mmseg (docs/mmseg-inference.md):
keep-ratio resize of the uint8 BGR image → RGB → normalize → whole/slide → resize logits back to
the original size → argmax; ms+flip TTA by the mmseg 0.x rule.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import CCNetError
from .images import check_image
from .meta import ModelMeta

InferFn = Callable[[np.ndarray], np.ndarray]

# mmseg 0.x MultiScaleFlipAug ratios behind the published "ms+flip" mIoU.
TTA_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


# ----------------------------------------------------------------------------- preprocessing
def rescale_size(width: int, height: int, scale: Sequence[int]) -> Tuple[int, int]:
    """mmcv.rescale_size with keep_ratio: returns (new_w, new_h)."""
    s = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(width * s + 0.5), int(height * s + 0.5)


def resize_keep_ratio(image: np.ndarray, scale: Sequence[int]) -> np.ndarray:
    """Resize the uint8 BGR image with mmcv's keep-ratio rule and INTER_LINEAR."""
    h, w = image.shape[:2]
    new_w, new_h = rescale_size(w, h, scale)
    if (new_w, new_h) == (w, h):
        return image
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)


def normalize(image_bgr: np.ndarray, meta: ModelMeta) -> np.ndarray:
    """BGR uint8 H×W×3 → normalized RGB float32 3×H×W (mmseg SegDataPreProcessor)."""
    image = image_bgr[:, :, ::-1] if meta.bgr_to_rgb else image_bgr
    mean = np.asarray(meta.mean, dtype=np.float32)
    std = np.asarray(meta.std, dtype=np.float32)
    chw = (image.astype(np.float32) - mean) / std
    return np.ascontiguousarray(chw.transpose(2, 0, 1))


def preprocess(image_bgr: np.ndarray, meta: ModelMeta,
               scale: Optional[Sequence[int]] = None) -> np.ndarray:
    """Original BGR image → network input 1×3×h×w at the test scale (or ``scale``)."""
    check_image(image_bgr)
    resized = resize_keep_ratio(image_bgr, scale or meta.test_scale)
    return normalize(resized, meta)[None]


# ----------------------------------------------------------------------------- network passes
def slide_windows(height: int, width: int, crop: Sequence[int],
                  stride: Sequence[int]) -> List[Tuple[int, int, int, int]]:
    """mmseg slide_inference windows as (y1, y2, x1, x2); the last window shifts back inside."""
    h_crop, w_crop = crop
    h_stride, w_stride = stride
    h_grids = max(height - h_crop + h_stride - 1, 0) // h_stride + 1
    w_grids = max(width - w_crop + w_stride - 1, 0) // w_stride + 1
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
def _interp_axis(in_size: int, out_size: int, align_corners: bool):
    """Source indices and weights of torch's bilinear interpolation along one axis.

    Coordinates are computed in float32 as torch's CPU kernel does, so results match
    F.interpolate to float32 rounding rather than to the float64 ideal.
    """
    dst = np.arange(out_size, dtype=np.float32)
    if align_corners:
        scale = np.float32((in_size - 1) / (out_size - 1) if out_size > 1 else 0.0)
        src = dst * scale
    else:
        scale = np.float32(in_size / out_size)
        src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    lam = src - i0.astype(np.float32)
    return i0, i1, lam


def resize_logits(logits: np.ndarray, size: Tuple[int, int], align_corners: bool) -> np.ndarray:
    """Bilinear resize of ...×h×w float maps to ``size`` = (H, W), as F.interpolate does."""
    h_out, w_out = size
    h_in, w_in = logits.shape[-2:]
    logits = logits.astype(np.float32, copy=False)
    if (h_in, w_in) == (h_out, w_out):
        return logits
    y0, y1, ly = _interp_axis(h_in, h_out, align_corners)
    x0, x1, lx = _interp_axis(w_in, w_out, align_corners)
    cols = logits[..., x0] * (1 - lx) + logits[..., x1] * lx
    ly = ly[:, None]
    return cols[..., y0, :] * (1 - ly) + cols[..., y1, :] * ly


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
    """``labels``: H×W int64 class map; ``logits``: C×H×W float32 at the original size (with
    ``tta=True``, the averaged softmax probabilities, whose argmax gives the labels)."""

    labels: np.ndarray
    logits: np.ndarray


def segment(image_bgr: np.ndarray, meta: ModelMeta, infer: InferFn,
            tta: bool = False) -> Prediction:
    """Full mmseg inference of one BGR image through ``infer``."""
    check_image(image_bgr)
    if not tta:
        logits = image_logits(image_bgr, meta, infer)
    else:
        probs = [softmax(image_logits(image_bgr, meta, infer, scale, flip))
                 for scale in tta_scales(meta) for flip in (False, True)]
        logits = np.mean(probs, axis=0, dtype=np.float32)
    return Prediction(labels=logits.argmax(axis=0), logits=logits)
