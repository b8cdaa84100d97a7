"""The integer types label maps are stored in: one rule for arrays, one for image files."""
from __future__ import annotations

import numpy as np

# Class indices 0..254 fit uint8 with 255 left for mmseg's ignore index.
MAX_UINT8_CLASSES = 255


def label_dtype(num_classes: int) -> np.dtype:
    """Label maps in memory (Segmenter, video, engines): uint8 up to 255 classes, else int32
    (TensorRT has no 16-bit integer outputs, so int32 is what an engine can return)."""
    return np.dtype(np.uint8 if num_classes <= MAX_UINT8_CLASSES else np.int32)


def png_label_dtype(num_classes: int) -> np.dtype:
    """Label maps in PNG files: uint8 up to 255 classes, else 16-bit (PNG has no 32-bit grey)."""
    return np.dtype(np.uint8 if num_classes <= MAX_UINT8_CLASSES else np.uint16)


def as_png_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """A label map ready for ``cv2.imwrite`` as a lossless PNG."""
    return np.asarray(labels).astype(png_label_dtype(num_classes), copy=False)
