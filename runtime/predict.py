"""Segment image files into label-map PNGs and/or colour overlays with any model form: one image,
or every image of a folder tree."""
from __future__ import annotations

import logging
import os
import time
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ccnet.errors import CCNetError
from ccnet.files import commit_together, is_inside, require_folder, save_image
from ccnet.images import IMAGE_EXTS, iter_images, load_image
from ccnet.labels import as_png_labels
from ccnet.processing import Prediction
from ccnet.progress import progress_bar
from ccnet.visualize import overlay as overlay_image

from .segmenter import Segmenter

logger = logging.getLogger(__name__)


def _npy_writer(array: np.ndarray):
    def write(path: str) -> None:
        with open(path, "wb") as f:
            np.save(f, array)
    return write


def _image_writer(picture: np.ndarray, final_path: str):
    return lambda tmp: save_image(tmp, picture, final_path)


def predict_to_files(segmenter: Segmenter, image_path: str, out_path: Optional[str] = None,
                     overlay: bool = False, logits_path: Optional[str] = None,
                     tta: bool = False, overlay_path: Optional[str] = None) -> Prediction:
    """Segment ``image_path`` and write the label map PNG to ``out_path`` (the colour overlay
    instead with ``overlay=True``), the overlay to ``overlay_path``, and the C×H×W float32
    logits as .npy to ``logits_path`` (each optional).  All files appear together or not at
    all; missing folders are created."""
    return _segment_to_files(segmenter, load_image(image_path), out_path, overlay, logits_path,
                             tta, overlay_path)


def _segment_to_files(segmenter: Segmenter, image: np.ndarray, out_path: Optional[str],
                      overlay: bool, logits_path: Optional[str], tta: bool,
                      overlay_path: Optional[str]) -> Prediction:
    prediction = (segmenter.predict(image, tta=tta) if logits_path
                  else Prediction(labels=segmenter.segment(image, tta=tta), logits=None))
    meta = segmenter.meta
    outputs = []
    if out_path:
        picture = (overlay_image(image, prediction.labels, meta.palette) if overlay
                   else as_png_labels(prediction.labels, meta.num_classes))
        outputs.append((out_path, _image_writer(picture, out_path)))
    if overlay_path:
        picture = overlay_image(image, prediction.labels, meta.palette)
        outputs.append((overlay_path, _image_writer(picture, overlay_path)))
    if logits_path:
        outputs.append((logits_path, _npy_writer(prediction.logits.astype(np.float32))))
    for path, _ in outputs:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    commit_together(outputs)
    return prediction


Job = Tuple[str, Optional[str], Optional[str]]  # image, label PNG, overlay PNG


def folder_jobs(input_dir: str, out_dir: Optional[str] = None,
                show_dir: Optional[str] = None) -> List[Job]:
    """(image, label PNG, overlay PNG) for every image under ``input_dir``: outputs keep the
    image's sub-folder and stem (``a/b.jpg`` → ``OUT/a/b.png``).  Refuses output folders inside
    the input folder (a later run would take the PNGs for input) and two images that would
    write one file."""
    require_folder(input_dir, "input folder")
    if not out_dir and not show_dir:
        raise CCNetError("nothing to write: give --out DIR (label maps) and/or --show-dir DIR "
                         "(overlays)")
    for flag, folder in (("--out", out_dir), ("--show-dir", show_dir)):
        if folder and os.path.isfile(folder):
            raise CCNetError(f"{flag} {folder} is a file: give a folder for a folder of images")
        if folder and is_inside(folder, input_dir):
            raise CCNetError(f"{flag} {folder} is inside the input folder {input_dir}: choose a "
                             "folder outside it")
    images = list(iter_images(input_dir))
    if not images:
        raise CCNetError(f"no images in {input_dir} (looked for {', '.join(IMAGE_EXTS)})")
    jobs, seen = [], {}
    for image in images:
        name = os.path.splitext(os.path.relpath(image, input_dir))[0] + ".png"
        if name in seen:
            raise CCNetError(f"{seen[name]} and {image} would both write {name}: rename one")
        seen[name] = image
        jobs.append((image, os.path.join(out_dir, name) if out_dir else None,
                     os.path.join(show_dir, name) if show_dir else None))
    return jobs


def predict_folder(segmenter: Segmenter, input_dir: str, out_dir: Optional[str] = None,
                   show_dir: Optional[str] = None, tta: bool = False,
                   progress: bool = True, jobs: Optional[Sequence[Job]] = None) -> dict:
    """Segment every image under ``input_dir`` into label PNGs under ``out_dir`` and/or overlays
    under ``show_dir`` (see :func:`folder_jobs`; ``jobs``: its result when the caller already
    has it, so the folder is walked once).  An unreadable image is skipped with a warning; none
    readable is an error.  Returns {images, written, skipped, seconds}."""
    if jobs is None:
        jobs = folder_jobs(input_dir, out_dir, show_dir)
    start, written, skipped = time.perf_counter(), 0, []
    bar = progress_bar(jobs, desc="predict", unit="img", enabled=progress)
    for path, label_path, overlay_path in (bar if bar is not None else jobs):
        try:
            image = load_image(path)
        except CCNetError as e:
            logger.warning("skipped: %s", e)
            skipped.append(path)
            continue
        _segment_to_files(segmenter, image, label_path, False, None, tta, overlay_path)
        written += 1
    if bar is not None:
        bar.close()
    if not written:
        raise CCNetError(f"none of the {len(jobs)} image(s) in {input_dir} could be read")
    return {"images": len(jobs), "written": written, "skipped": skipped,
            "seconds": time.perf_counter() - start}
