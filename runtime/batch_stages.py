"""The stages of ``ccnet batch`` as Ray Data batch functions (numpy column batches in and out).

    decode_items   work items → one row per image or video frame: the BGR image, or
                   "skipped" (its outputs are already complete) or "failed" (unreadable)
    resize_rows    keep-ratio resize to the model's test scale (``ccnet.processing``)
    SegmentWorker  an actor holding one opened ``Segmenter``: normalize, network pass
                   (whole/slide), resize logits back, argmax → label map
    write_rows     label PNG (+ overlay, + logits) per image, atomically

Per image this is ``ccnet.processing.preprocess`` (check, resize, normalize), then
``Segmenter.network_pass`` and ``Segmenter.finish`` (label head, or the host resize back + argmax;
``restore_size`` + argmax when the logits are kept): exactly ``Segmenter.segment``.  The resize
runs in the light CPU stage and ships uint8 pixels to the worker, a quarter of the bytes of the
normalized float32 input; the label map leaves the worker instead of the C×H×W logits.

A failure of one image (unreadable file, a frame a stage rejects) becomes a "failed" row with
its one-line reason; the other rows go on.  Every function is importable and runs without Ray.
"""
from __future__ import annotations

import os
import socket
import time
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np

from ccnet.errors import CCNetError, first_line
from ccnet.images import check_image, load_image
from ccnet.labels import as_png_labels, png_label_dtype
from ccnet.meta import ModelMeta
from ccnet.label_resize import first_argmax
from ccnet.processing import resize_keep_ratio, restore_size
from ccnet.visualize import overlay

from .batch_outputs import OutputLayout
from .batch_sources import frame_key

Batch = Dict[str, np.ndarray]
TODO, SKIPPED, FAILED, WRITTEN = "todo", "skipped", "failed", "written"
STAGES = ("decode", "preprocess", "infer", "postprocess", "write")
# The small columns every stage passes on; the summary is built from them.
REPORT_COLUMNS = ("key", "source", "status", "error", "worker") + tuple(f"{s}_ms" for s in STAGES)

_EMPTY_IMAGE = np.zeros((0, 0, 3), np.uint8)


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3


def _row(key: str, source: str, status: str, error: str = "",
         image: np.ndarray = _EMPTY_IMAGE, decode_ms: float = 0.0) -> dict:
    return {"key": key, "source": source, "status": status, "error": error,
            "height": image.shape[0], "width": image.shape[1], "image": image,
            "decode_ms": decode_ms}


def _columns(rows: List[dict]) -> Batch:
    """Rows → a column batch; array columns stay lists (their shapes differ per image)."""
    batch = {}
    for name in rows[0]:
        values = [r[name] for r in rows]
        batch[name] = values if isinstance(values[0], np.ndarray) else np.asarray(values)
    return batch


