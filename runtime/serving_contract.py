"""The tensor contract of a served CCNet model, shared by ``ccnet serve`` (PyTriton) and the
Python-backend model of an exported Triton repository, so both answer the same requests alike.

Inputs (one of the two per request):
- ``image``: UINT8 [-1, -1, 3], the decoded BGR frame (with a leading batch dimension when the
  model's max batch size is > 0);
- ``encoded``: BYTES [1], a JPEG/PNG/BMP file's contents, decoded server-side as
  ``cv2.imread`` decodes files (BGR).

Outputs: ``labels`` UINT8 [-1, -1] (INT32 for models with more than 255 classes, the
``ccnet.labels.label_dtype`` rule) at the input image size; ``logits`` FP32 [C, -1, -1] at the
input image size, only when the server enables it.

Bad requests raise :class:`BadRequest` with a one-line reason.  Numpy + OpenCV only.
"""
from __future__ import annotations

from typing import List, Optional

import cv2
import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.images import check_image
from ccnet.labels import label_dtype

IMAGE = "image"
ENCODED = "encoded"
LABELS = "labels"
LOGITS = "logits"

# Largest image side a server accepts unless told otherwise: the resize back to the input size
# holds C float32 planes of the full image, so this bounds a request's memory.
DEFAULT_MAX_IMAGE_SIDE = 8192


class BadRequest(CCNetError):
    """A request the model cannot answer: the message says what is wrong and what to send."""


def labels_type_name(num_classes: int) -> str:
    """The Triton data type of the ``labels`` output: "UINT8" or "INT32"."""
    return "UINT8" if label_dtype(num_classes) == np.uint8 else "INT32"


def check_image_size(image: np.ndarray, max_side: int) -> np.ndarray:
    """Refuse an empty image, one with a side above ``max_side``, or one the segmenter refuses
    (``ccnet.images.check_image``: above the pixel limit), before it can fail a whole batch."""
    height, width = image.shape[:2]
    if height < 1 or width < 1:
        raise BadRequest(f"empty image ({height}x{width}): send an image with pixels")
    if max(height, width) > max_side:
        raise BadRequest(f"image {width}x{height} is larger than this server allows (longest "
                         f"side {max_side}): downscale it before sending")
    try:
        return check_image(image)
    except CCNetError as e:
        raise BadRequest(first_line(e)) from None


def decode_image(data, max_side: int) -> np.ndarray:
    """The BGR image of one ``encoded`` element (a JPEG/PNG/BMP file's bytes)."""
    if isinstance(data, str):
        data = data.encode("latin-1")
    if not isinstance(data, (bytes, bytearray, np.bytes_)):
        raise BadRequest(f"'{ENCODED}' must hold a file's bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise BadRequest(f"'{ENCODED}' is empty: send the bytes of a JPEG or PNG file")
    image = cv2.imdecode(np.frombuffer(bytes(data), dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadRequest(f"'{ENCODED}' ({len(data)} bytes) is not a decodable image: send a "
                         "JPEG, PNG or BMP file's bytes")
    return check_image_size(image, max_side)


def _check_image_tensor(image: np.ndarray, batched: bool) -> np.ndarray:
    rank = 4 if batched else 3
    shape = "[N, H, W, 3]" if batched else "[H, W, 3]"
    if image.dtype != np.uint8:
        raise BadRequest(f"'{IMAGE}' must be UINT8, got {image.dtype}: send the decoded 8-bit "
                         "BGR frame")
    if image.ndim != rank or image.shape[-1] != 3:
        raise BadRequest(f"'{IMAGE}' must be {shape} (BGR), got shape {list(image.shape)}")
    return image


def request_images(image: Optional[np.ndarray], encoded: Optional[np.ndarray], batched: bool,
                   max_side: int = DEFAULT_MAX_IMAGE_SIDE) -> List[np.ndarray]:
    """The BGR images of one request: its ``image`` tensor or its decoded ``encoded`` files
    (one per batch row when ``batched``)."""
    if (image is None) == (encoded is None):
        raise BadRequest(f"send exactly one of the inputs '{IMAGE}' (UINT8 BGR pixels) or "
                         f"'{ENCODED}' (a JPEG/PNG file's bytes)")
    if image is not None:
        image = _check_image_tensor(np.asarray(image), batched)
        frames = list(image) if batched else [image]
        return [check_image_size(np.ascontiguousarray(f), max_side) for f in frames]
    encoded = np.asarray(encoded, dtype=object)
    expected = 2 if batched else 1
    if encoded.ndim != expected or encoded.shape[-1] != 1:
        shape = "[N, 1]" if batched else "[1]"
        raise BadRequest(f"'{ENCODED}' must be {shape} (one file per image), got shape "
                         f"{list(encoded.shape)}")
    images = [decode_image(item, max_side) for item in encoded.reshape(-1)]
    if len({im.shape for im in images}) > 1:
        sizes = ", ".join(f"{im.shape[1]}x{im.shape[0]}" for im in images)
        raise BadRequest(f"the files of one request decode to different sizes ({sizes}): a "
                         "request's label maps form one tensor, so send them separately")
    return images


def stack_outputs(per_image: List[np.ndarray], batched: bool) -> np.ndarray:
    """One request's output tensor from its images' results (one size within a request)."""
    return np.stack(per_image) if batched else per_image[0]
