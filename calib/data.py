"""Calibration data: chosen photos → the network inputs inference would feed.

Every photo goes through exactly the inference pre-processing (``ccnet.processing.preprocess``
with the ONNX's ModelMeta: mmseg's keep-ratio resize to the test scale, BGR→RGB, mean/std), so
the activation statistics are those of deployment.  Photos keep their own size: a 500×375 VOC
photo becomes a 1×3×341×256 input, an ADE20K one another shape; ``calib.calibrate`` collects
them shape by shape and merges the histograms (see there).  A slide-mode model yields its
slide windows; a model exported with static input dims gets the input resampled to them.
"""
from __future__ import annotations

import logging
import warnings
from collections import deque
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.meta import ModelMeta

from .selection import shuffled

LOG = logging.getLogger(__name__)


class CalibrationWarning(UserWarning):
    """A calibration photo was skipped (unreadable or not an image)."""


@dataclass
class CalibrationData:
    """Photos used, in order, with the network inputs of the calibration photos (one list of
    batches per photo)."""

    images: List[str] = field(default_factory=list)
    inputs: List[List[np.ndarray]] = field(default_factory=list)
    holdout: List[str] = field(default_factory=list)  # photos that only measure agreement
    holdout_photos: List[np.ndarray] = field(default_factory=list, repr=False)  # decoded, BGR
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def batches(self) -> List[np.ndarray]:
        return [b for _, b in self.items]

    @property
    def items(self) -> List[Tuple[str, np.ndarray]]:
        """(photo path, batch) for every batch, in order: what the calibrators read."""
        return [(path, b) for path, per_image in zip(self.images, self.inputs) for b in per_image]


def network_inputs(image_bgr: np.ndarray, meta: ModelMeta,
                   input_shape: Sequence = (None,) * 4) -> List[np.ndarray]:
    """The float32 batches inference feeds the network for one photo (slide: one per window)."""
    from ccnet.processing import preprocess, resize_logits, slide_windows

    batch = preprocess(image_bgr, meta)
    if meta.mode == "slide":
        _, _, h, w = batch.shape
        batches = [batch[:, :, y1:y2, x1:x2]
                   for y1, y2, x1, x2 in slide_windows(h, w, meta.crop_size, meta.stride)]
    else:
        batches = [batch]
    # A model exported with static dims takes exactly that shape: resample the normalized input
    # (only the activation statistics matter here).
    batch_dim, _, static_h, static_w = input_shape
    fitted = []
    for b in batches:
        if static_h and static_w and b.shape[2:] != (static_h, static_w):
            b = resize_logits(b, (static_h, static_w), meta.align_corners)
        if batch_dim and batch_dim != b.shape[0]:
            b = np.repeat(b, batch_dim, axis=0)
        fitted.append(np.ascontiguousarray(b, dtype=np.float32))
    return fitted


def read_photos(paths: Sequence[str], meta: ModelMeta, want: int,
                input_shape: Sequence = (None,) * 4, keep_last: int = 0):
    """The first ``want`` readable photos of ``paths`` and their network inputs; unreadable
    files are skipped with a CalibrationWarning.  Returns (used, inputs, skipped, decoded):
    ``decoded`` holds the BGR pixels of the last ``keep_last`` used photos (the held-out ones,
    which the agreement probe reads whole), so no photo is decoded twice and only those stay
    in memory."""
    from ccnet.images import load_image

    used, inputs, skipped = [], [], []
    decoded: deque = deque(maxlen=keep_last)
    for path in paths:
        if len(used) >= want:
            break
        try:
            image = load_image(path)
            inputs.append(network_inputs(image, meta, input_shape))
        except Exception as e:  # CCNetError, or OpenCV refusing an extreme size: skip the photo
            reason = first_line(e) if isinstance(e, CCNetError) else \
                f"{path}: cannot pre-process ({type(e).__name__}: {first_line(e, 120)})"
            warnings.warn(f"skipping calibration image: {reason}", CalibrationWarning)
            skipped.append((path, reason))
            continue
        used.append(path)
        decoded.append(image)
    if not used:
        raise CCNetError(f"none of the {len(skipped)} photo(s) could be read (first: "
                         f"{skipped[0][1]}): pass readable photos with --images or --list")
    return used, inputs, skipped, list(decoded)


def load_calibration_data(candidates: Sequence[str], meta: ModelMeta, num_images: int,
                          holdout: int = 0, seed: int = 0,
                          input_shape: Sequence = (None,) * 4,
                          holdout_candidates: Optional[Sequence[str]] = None) -> CalibrationData:
    """Read photos in seeded-shuffled order until ``num_images`` (+ ``holdout``) are usable.

    Held-out photos (never calibrated on; they measure agreement) are every readable photo of
    ``holdout_candidates`` when given, else the last ``holdout`` usable photos of the shuffled
    candidates.  Unreadable files are skipped with a CalibrationWarning and listed in
    ``skipped``.
    """
    data = CalibrationData()
    extra = holdout if holdout_candidates is None else 0
    used, inputs, data.skipped, last = read_photos(shuffled(candidates, seed), meta,
                                                   num_images + extra, input_shape, extra)
    if extra and len(used) <= extra:
        raise CCNetError(f"only {len(used)} readable photo(s): measuring agreement needs "
                         f"{extra} held-out photo(s) plus at least one to calibrate on; add "
                         "photos or lower --holdout-images")
    split = min(num_images, len(used) - extra)
    data.images, data.inputs = used[:split], inputs[:split]
    data.holdout, data.holdout_photos = used[split:], last  # the last ``extra`` used photos
    if holdout_candidates is not None:
        data.holdout, _, skipped, data.holdout_photos = read_photos(
            holdout_candidates, meta, len(holdout_candidates), input_shape,
            len(holdout_candidates))
        data.skipped += skipped
    LOG.debug("calibration photos (%d): %s", len(data.images), ", ".join(data.images))
    if data.holdout:
        LOG.debug("held-out photos (%d): %s", len(data.holdout), ", ".join(data.holdout))
    return data