# ----------------------------------------------------------------------------- decode
def _decoded_size(path: str) -> Optional[tuple]:
    """(height, width) cv2.imread will return, from the file header only (None if unknown).
    JPEG EXIF orientations 5-8 are applied by cv2.imread, which swaps the sides."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except Exception:  # unreadable: decoding will report why
        return None
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def _image_rows(path: str, key: str, layout: OutputLayout, num_classes: int) -> Iterator[dict]:
    start = time.perf_counter()
    size = _decoded_size(path)
    if size is not None and layout.is_done(key, size, num_classes):
        yield _row(key, path, SKIPPED)
        return
    try:
        image = load_image(path)
    except Exception as e:  # load_image raises one-line CCNetErrors; anything else is one too
        yield _row(key, path, FAILED, first_line(e))
        return
    yield _row(key, path, TODO, image=image, decode_ms=_elapsed_ms(start))


def _frame_rows(path: str, key: str, layout: OutputLayout, num_classes: int) -> Iterator[dict]:
    """Frames as ``runtime.VideoSegmenter`` reads them (cv2.VideoCapture.read = grab +
    retrieve); a frame whose outputs are complete is grabbed but not converted."""
    from .video import open_capture

    try:
        capture = open_capture(path)
    except CCNetError as e:
        yield _row(key, path, FAILED, str(e))
        return
    index, size = 0, None
    try:
        while True:
            start = time.perf_counter()
            if not capture.grab():
                break
            name = frame_key(key, index)
            source = f"{path}#{index}"
            if size is not None and layout.is_done(name, size, num_classes):
                yield _row(name, source, SKIPPED)
            else:
                ok, frame = capture.retrieve()
                if not ok:
                    break
                size = frame.shape[:2]
                if layout.is_done(name, size, num_classes):
                    yield _row(name, source, SKIPPED)
                else:
                    yield _row(name, source, TODO, image=frame, decode_ms=_elapsed_ms(start))
            index += 1
    finally:
        capture.release()
    if index == 0:
        yield _row(key, path, FAILED, f"no frames could be read from video {path}")


def decode_items(items: Batch, layout: OutputLayout, num_classes: int,
                 rows_per_batch: int) -> Iterator[Batch]:
    """Stage 1 (generator): work items (kind, path, key) → batches of at most
    ``rows_per_batch`` image/frame rows, so a long video streams instead of piling up."""
    pending: List[dict] = []
    for kind, path, key in zip(items["kind"], items["path"], items["key"]):
        read = _frame_rows if kind == "video" else _image_rows
        for row in read(str(path), str(key), layout, num_classes):
            pending.append(row)
            if len(pending) >= rows_per_batch:
                yield _columns(pending)
                pending = []
    if pending:
        yield _columns(pending)


# ----------------------------------------------------------------------------- preprocess
def resize_rows(batch: Batch, test_scale: Sequence[int], keep_image: bool) -> Batch:
    """Stage 2: check each image and resize it with mmcv's keep-ratio rule (uint8).  The
    original image is kept only when overlays need it."""
    resized, status, error = [], list(batch["status"]), list(batch["error"])
    times = np.zeros(len(status), np.float64)
    for i, image in enumerate(batch["image"]):
        if status[i] != TODO:
            resized.append(_EMPTY_IMAGE)
            continue
        start = time.perf_counter()
        try:
            resized.append(resize_keep_ratio(check_image(np.asarray(image)), test_scale))
        except Exception as e:
            resized.append(_EMPTY_IMAGE)
            status[i], error[i] = FAILED, first_line(e)
        times[i] = _elapsed_ms(start)
    out = {k: v for k, v in batch.items() if k != "image" or keep_image}
    out.update(resized=resized, status=np.asarray(status), error=np.asarray(error),
               preprocess_ms=times)
    return out


# ----------------------------------------------------------------------------- segment
class SegmentWorker:
    """Stage 3, one per Ray actor: opens the model once as a ``Segmenter`` and segments every
    batch it is given, one at a time (a Ray actor runs one thread unless told otherwise, as the
    Segmenter and its reused pre-processing buffers need).  ``meta`` is what the other stages
    were built with (read from the same model by the job); a node whose model file says
    otherwise refuses to start."""

    def __init__(self, model: str, meta: ModelMeta, backend: Optional[str] = None,
                 runner_options: Optional[dict] = None, keep_logits: bool = False,
                 torch_threads: Optional[int] = None):
        from .segmenter import Segmenter

        self.segmenter = Segmenter(model, backend=backend, **(runner_options or {}))
        try:
            if self.segmenter.meta != meta:
                raise CCNetError(f"{model} on {socket.gethostname()} carries other metadata than "
                                 "on the node that planned the job: give every node the same file")
            if keep_logits:
                self.segmenter.require_logits("run without --logits")
        except CCNetError:
            self.segmenter.close()
            raise
        if self.segmenter.backend == "pytorch" and torch_threads:
            import torch  # only this backend: workers share the node's cores

            torch.set_num_threads(torch_threads)
        self.meta = meta
        self.keep_logits = keep_logits
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def segment(self, resized: np.ndarray, size: Sequence[int]):
        """(labels as stored in PNG, logits C×H×W or None, ms per step) of one resized image."""
        t0 = time.perf_counter()
        height, width = resized.shape[:2]
        # already at the test scale, so this only normalizes, into the preprocessor's kept
        # buffer: network_pass is done with it before the next image overwrites it
        batch = self.segmenter.preprocessor(resized, scale=(width, height))
        t1 = time.perf_counter()
        output = self.segmenter.network_pass(batch, size)[0]
        t2 = time.perf_counter()
        if self.keep_logits:
            full = restore_size(output, size, self.meta)
            labels = first_argmax(full)
        else:  # label head or the host fast path: no full-size logits are ever built
            full, labels = None, self.segmenter.finish(output, size)
        times = ((t1 - t0) * 1e3, (t2 - t1) * 1e3, _elapsed_ms(t2))
        return as_png_labels(labels, self.meta.num_classes), full, times

    def __call__(self, batch: Batch) -> Batch:
        status, error = list(batch["status"]), list(batch["error"])
        empty_labels = np.zeros((0, 0), png_label_dtype(self.meta.num_classes))
        labels, logits = [], []
        times = {"preprocess": np.array(batch["preprocess_ms"], np.float64),
                 "infer": np.zeros(len(status)), "postprocess": np.zeros(len(status))}
        for i in range(len(status)):
            result = (empty_labels, None, (0.0, 0.0, 0.0))
            if status[i] == TODO:
                size = (int(batch["height"][i]), int(batch["width"][i]))
                try:
                    result = self.segment(np.asarray(batch["resized"][i]), size)
                except Exception as e:  # one bad image must not stop the job
                    status[i], error[i] = FAILED, first_line(e)
            labels.append(result[0])
            logits.append(result[1] if result[1] is not None else np.zeros((0, 0, 0), np.float32))
            for stage, ms in zip(("preprocess", "infer", "postprocess"), result[2]):
                times[stage][i] += ms
        out = {k: v for k, v in batch.items() if k != "resized"}
        out.update(labels=labels, status=np.asarray(status), error=np.asarray(error),
                   worker=np.asarray([self.worker] * len(status)),
                   **{f"{s}_ms": t for s, t in times.items()})
        if self.keep_logits:
            out["logits"] = logits
        return out


# ----------------------------------------------------------------------------- write
def write_rows(batch: Batch, layout: OutputLayout, palette) -> Batch:
    """Stage 4: write each segmented image's files (all or none); returns only the report
    columns, so no pixels travel back to the driver."""
    status, error = list(batch["status"]), list(batch["error"])
    times = np.zeros(len(status), np.float64)
    for i in range(len(status)):
        if status[i] != TODO:
            continue
        start = time.perf_counter()
        try:
            labels = np.asarray(batch["labels"][i])
            blend = (overlay(np.asarray(batch["image"][i]), labels, palette)
                     if layout.overlays else None)
            logits = np.asarray(batch["logits"][i]) if layout.logits else None
            layout.write(str(batch["key"][i]), labels, blend, logits)
            status[i] = WRITTEN
        except Exception as e:  # a full disk or a bad path is recorded per image
            status[i], error[i] = FAILED, first_line(e)
        times[i] = _elapsed_ms(start)
    out = {k: batch[k] for k in REPORT_COLUMNS if k in batch}
    out.update(status=np.asarray(status), error=np.asarray(error), write_ms=times)
    return out
