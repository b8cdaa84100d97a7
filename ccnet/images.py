"""Reading images: BGR uint8 H×W×3 as mmcv's LoadImageFromFile gives them.  Torch-free."""
from __future__ import annotations

import os
from typing import Iterator, Sequence

import cv2
import numpy as np

from .errors import CCNetError, first_line
from .files import require_file
from .meta import LIMITS

# File types every tool treats as images (inputs, calibration sets, dataset folders).
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def load_image(path: str) -> np.ndarray:
    """Read an image as BGR uint8 H×W×3; one-line error if it is missing, unreadable, or larger
    than the pixel limit (``ccnet.meta.LIMITS.max_image_pixels``)."""
    require_file(path, "image")
    try:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
    except cv2.error as e:
        text = str(e)
        if "CV_IO_MAX_IMAGE_PIXELS" in text:
            raise CCNetError(f"cannot read image {path}: its header claims more pixels than "
                             "OpenCV decodes (CV_IO_MAX_IMAGE_PIXELS, 2^30 by default)") from None
        raise CCNetError(f"cannot read image {path}: OpenCV error "
                         f"{first_line(e, 200).partition('error: ')[2] or text[:200]}") from None
    if image is None:
        raise CCNetError(f"cannot read image {path}: not an image file or corrupt")
    return check_image(image, path)


def check_image(image: np.ndarray, what: str = "image") -> np.ndarray:
    """Validate an in-memory BGR image (uint8 H×W×3, within the pixel limit)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise CCNetError(f"expected a BGR uint8 H×W×3 image, got shape {shape}")
    if image.dtype != np.uint8:
        raise CCNetError(f"expected a uint8 image, got {image.dtype}: convert with astype(np.uint8)")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise CCNetError("empty image")
    pixels = image.shape[0] * image.shape[1]
    if pixels > LIMITS.max_image_pixels:
        raise CCNetError(f"{what} is {image.shape[1]}x{image.shape[0]} = {pixels} pixels "
                         f"({LIMITS.hint('max_image_pixels')}); resize it first")
    return image


def is_image_file(path: str, exts: Sequence[str] = IMAGE_EXTS) -> bool:
    return path.lower().endswith(tuple(exts))


def iter_images(folder: str, exts: Sequence[str] = IMAGE_EXTS) -> Iterator[str]:
    """Image files of a folder (recursive), sorted."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            if is_image_file(f, exts):
                yield os.path.join(root, f)
