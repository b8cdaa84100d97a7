"""runtime/ must work where PyTorch is not installed (Jetson-class devices): in a subprocess that
makes every ``torch`` import fail, import runtime, segment a real photo through ONNX Runtime and
run the video pipeline."""
from __future__ import annotations

import os
import subprocess
import sys

from helpers import REPO

SCRIPT = r"""
import importlib.abc, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name.startswith("torchvision"):
            raise ImportError(f"blocked: {name} (this test runs without PyTorch)")
        return None

sys.meta_path.insert(0, BlockTorch())
try:
    import torch  # noqa: F401
    raise SystemExit("torch import was not blocked")
except ImportError:
    pass

import numpy as np
import runtime
from ccnet.errors import CCNetError
from ccnet.images import load_image
from runtime import Segmenter, VideoSegmenter

onnx_path, photo = sys.argv[1], sys.argv[2]
seg = Segmenter(onnx_path)
image = load_image(photo)
labels = seg.segment(image)
assert labels.shape == image.shape[:2], labels.shape
assert 0 <= labels.min() and labels.max() < seg.meta.num_classes
small = seg.meta.replace(test_scale=(64, 48))
frames = [image[::8, ::8].copy() for _ in range(3)]
results = list(VideoSegmenter(Segmenter(onnx_path, meta=small)).run(frames))
assert [r.index for r in results] == [0, 1, 2]
try:
    Segmenter("model.pth")
    raise SystemExit("a .pth model loaded without torch")
except CCNetError as e:
    assert "PyTorch is needed" in str(e), e
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "torch")
assert not loaded, loaded
print("OK", labels.shape, seg.backend)
"""


def test_runtime_runs_without_torch(tiny_onnx, photos):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, tiny_onnx, photos[0]], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK") and "onnxruntime" in proc.stdout
