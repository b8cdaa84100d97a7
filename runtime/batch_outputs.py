"""Where ``ccnet batch`` writes, how it writes (atomically, all files of an image together) and
how a rerun knows an image is already done.

Layout under OUT, for an input with key ``k`` (its path relative to the source, no extension):

    OUT/k.png               label map (uint8 up to 255 classes, else 16-bit), always
    OUT/_overlays/k.jpg     colour overlay in the model's palette (--overlays)
    OUT/_logits/k.npy       C×H×W float32 logits at the image size (--logits)
    OUT/_summary.json       counts, throughput, per-stage time, failures of the last run

An image is done when every file it should have exists, is readable and has the image's size;
the label PNG must also have the model's label depth.  Anything else is redone.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from ccnet.files import commit_together, save_image
from ccnet.labels import png_label_dtype

SUMMARY_NAME = "_summary.json"
OVERLAY_DIR = "_overlays"
LOGITS_DIR = "_logits"
# The temp names ccnet.files.atomic_output gives files before renaming them into place; one left
# behind means a worker was killed mid-write.
_TEMP_NAME = re.compile(r"^\.tmp-[0-9a-f]{12}\.(png|jpg|npy|json)$")
_PNG_MODES = {np.dtype(np.uint8): ("L",), np.dtype(np.uint16): ("I;16", "I;16B", "I")}

Size = Tuple[int, int]  # (height, width)


@dataclass(frozen=True)
class OutputLayout:
    """The output folder of a job and which files each image gets."""

    root: str
    overlays: bool = False
    logits: bool = False

    def labels_path(self, key: str) -> str:
        return os.path.join(self.root, *f"{key}.png".split("/"))

    def overlay_path(self, key: str) -> str:
        return os.path.join(self.root, OVERLAY_DIR, *f"{key}.jpg".split("/"))

    def logits_path(self, key: str) -> str:
        return os.path.join(self.root, LOGITS_DIR, *f"{key}.npy".split("/"))

    @property
    def summary_path(self) -> str:
        return os.path.join(self.root, SUMMARY_NAME)

    def is_done(self, key: str, size: Size, num_classes: int) -> bool:
        """True when every output of ``key`` is complete for an image of ``size``."""
        if not _valid_png(self.labels_path(key), size, png_label_dtype(num_classes)):
            return False
        if self.overlays and not _valid_image(self.overlay_path(key), size, "JPEG"):
            return False
        return not self.logits or _valid_npy(self.logits_path(key), (num_classes,) + size)

    def write(self, key: str, labels: np.ndarray, overlay: Optional[np.ndarray] = None,
              logits: Optional[np.ndarray] = None) -> None:
        """Write the files of one image; they appear together or not at all."""
        outputs = [(self.labels_path(key), labels)]
        if self.overlays:
            outputs.append((self.overlay_path(key), overlay))
        writers = [(path, _image_writer(path, image)) for path, image in outputs]
        if self.logits:
            path = self.logits_path(key)
            writers.append((path, lambda tmp: np.save(tmp, logits.astype(np.float32, copy=False))))
        for path, _ in writers:
            os.makedirs(os.path.dirname(path), exist_ok=True)
        commit_together(writers)


def _image_writer(path: str, image: np.ndarray):
    return lambda tmp: save_image(tmp, image, path)


def _valid_image(path: str, size: Size, image_format: str, modes: Tuple[str, ...] = ()) -> bool:
    """A complete image file of ``format`` and ``size`` (header, plus PIL's integrity check)."""
    from PIL import Image

    if not os.path.isfile(path):
        return False
    try:
        with Image.open(path) as image:
            ok = (image.format == image_format and image.size == (size[1], size[0])
                  and (not modes or image.mode in modes))
            if ok:
                image.verify()  # PNG: walks every chunk and checks its CRC
            return ok
    except Exception:  # PIL raises many types for truncated or foreign files
        return False


def _valid_png(path: str, size: Size, dtype: np.dtype) -> bool:
    return _valid_image(path, size, "PNG", _PNG_MODES[np.dtype(dtype)])


def _valid_npy(path: str, shape: Tuple[int, ...]) -> bool:
    if not os.path.isfile(path):
        return False
    try:
        array = np.load(path, mmap_mode="r")  # reads the header only
        return array.shape == shape and array.dtype == np.float32
    except Exception:  # truncated or not an .npy
        return False


def remove_stale_temp_files(root: str) -> List[str]:
    """Remove the temp files a killed worker left in ``root`` (never a finished output).  Only
    one job may write to an output folder at a time: another job's temp files look the same."""
    removed = []
    if not os.path.isdir(root):
        return removed
    for folder, _, files in os.walk(root):
        for name in files:
            if _TEMP_NAME.match(name):
                path = os.path.join(folder, name)
                try:
                    os.remove(path)
                    removed.append(path)
                except FileNotFoundError:
                    pass
    return removed
