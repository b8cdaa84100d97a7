"""Checks of a successful case's outputs (each returns a problem, or None when right)."""
from __future__ import annotations

import os
import re
from typing import Optional

import cv2
import numpy as np

from ccnet.images import load_image


def read_labels(path: str, num_classes: int):
    """(label map, problem): a lossless single-channel PNG with values < num_classes."""
    if not os.path.isfile(path):
        return None, f"no output {os.path.basename(path)}"
    labels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if labels is None or labels.ndim != 2:
        return None, f"{os.path.basename(path)} is not a single-channel PNG"
    if labels.size and int(labels.max()) >= num_classes:
        return None, f"label {int(labels.max())} >= {num_classes} classes"
    return labels, None


def labels_match(env, image_path: str, out_path: str) -> Optional[str]:
    """The label PNG is PyTorch's segmentation of the image (the independent reference)."""
    labels, problem = read_labels(out_path, env.num_classes)
    return problem or env.agrees(load_image(image_path), labels)


def labels_wellformed(image_path: str, out_path: str, num_classes: int) -> Optional[str]:
    """For inputs whose right answer is unknown (e.g. a checkpoint with flipped bits that still
    loads): a label map of the image's size."""
    labels, problem = read_labels(out_path, num_classes)
    if problem:
        return problem
    shape = load_image(image_path).shape[:2]
    return None if labels.shape == shape else f"labels {labels.shape} for an image of {shape}"


def decoded_frames(path: str):
    """The frames OpenCV decodes from a video, with None for each failed read before the
    container's frame count (what the tool must count as corrupt)."""
    cap = cv2.VideoCapture(path)
    expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok and len(frames) >= max(expected, 0):
            break
        frames.append(frame if ok else None)
    cap.release()
    return frames


def video_outputs_match(env, clip: str, case_dir: str, stderr: str,
                        max_frames: Optional[int] = None) -> Optional[str]:
    """Label PNGs for exactly the decodable frames (named by source index, equal to PyTorch's
    labels), an overlay video with as many frames, and a warning when frames were corrupt."""
    frames = decoded_frames(clip)
    good = [(i, f) for i, f in enumerate(frames) if f is not None][:max_frames]
    labels_dir = os.path.join(case_dir, "out", "labels")
    names = sorted(os.listdir(labels_dir)) if os.path.isdir(labels_dir) else []
    if names != [f"{i:06d}.png" for i, _ in good]:
        return f"label files {names[:4]}... for decodable frames {[i for i, _ in good][:4]}..."
    for (i, frame), name in list(zip(good, names))[:3]:
        labels, problem = read_labels(os.path.join(labels_dir, name), env.num_classes)
        problem = problem or env.agrees(frame, labels)
        if problem:
            return f"frame {i}: {problem}"
    written = decoded_frames(os.path.join(case_dir, "out", "overlay.mp4"))
    if len(written) != len(good):
        return f"overlay video has {len(written)} frames, expected {len(good)}"
    corrupt = len(frames) - sum(f is not None for f in frames)
    if corrupt and max_frames is None and not re.search(r"could not be decoded", stderr):
        return f"{corrupt} corrupt frame(s) without a warning"
    return None


def onnx_runs(path: str, precision: str) -> Optional[str]:
    """An ONNX file the runtime opens, with the given precision in its metadata."""
    from runtime.segmenter import Segmenter

    if not os.path.isfile(path):
        return f"no output {os.path.basename(path)}"
    with Segmenter(path) as segmenter:
        labels = segmenter.segment(np.zeros((48, 64, 3), np.uint8))
        got = segmenter.meta.extra.get("precision")
    if labels.shape != (48, 64):
        return f"labels {labels.shape}"
    return None if got == precision else f"precision {got!r}, expected {precision!r}"
