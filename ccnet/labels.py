"""Label maps: the integer types they are stored in (one rule for arrays, one for image files)
and the label-head contract through which a model file returns them directly."""
from __future__ import annotations

from typing import Optional, Sequence

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


# The label head (``ccnet export --label-head``): the graph resizes its logits to a requested
# size and takes the argmax.  The size travels as the *shape* of a second input, 0×H×W with no
# data, so one file (one TensorRT engine, whose profiles bound input shapes) serves every image
# size; the output is an N×H×W map in label_dtype(num_classes).
LABEL_HEAD_KEY = "label_head"  # ModelMeta.extra entry written at export
LABEL_HEAD_INPUT = "output_size"
LABEL_HEAD_OUTPUT = "labels"


def label_head_feed(size: Sequence[int]) -> np.ndarray:
    """The value to feed the size input for an H×W output: an empty 0×H×W float32 array."""
    height, width = (int(s) for s in size[:2])
    return np.empty((0, height, width), np.float32)


def label_head_of(meta) -> Optional[dict]:
    """The label-head description in a ModelMeta's extra (None when the file returns logits)."""
    extra = getattr(meta, "extra", None) or {}
    head = extra.get(LABEL_HEAD_KEY)
    return head if isinstance(head, dict) else None
