"""Segment image files into label-map PNGs (or colour overlays) with any model form."""
from __future__ import annotations

from typing import Optional

import numpy as np

from ccnet.files import commit_together, save_image
from ccnet.images import load_image
from ccnet.labels import as_png_labels
from ccnet.processing import Prediction
from ccnet.visualize import overlay as overlay_image

from .segmenter import Segmenter


def _npy_writer(array: np.ndarray):
    def write(path: str) -> None:
        with open(path, "wb") as f:
            np.save(f, array)
    return write


def predict_to_files(segmenter: Segmenter, image_path: str, out_path: str,
                     overlay: bool = False, logits_path: Optional[str] = None,
                     tta: bool = False) -> Prediction:
    """Segment ``image_path`` and write the label map PNG (or the colour overlay); optionally
    the C×H×W float32 logits as .npy.  All files appear together or not at all."""
    image = load_image(image_path)
    prediction = segmenter.predict(image, tta=tta)
    meta = segmenter.meta
    picture = (overlay_image(image, prediction.labels, meta.palette) if overlay
               else as_png_labels(prediction.labels, meta.num_classes))
    outputs = [(out_path, lambda tmp: save_image(tmp, picture, out_path))]
    if logits_path:
        outputs.append((logits_path, _npy_writer(prediction.logits.astype(np.float32))))
    commit_together(outputs)
    return prediction
