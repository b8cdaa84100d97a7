"""Video segmentation: the pipelined ``VideoSegmenter`` (writing files: ``video_job``).

Three stages run concurrently, joined by bounded queues so memory stays constant however long
the stream is:

    reader thread:   decode frame i+1, validate, preprocess (resize + normalize, reused buffers)
    inference thread: network pass of frame i (whole or slide): logits at network resolution,
                      or, for a label-head file, the label map at the frame size
    caller's thread:  resize logits back + argmax (fast host path), colour overlay → FrameResult

Each stage calls the same ``Segmenter`` steps as ``Segmenter.segment``, so the per-frame labels
are identical to segmenting the frames one by one.  Frames come from
``cv2.VideoCapture`` (file, camera index, stream URL) or any iterable of BGR uint8 frames; an
invalid frame (None, wrong shape or dtype) is skipped with a warning (``frames_skipped``).  A
file's frames are counted against the container's frame count: a frame the decoder fails on
before that count is reached is counted in ``frames_corrupt`` (with a warning) and reading goes
on, so a damaged or truncated file is never silently cut short.
"""
from __future__ import annotations

import os
import queue
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Optional, Union

import cv2
import numpy as np

from ccnet.errors import CCNetError
from ccnet.images import check_image
from ccnet.processing import Preprocessor
from ccnet.visualize import overlay

Source = Union[str, int, Iterable[np.ndarray]]
_END = object()
# Yielded by the capture reader in place of a frame the decoder failed on.
_CORRUPT = object()


@dataclass
class FrameResult:
    """One segmented frame.  ``index``: position in the source (skipped frames count too);
    ``labels``: H×W uint8 (int32 over 255 classes); ``overlay``: BGR uint8 blend in the model's palette (None if
    disabled); ``timing``: milliseconds per stage plus ``latency`` (read → result)."""

    index: int
    frame: np.ndarray
    labels: np.ndarray
    overlay: Optional[np.ndarray]
    timing: dict = field(default_factory=dict)


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def is_url(text: str) -> bool:
    return "://" in text


def open_capture(source: Union[str, int]) -> "cv2.VideoCapture":
    """cv2.VideoCapture for a file path, camera index (int or digit string) or stream URL."""
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        cap = cv2.VideoCapture(int(source))
        what = f"camera {int(source)}"
    else:
        source = os.fspath(source)
        if not is_url(source) and not os.path.isfile(source):
            raise CCNetError(f"video not found: {source}")
        cap = cv2.VideoCapture(source)
        what = f"video {source}"
    if not cap.isOpened():
        cap.release()
        raise CCNetError(f"cannot open {what}: not a video OpenCV can decode, or the camera/"
                         "stream is unavailable")
    return cap


