"""Segment a video into files: an overlay video (mp4v) and/or one label PNG per frame.

Outputs are staged and committed together: the video is written to a hidden temp file and the
label PNGs into a hidden staging folder beside ``labels_dir``; both are moved into place only
when every frame is done.  A failure, Ctrl-C or SIGTERM (the CLI turns it into an interrupt)
leaves no output, and a rerun replaces an earlier label set as a whole, never mixing old and
new files.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from typing import Optional

import cv2

from ccnet.errors import CCNetError
from ccnet.files import atomic_folder, atomic_output, check_output_file, check_output_folder
from ccnet.files import write_image
from ccnet.labels import as_png_labels
from ccnet.progress import progress_bar

from .segmenter import Segmenter, runner_kind
from .video import Source, VideoSegmenter, is_url

# Containers OpenCV's mp4v writer fills (others fail only after the first frame is processed).
VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv")
LABEL_PNG = re.compile(r"^\d{6,}\.png$")


def check_video_outputs(output: Optional[str], labels_dir: Optional[str]) -> None:
    """Refuse outputs that could not be written, before any frame is read: nothing asked for,
    a video path that is a folder or has no video extension, a labels folder that cannot be
    created or already holds files other than an earlier run's label PNGs."""
    if not output and not labels_dir:
        raise CCNetError("nothing to write: give --output and/or --labels-dir")
    if output:
        check_output_file(output, VIDEO_EXTS, what="output video")
    if labels_dir:
        check_output_folder(labels_dir, "--labels-dir")
        if output and os.path.abspath(output) == os.path.abspath(labels_dir):
            raise CCNetError("--output and --labels-dir are the same path: give two names")
        if os.path.isdir(labels_dir):
            others = sorted(f for f in os.listdir(labels_dir) if not LABEL_PNG.match(f))
            if others:
                raise CCNetError(f"--labels-dir {labels_dir} holds other files (first: "
                                 f"{others[0]}); give an empty or new folder (the label PNGs "
                                 "of an earlier run there are replaced as a set)")


def segment_video(model: str, source: Source, output: Optional[str] = None,
                  labels_dir: Optional[str] = None, max_frames: Optional[int] = None,
                  show_fps: bool = False, queue_size: int = 4, alpha: float = 0.5,
                  backend: Optional[str] = None, progress: bool = True, strict: bool = False,
                  **runner_opts) -> dict:
    """Segment a video into an overlay video (mp4v) and/or per-frame label PNGs
    (``labels_dir/000000.png``, source frame index).  Returns a summary dict with ``frames``,
    ``skipped`` (invalid frames), ``corrupt`` (frames the decoder failed on), timings.

    ``strict``: a corrupt frame is an error (no output is written) instead of a warning."""
    check_video_outputs(output, labels_dir)
    if max_frames is not None and max_frames < 1:
        raise CCNetError("max_frames must be >= 1")
    # Fail before any progress bar or output appears (cameras/URLs are checked on open).
    if (isinstance(source, str) and not is_url(source) and not source.isdigit()
            and not os.path.exists(source)):
        raise CCNetError(f"video not found: {source}")
    if runner_kind(model, backend) == "ort":
        # Decoding, post-processing and encoding share the CPU with ONNX Runtime here: its
        # pool threads spinning between operators would take their cores.
        runner_opts.setdefault("spin_wait", False)
    segmenter = Segmenter(model, backend=backend, **runner_opts)
    try:
        video = VideoSegmenter(segmenter, queue_size=queue_size, alpha=alpha,
                               make_overlay=bool(output))
        with contextlib.ExitStack() as staged:
            tmp_video = staged.enter_context(atomic_output(output)) if output else None
            tmp_labels = staged.enter_context(atomic_folder(labels_dir)) if labels_dir else None
            summary = _write_frames(video, source, tmp_video, tmp_labels, max_frames,
                                    show_fps, progress, strict)
    finally:
        segmenter.close()
    summary.update(backend=segmenter.backend, output=output, labels_dir=labels_dir)
    return summary


def _write_frames(video: VideoSegmenter, source: Source, tmp_video: Optional[str],
                  tmp_labels: Optional[str], max_frames: Optional[int], show_fps: bool,
                  progress: bool, strict: bool) -> dict:
    """Run the pipeline and write every frame to the staged outputs; the summary dict."""
    num_classes = video.meta.num_classes
    results = video.run(source, max_frames=max_frames)
    writer, size, bar = None, None, None
    totals = {"decode": 0.0, "preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
    start = time.perf_counter()
    try:
        for r in results:
            _check_corrupt(video, source, strict)
            if bar is None and progress:
                bar = progress_bar(total=max_frames or video.frame_count, unit="frame",
                                   desc="ccnet-video")
            if tmp_labels:
                write_image(os.path.join(tmp_labels, f"{r.index:06d}.png"),
                            as_png_labels(r.labels, num_classes))
            if tmp_video:
                if writer is None:
                    size = (r.overlay.shape[1], r.overlay.shape[0])
                    writer = _open_writer(tmp_video, video.fps, size)
                writer.write(_video_frame(r.overlay, size, show_fps, video.frames_done, start))
            for k in totals:
                totals[k] += r.timing.get(k, 0.0)
            if bar is not None:
                bar.update(1)
        elapsed = time.perf_counter() - start
        _check_corrupt(video, source, strict)
        if video.frames_done == 0:
            raise CCNetError(f"no frames could be read from {source}")
    finally:
        results.close()  # stops the pipeline's threads on any failure
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.release()
    n = video.frames_done
    return {"frames": n, "skipped": video.frames_skipped, "corrupt": video.frames_corrupt,
            "frame_count": video.frame_count, "seconds": elapsed,
            "fps": n / elapsed if elapsed > 0 else float("inf"),
            "ms_per_frame": {k: v / n for k, v in totals.items()},
            "peak_frames_in_flight": video.peak_in_flight}


def _check_corrupt(video: VideoSegmenter, source: Source, strict: bool) -> None:
    if strict and video.frames_corrupt:
        raise CCNetError(f"{source}: {video.frames_corrupt} frame(s) could not be decoded "
                         "(corrupt or truncated video; --strict writes nothing)")


def _open_writer(path: str, fps: Optional[float], size) -> "cv2.VideoWriter":
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps or 25.0, size)
    if not writer.isOpened():
        writer.release()
        raise CCNetError(f"cannot open an mp4v video writer for {path}")
    return writer


def _video_frame(frame, size, show_fps: bool, frames_done: int, start: float):
    """The overlay as written: resized to the first frame's size (iterable sources may vary),
    with the running FPS drawn when asked."""
    if (frame.shape[1], frame.shape[0]) != size:
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST)
    if show_fps:
        rate = frames_done / max(time.perf_counter() - start, 1e-9)
        frame = frame.copy()
        cv2.putText(frame, f"{rate:.1f} FPS", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7,
                    (255, 255, 255), 2, cv2.LINE_AA)
    return frame
