"""The valid inputs every fuzz family mutates, and the independent reference outputs are checked
against.

- ``small.pth``: a narrow R18-D8 CCNet checkpoint (5 classes, 48×64 test scale, < 1 MB) written
  by ``tests/helpers.make_checkpoint``, and ``base.onnx``, its ONNX export (< 1 MB: a case
  copies or rewrites it in milliseconds);
- ``photo.png``, two mp4v clips made from a real photo (a synthetic one without the shared
  data folder) and ``dataset/``, a two-image folder dataset for ``ccnet eval``.

The reference is the PyTorch prediction of small.pth: a case's ONNX Runtime or PyTorch output
must agree with it on >= 99 % of pixels.
"""
from __future__ import annotations

import functools
import hashlib
import os
import shutil
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np
import onnx

from helpers import first_photo, make_checkpoint, write_video

SCALE = (64, 48)  # test scale (w, h) of the fuzz model: cases run in milliseconds
NUM_CLASSES = 5
MIN_AGREEMENT = 0.99
CLIP_FRAMES = 8
# Long enough that the signal cases' job (about 1 ms a frame with the small model) is still
# running when the driver's signal arrives, even on a loaded machine.
LONG_CLIP_FRAMES = 4000


@dataclass
class Environment:
    folder: str
    small_ckpt: str
    base_onnx: str
    photo: str
    clip: str
    long_clip: str
    dataset: str
    num_classes: int = NUM_CLASSES

    @functools.cached_property
    def model(self):
        from ccnet.checkpoint import load_model

        return load_model(self.small_ckpt)

    @functools.cached_property
    def base_proto(self) -> "onnx.ModelProto":
        """base.onnx parsed once; cases mutate copies."""
        return onnx.load(self.base_onnx)

    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def reference(self, image: np.ndarray) -> np.ndarray:
        """PyTorch's labels of ``image`` (small.pth, the model base.onnx was exported from)."""
        from ccnet.inference import predict

        key = (hashlib.sha256(image.tobytes()).hexdigest(), image.shape)
        if key not in self._cache:
            self._cache[key] = predict(self.model, image).labels
        return self._cache[key]

    def agrees(self, image: np.ndarray, labels: np.ndarray) -> Optional[str]:
        """A problem with ``labels`` as the segmentation of ``image`` (None when right)."""
        expected = self.reference(image)
        if labels.shape != expected.shape:
            return f"labels {labels.shape} for an image of {expected.shape}"
        agreement = float((labels == expected).mean())
        if agreement < MIN_AGREEMENT:
            return f"labels agree with PyTorch on {agreement:.1%} of pixels"
        return None


def _photo(shape=(SCALE[1], SCALE[0])) -> np.ndarray:
    from ccnet.images import load_image
    from export.verify import synthetic_photo

    path = first_photo()
    image = load_image(path) if path else synthetic_photo()
    return cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def write_clip(path: str, frames: int, base: np.ndarray) -> None:
    write_video(path, (np.roll(base, 3 * i, axis=1) for i in range(frames)), 10.0)


def build_environment(folder: str) -> Environment:
    """Write the valid inputs into ``folder`` (the ONNX export takes most of the time)."""
    from ccnet.zoo import custom_config
    from export.to_onnx import export_onnx

    os.makedirs(folder, exist_ok=True)
    small = os.path.join(folder, "small.pth")
    make_checkpoint(small, custom_config(
        "fuzz-small", depth=18, num_classes=NUM_CLASSES, channels=16, aux_channels=8,
        base_channels=8, stem_channels=8, test_scale=SCALE), seed=3)
    base = os.path.join(folder, "base.onnx")
    export_onnx(small, base, verify=False, log=lambda *a: None)
    photo = os.path.join(folder, "photo.png")
    image = _photo()
    cv2.imwrite(photo, image)
    clip, long_clip = os.path.join(folder, "clip.mp4"), os.path.join(folder, "long.mp4")
    write_clip(clip, CLIP_FRAMES, image)
    write_clip(long_clip, LONG_CLIP_FRAMES, image)
    dataset = os.path.join(folder, "dataset")
    for sub in ("images", "labels"):
        os.makedirs(os.path.join(dataset, sub))
    for i in range(2):
        view = np.ascontiguousarray(image[:, ::-1] if i else image)
        cv2.imwrite(os.path.join(dataset, "images", f"{i}.png"), view)
        labels = (np.arange(view.shape[1])[None, :] * NUM_CLASSES // view.shape[1]).repeat(
            view.shape[0], 0).astype(np.uint8)
        cv2.imwrite(os.path.join(dataset, "labels", f"{i}.png"), labels)
    return Environment(folder, small, base, photo, clip, long_clip, dataset)


def write_onnx(env: Environment, case_dir: str, model: Optional["onnx.ModelProto"] = None,
               name: str = "model.onnx") -> str:
    """``model`` (default: base.onnx) written into the case's input folder; its path."""
    path = os.path.join(case_dir, "in", name)
    if model is None:
        shutil.copyfile(env.base_onnx, path)
    else:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    return path


def copy_into(src: str, case_dir: str, name: Optional[str] = None) -> str:
    """Copy ``src`` into the case's input folder; its new path."""
    dst = os.path.join(case_dir, "in", name or os.path.basename(src))
    shutil.copyfile(src, dst)
    return dst
