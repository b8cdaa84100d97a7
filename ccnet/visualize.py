"""Colour renderings of label maps in a model's palette (mmseg's show_result look)."""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Label map → BGR uint8 colour image (palette is RGB, as mmseg's); 255 stays black."""
    lut = np.zeros((1, 256, 3), dtype=np.uint8)
    pal = np.asarray(palette, dtype=np.uint8)[:, ::-1]
    lut[0, :len(pal)] = pal[:256]
    labels = np.asarray(labels)
    if labels.dtype != np.uint8:
        labels = np.clip(labels, 0, 255).astype(np.uint8)
    # cv2.LUT: one table look-up pass, several times faster than a numpy gather per frame.
    return cv2.LUT(cv2.merge([labels] * 3), lut)


def overlay(image_bgr: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]],
            alpha: float = 0.5) -> np.ndarray:
    """Blend the colourized label map over the image (mmseg's show_result opacity)."""
    color = colorize(labels, palette)
    return cv2.addWeighted(image_bgr, 1.0 - alpha, color, alpha, 0.0)