class VideoSegmenter:
    """Pipelined segmentation of a frame stream with a ``runtime.Segmenter``.

    >>> for r in VideoSegmenter(Segmenter("model.onnx")).run("clip.mp4"):
    ...     cv2.imshow("seg", r.overlay)

    ``queue_size`` bounds each of the two queues between stages: at most
    ``max_frames_in_flight = 2 * queue_size + 3`` frames are alive at any time.
    """

    def __init__(self, segmenter, queue_size: int = 4, alpha: float = 0.5,
                 make_overlay: bool = True):
        if queue_size < 1:
            raise CCNetError("queue_size must be >= 1")
        self.segmenter = segmenter
        self.meta = segmenter.meta
        self.queue_size = int(queue_size)
        self.alpha = alpha
        self.make_overlay = make_overlay
        self.fps: Optional[float] = None  # of the source, when it says
        self.frame_count: Optional[int] = None
        self._reset_stats()

    @property
    def max_frames_in_flight(self) -> int:
        return 2 * self.queue_size + 3

    def _reset_stats(self) -> None:
        self.frames_done = 0
        self.frames_skipped = 0
        self.frames_corrupt = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = threading.Lock()

    def _count(self, delta: int) -> None:
        with self._lock:
            self.in_flight += delta
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    # ---------------------------------------------------------------- sources
    def _frames(self, source: Source) -> Iterator[np.ndarray]:
        if isinstance(source, (str, int, os.PathLike)):
            cap = open_capture(source)
            fps = cap.get(cv2.CAP_PROP_FPS)
            count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
            self.fps = fps if fps and fps > 0 else None
            self.frame_count = count if count > 0 else None
            return self._read_capture(cap, self.frame_count)
        try:
            return iter(source)
        except TypeError:
            raise CCNetError(f"unsupported video source {type(source).__name__}: give a path, "
                             "camera index, URL or an iterable of BGR frames") from None

    @staticmethod
    def _read_capture(cap, expected: Optional[int]) -> Iterator[np.ndarray]:
        """Decoded frames; ``_CORRUPT`` for each failed read before the container's frame count
        ``expected`` (the decoder resumes at the next readable frame, or keeps failing to the
        count on a truncated file).  Without a count (cameras, streams) a failed read ends."""
        position = 0
        try:
            while True:
                try:
                    ok, frame = cap.read()
                except cv2.error:  # a decoder failure surfaced as an exception
                    ok, frame = False, None
                if not ok and (expected is None or position >= expected):
                    return  # end of stream (or a stream that dropped)
                position += 1
                yield frame if ok else _CORRUPT
        finally:
            cap.release()

    # ---------------------------------------------------------------- stages
    @staticmethod
    def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _reader(self, frames, max_frames, out_q, stop) -> None:
        # A batch lives in this thread, the queue (queue_size) and the inference thread: one more
        # buffer than that is never overwritten while still in use.
        preprocess = Preprocessor(self.meta, buffers=self.queue_size + 3)
        try:
            index = -1
            iterator = iter(frames)
            while max_frames is None or self.frames_done_reading < max_frames:
                t0 = time.perf_counter()
                try:
                    frame = next(iterator)
                except StopIteration:
                    break
                index += 1
                t1 = time.perf_counter()
                if frame is _CORRUPT:
                    self.frames_corrupt += 1
                    if self.frames_corrupt == 1:
                        warnings.warn(f"frame {index} could not be decoded (corrupt or truncated "
                                      "video); further decode errors are counted in the "
                                      "summary", RuntimeWarning, stacklevel=2)
                    continue
                try:
                    check_image(frame)
                except CCNetError as e:
                    self.frames_skipped += 1
                    warnings.warn(f"skipping frame {index}: {e}", RuntimeWarning, stacklevel=2)
                    continue
                self._count(+1)
                batch = preprocess(frame)
                t2 = time.perf_counter()
                timing = {"decode": (t1 - t0) * 1e3, "preprocess": (t2 - t1) * 1e3, "start": t0}
                self.frames_done_reading += 1
                if not self._put(out_q, (index, frame, batch, timing), stop):
                    return
            self._put(out_q, _END, stop)
        except BaseException as e:  # hand any failure to the caller's thread
            self._put(out_q, _Failure(e), stop)

    def _inferer(self, in_q, out_q, stop) -> None:
        try:
            while not stop.is_set():
                try:
                    item = in_q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END or isinstance(item, _Failure):
                    self._put(out_q, item, stop)
                    return
                index, frame, batch, timing = item
                t0 = time.perf_counter()
                output = self.segmenter.network_pass(batch, frame.shape)[0]
                timing["infer"] = (time.perf_counter() - t0) * 1e3
                if not self._put(out_q, (index, frame, output, timing), stop):
                    return
        except BaseException as e:
            self._put(out_q, _Failure(e), stop)

    def run(self, source: Source, max_frames: Optional[int] = None) -> Iterator[FrameResult]:
        """Yield a FrameResult per valid frame, in order, until the stream ends (or
        ``max_frames`` results).  Closing the generator early stops the worker threads."""
        self._reset_stats()
        self.frames_done_reading = 0
        frames = self._frames(source)
        stop = threading.Event()
        q_pre: queue.Queue = queue.Queue(self.queue_size)
        q_post: queue.Queue = queue.Queue(self.queue_size)
        workers = [threading.Thread(target=self._reader, args=(frames, max_frames, q_pre, stop),
                                    name="ccnet-video-reader", daemon=True),
                   threading.Thread(target=self._inferer, args=(q_pre, q_post, stop),
                                    name="ccnet-video-infer", daemon=True)]
        for w in workers:
            w.start()
        try:
            while True:
                item = q_post.get()
                if item is _END:
                    return
                if isinstance(item, _Failure):
                    raise item.error
                index, frame, output, timing = item
                t0 = time.perf_counter()
                labels = self.segmenter.finish(output, frame.shape)
                blend = (overlay(frame, labels, self.meta.palette, self.alpha)
                         if self.make_overlay else None)
                t1 = time.perf_counter()
                timing["postprocess"] = (t1 - t0) * 1e3
                timing["latency"] = (t1 - timing.pop("start")) * 1e3
                self.frames_done += 1
                self._count(-1)
                yield FrameResult(index, frame, labels, blend, timing)
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=5)

    __call__ = run
