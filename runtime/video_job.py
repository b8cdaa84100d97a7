"""Segment a video into files: an overlay video (mp4v) and/or one label PNG per frame."""
from __future__ import annotations

import os
import time
from typing import Optional

import cv2

from ccnet.errors import CCNetError
from ccnet.files import write_image
from ccnet.labels import as_png_labels
from ccnet.progress import progress_bar

from .segmenter import Segmenter
from .video import Source, VideoSegmenter, is_url


def _partial_path(path: str) -> str:
    directory, base = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(base)
    return os.path.join(directory, f".{stem}.partial{ext or '.mp4'}")


def segment_video(model: str, source: Source, output: Optional[str] = None,
                  labels_dir: Optional[str] = None, max_frames: Optional[int] = None,
                  show_fps: bool = False, queue_size: int = 4, alpha: float = 0.5,
                  backend: Optional[str] = None, progress: bool = True, **runner_opts) -> dict:
    """Segment a video into an overlay video (mp4v) and/or per-frame label PNGs
    (``labels_dir/000000.png``, source frame index).  Returns a summary dict."""
    if not output and not labels_dir:
        raise CCNetError("nothing to write: give --output and/or --labels-dir")
    for path in filter(None, [output]):
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            raise CCNetError(f"cannot write {path}: folder {directory} does not exist")
    # Fail before any progress bar or output folder appears (cameras/URLs are checked on open).
    if (isinstance(source, str) and not is_url(source) and not source.isdigit()
            and not os.path.exists(source)):
        raise CCNetError(f"video not found: {source}")
    segmenter = Segmenter(model, backend=backend, **runner_opts)
    video = VideoSegmenter(segmenter, queue_size=queue_size, alpha=alpha,
                           make_overlay=bool(output))
    results = video.run(source, max_frames=max_frames)
    if labels_dir:
        os.makedirs(labels_dir, exist_ok=True)
    writer, tmp_video, size = None, None, None
    totals = {"decode": 0.0, "preprocess": 0.0, "infer": 0.0, "postprocess": 0.0}
    bar = progress_bar(total=max_frames or video.frame_count, unit="frame", desc="ccnet-video",
                       enabled=progress)
    start = time.perf_counter()
    try:
        for r in results:
            if labels_dir:
                write_image(os.path.join(labels_dir, f"{r.index:06d}.png"),
                            as_png_labels(r.labels, segmenter.meta.num_classes))
            if output:
                frame = r.overlay
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    tmp_video = _partial_path(output)
                    writer = cv2.VideoWriter(tmp_video, cv2.VideoWriter_fourcc(*"mp4v"),
                                             video.fps or 25.0, size)
                    if not writer.isOpened():
                        raise CCNetError(f"cannot open a video writer for {output} (mp4v)")
                if (frame.shape[1], frame.shape[0]) != size:  # iterable sources may vary
                    frame = cv2.resize(frame, size, interpolation=cv2.INTER_NEAREST)
                if show_fps:
                    rate = video.frames_done / max(time.perf_counter() - start, 1e-9)
                    frame = frame.copy()
                    cv2.putText(frame, f"{rate:.1f} FPS", (8, 24), cv2.FONT_HERSHEY_SIMPLEX,
                                0.7, (255, 255, 255), 2, cv2.LINE_AA)
                writer.write(frame)
            for k in totals:
                totals[k] += r.timing.get(k, 0.0)
            if bar is not None:
                bar.update(1)
        elapsed = time.perf_counter() - start
        if video.frames_done == 0:
            raise CCNetError(f"no frames could be read from {source}")
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp_video, output)
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.release()
        if tmp_video and os.path.exists(tmp_video):
            os.remove(tmp_video)
        segmenter.close()
    n = video.frames_done
    return {"frames": n, "skipped": video.frames_skipped, "seconds": elapsed,
            "fps": n / elapsed if elapsed > 0 else float("inf"), "backend": segmenter.backend,
            "ms_per_frame": {k: v / n for k, v in totals.items()},
            "peak_frames_in_flight": video.peak_in_flight, "output": output,
            "labels_dir": labels_dir}
